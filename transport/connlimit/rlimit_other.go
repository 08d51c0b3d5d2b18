//go:build !unix

package connlimit

import "errors"

// DescriptorLimit is not known on this system: configure the cap.
func DescriptorLimit() (uint64, error) {
	return 0, errors.New("connlimit: no descriptor limit on this system; set the cap explicitly")
}
