//go:build unix

package connlimit

import "syscall"

// DescriptorLimit returns the process's soft limit on open descriptors
// (RLIMIT_NOFILE). The Go runtime raises it to the hard limit at start-up
// on Linux, so this is the most the process can ever open.
func DescriptorLimit() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	return uint64(r.Cur), nil
}
