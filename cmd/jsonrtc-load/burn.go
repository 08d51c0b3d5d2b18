package main

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// maxBurn bounds -burn: the neighbour is meant to share the cores, not to
// bury the machine.
const maxBurn = 16

// burner is the -burn neighbour: another process on the same cores that
// only spins, as unrelated work would. It is a process of its own so that
// the kernel, not the load generator's Go scheduler, shares the CPU out.
type burner struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

// startBurner starts this program again as a neighbour spinning n
// goroutines. The neighbour exits when its stdin closes, so it cannot
// outlive this process.
func startBurner(n int) (*burner, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-burner", strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &burner{cmd: cmd, stdin: stdin}, nil
}

func (b *burner) pid() int { return b.cmd.Process.Pid }

func (b *burner) cpu() (time.Duration, error) { return processCPU(b.pid()) }

// stop ends the neighbour and waits for it.
func (b *burner) stop() {
	b.stdin.Close()
	b.cmd.Wait()
}

// runBurner is the neighbour's side: spin n goroutines until stdin
// closes.
func runBurner(n int, stdin io.Reader) {
	for range n {
		go func() {
			for {
			}
		}()
	}
	io.Copy(io.Discard, stdin)
}
