package natsstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Embedded is a single-node NATS server running inside this process,
// with JetStream file storage under a directory, and a store on it. It
// listens on no network port: the process connects to it in memory.
type Embedded struct {
	*KV
	srv  *server.Server
	nc   *nats.Conn
	lock *os.File
}

// EmbeddedOptions configure [Start].
type EmbeddedOptions struct {
	// Dir holds JetStream's files; it is created if missing. Required.
	Dir string
	// Store configures the bucket.
	Store Options
	// StartTimeout bounds the server's start; default 10s.
	StartTimeout time.Duration
}

// Start runs the server and opens the bucket. Close stops both.
func Start(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	if o.Dir == "" {
		return nil, errors.New("natsstore: no data directory")
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	// JetStream does not lock its directory: two servers on one would
	// corrupt each other's files.
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	// A value must fit in one message, with room for the headers.
	payload := int32(server.MAX_PAYLOAD_SIZE)
	if p := o.Store.MaxValueBytes + 4096; o.Store.MaxValueBytes > 0 && p > int(payload) {
		payload = int32(p)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "jsonrtcd",
		DontListen: true,
		JetStream:  true,
		StoreDir:   o.Dir,
		MaxPayload: payload,
		// The gateway handles signals, and logs what matters itself.
		NoSigs: true,
		NoLog:  true,
	})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(o.StartTimeout) {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("natsstore: the embedded NATS server did not start within %v (data directory %s)", o.StartTimeout, o.Dir)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("jsonrtcd"))
	if err != nil {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	e := &Embedded{srv: srv, nc: nc, lock: lock}
	js, err := jetstream.New(nc)
	if err == nil {
		e.KV, err = New(ctx, js, o.Store)
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close closes the connection and shuts the server down, which writes
// JetStream's state out to its files.
func (e *Embedded) Close() {
	e.nc.Close()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.lock.Close() // releases the lock
}

// lockDir takes an exclusive lock on dir's lock file, or fails at once.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("natsstore: data directory %s is in use by another process: %w", dir, err)
	}
	return f, nil
}
