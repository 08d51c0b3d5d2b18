package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

// TestSIGTERM: jsonrtcd tells its sessions to go (close 1001, which clients
// take as "resume elsewhere") and exits cleanly, with nothing hanging.
func TestSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs jsonrtcd")
	}
	d := startDaemon(t)
	c := connect(t, "ws://"+d.addr+"/ws/webrtc/test", "alice@example.com", nil)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next(t, c, client.EventReconnecting)
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("jsonrtcd exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		t.Fatal("jsonrtcd did not exit after SIGTERM")
	}
}
