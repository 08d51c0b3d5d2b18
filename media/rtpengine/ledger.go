package rtpengine

import (
	"context"
	"errors"
)

// Ledger remembers, outside the gateway's process, which calls each
// instance holds, so that a gateway that died without deleting them
// (SIGKILL, a crash, a lost machine) has them deleted when it, or
// another node, starts again (Pool.Sweep): rtpengine's own --timeout is
// then the last resort, not the rule. The pool calls it as calls are
// made and deleted; it must not block (a store write is a round trip:
// the implementation queues it).
type Ledger interface {
	// Hold records that the instance at addr holds the call of k.
	Hold(k Keys, addr string)
	// Release forgets the call: it was deleted, or its delete is owed
	// to an instance that this process will send it to.
	Release(callID string)
}

// Sweep deletes a call a gateway left behind on the instance at addr
// (Ledger): one the instance no longer knows ("Unknown call-id") is
// gone already. An instance not in the pool (removed from the
// configuration since) is left to its own --timeout: ErrNoInstance. One
// that does not answer owes the delete, as a lost call's.
func (p *Pool) Sweep(ctx context.Context, addr string, k Keys) error {
	for _, m := range p.members {
		if m.addr != addr {
			continue
		}
		del := Request{CallID: k.CallID, FromTag: k.FromTag, DeleteNow: true}
		_, err := m.ctl.Delete(ctx, &del)
		var re *Error
		if errors.As(err, &re) {
			return nil
		}
		if err != nil {
			m.owe(del)
		}
		return err
	}
	return ErrNoInstance
}
