package natsstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jsonrtc/jsonrtc/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A replicated bucket takes a gateway's round of record writes as one
// JetStream atomic batch (ADR-50, nats-server 2.12+): the stream's leader
// proposes the batch's messages together, so the raft log, the append
// entries to the followers and their answers, and the publish
// acknowledgement are one per round rather than one per record, which on
// three nodes was most of a relayed message's CPU (docs/benchmarks.md).
// Each message keeps its compare-and-set (the expected last sequence of
// its key), checked against the batch before it: one conflict refuses
// the batch, and nothing of it is stored.

// errAtomicDisabled is JetStream's error code for a batch to a stream
// that takes none.
const errAtomicDisabled = 10174

// maxBatch bounds the messages of one batch: the server's default bound
// is 1,000 (a refresh of every record is a round of every session).
const maxBatch = 500

// Batch headers of ADR-50.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
	hdrExpectedSeq = "Nats-Expected-Last-Subject-Sequence"
	hdrKVOperation = "KV-Operation"
	hdrRollup      = "Nats-Rollup"
)

// allowBatches turns the bucket's atomic batch publish on, and reports
// false when the server keeps it off: older than 2.12, it would store a
// batch's messages as plain ones. A failure to say (the bucket not
// answering at a start) is taken as true: a batch refused because they
// are off turns them on (writeBatch). A node started later creates the
// bucket again, which turns them off until it too turns them on.
func allowBatches(ctx context.Context, js jetstream.JetStream, bucket string) bool {
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return true
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return true
	}
	cfg.AllowAtomicPublish = true
	info, err := js.UpdateStream(ctx, cfg)
	return err != nil || info.CachedInfo().Config.AllowAtomicPublish
}

// batchPrefix is the prefix of the bucket's keys' subjects, as the KV
// client makes them (its puts).
func batchPrefix(js jetstream.JetStream, bucket string) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API.$KV." + bucket + "."
	case o.APIPrefix != "" && strings.TrimSuffix(o.APIPrefix, ".") != strings.TrimSuffix(jetstream.DefaultAPIPrefix, "."):
		return strings.TrimSuffix(o.APIPrefix, ".") + ".$KV." + bucket + "."
	}
	return "$KV." + bucket + "."
}

// batchAck is the server's answer to a batch's commit.
type batchAck struct {
	Seq   uint64              `json:"seq"`
	Batch string              `json:"batch"`
	Count int                 `json:"count"`
	Error *jetstream.APIError `json:"error"`
}

// WriteBatch implements store.Batcher: store.ErrNoBatch when the bucket
// takes no batches (one replica, whose server would stage each batch in
// files of its own, or a server older than 2.12).
func (s *KV) WriteBatch(ctx context.Context, ws []store.Write) ([]uint64, error) {
	if s.batchPre.Load() == nil {
		return nil, store.ErrNoBatch
	}
	for _, w := range ws {
		if err := s.check(w.Value); err != nil {
			return nil, err
		}
	}
	revs := make([]uint64, 0, len(ws))
	for len(ws) > 0 {
		n := min(len(ws), maxBatch)
		r, err := s.writeBatch(ctx, ws[:n])
		if err != nil {
			if len(revs) > 0 {
				// The batches before it were made: not all or
				// nothing any more, the caller writes them again
				// one by one (their Update tells its own write).
				err = fmt.Errorf("natsstore: batch %d of several: %w", len(revs)/maxBatch+1, errors.Join(err, errPartial))
			}
			return nil, err
		}
		revs = append(revs, r...)
		ws = ws[n:]
	}
	return revs, nil
}

// errPartial makes the error of a batch after others made not a
// conflict: some writes were made.
var errPartial = errors.New("earlier batches made")

func (s *KV) writeBatch(ctx context.Context, ws []store.Write) ([]uint64, error) {
	pre := s.batchPre.Load()
	if pre == nil {
		return nil, store.ErrNoBatch
	}
	nc := s.js.Conn()
	id := rand.Text()
	for i, w := range ws {
		m := nats.NewMsg(*pre + w.Key)
		m.Data = w.Value
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if !w.Delete || w.Rev != 0 {
			m.Header.Set(hdrExpectedSeq, strconv.FormatUint(w.Rev, 10))
		}
		if w.Delete {
			// As the KV client's Purge (Delete: no marker of the
			// key's earlier values is kept), in the batch.
			m.Data = nil
			m.Header.Set(hdrKVOperation, "PURGE")
			m.Header.Set(hdrRollup, "sub")
		}
		if i < len(ws)-1 {
			// Only the commit is answered: for the batch.
			if err := nc.PublishMsg(m); err != nil {
				return nil, err
			}
			continue
		}
		m.Header.Set(hdrBatchCommit, "1")
		resp, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return nil, err
		}
		var ack batchAck
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return nil, fmt.Errorf("natsstore: batch answer: %w", err)
		}
		if ack.Error != nil {
			if ack.Error.ErrorCode == errAtomicDisabled {
				// Another node's start created the bucket again,
				// which turned batches off (allowBatches): on again
				// for the next round; this one goes one by one.
				allowBatches(ctx, s.js, s.bucket)
			}
			return nil, conflict(ack.Error)
		}
		if ack.Batch == "" {
			// A server older than 2.12 took the messages as plain
			// ones, each compare-and-set on its own: no more batches
			// (the caller writes this round again one by one).
			s.batchPre.Store(nil)
			return nil, errors.New("natsstore: the server takes no atomic batches")
		}
		if ack.Count != len(ws) || ack.Seq < uint64(len(ws)) {
			return nil, fmt.Errorf("natsstore: batch of %d answered as %d messages, last %d", len(ws), ack.Count, ack.Seq)
		}
		// The leader gives a batch's messages consecutive sequences
		// (one proposal), the last the commit's.
		revs := make([]uint64, len(ws))
		for j := range revs {
			if !ws[j].Delete {
				revs[j] = ack.Seq - uint64(len(ws)-1-j)
			}
		}
		return revs, nil
	}
	return nil, nil // no writes
}
