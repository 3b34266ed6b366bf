package stream

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Mark is a reader's checkpoint for one shard or partition, stored by the
// Applier in the same transaction as the data read up to it: Stream names
// the stream (or topic), Shard the shard id (or partition number), Sequence
// the last record applied (a Kinesis sequence number, a Kafka offset).
type Mark = warehouse.StreamMark

// FenceError is an apply refused because another reader stored a mark at
// or past the batch's records of a shard (see Mark.Below).
type FenceError = warehouse.FenceError

// Applier is what a reader needs of a warehouse: apply a batch together
// with the marks of the records it came from, in one transaction, and
// report the stored marks of a stream (shard → sequence). Storing marks
// with the data is what makes a reader exactly-once: a batch is either
// applied and marked, or neither, and a restart reads on after the mark.
type Applier interface {
	ApplyStream(ctx context.Context, b *change.Batch, marks []Mark) error
	StreamMarks(ctx context.Context, stream string) (map[string]string, error)
}

// SetMark keeps one mark per shard, the latest.
func SetMark(marks []Mark, m Mark) []Mark {
	for i := range marks {
		if marks[i].Shard == m.Shard {
			marks[i] = m
			return marks
		}
	}
	return append(marks, m)
}

// Interner makes records of one table with one shape share a *change.Table,
// so that consumers can tell a schema change by pointer, as with the
// source. The zero value is ready.
type Interner struct {
	mu     sync.Mutex
	shapes map[change.TableID][]*change.Table
}

// maxShapes bounds the shapes kept per table (a schema change mid-stream
// interleaves old and new shapes across shards for a while).
const maxShapes = 8

// Intern returns the known table of t's shape, or t itself, numbered as the
// table's next version.
func (in *Interner) Intern(t *change.Table) *change.Table {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.shapes == nil {
		in.shapes = map[change.TableID][]*change.Table{}
	}
	id := t.ID()
	known := in.shapes[id]
	for _, k := range known {
		if k.SameShape(t) {
			return k
		}
	}
	t.Version = 1
	if n := len(known); n > 0 {
		t.Version = known[n-1].Version + 1
	}
	if len(known) == maxShapes {
		known = known[1:]
	}
	in.shapes[id] = append(known, t)
	return t
}

// Decode decodes one change record and interns its table.
func (in *Interner) Decode(data []byte) (change.Change, error) {
	d, err := change.DecodeRecord(data)
	if err != nil {
		return change.Change{}, err
	}
	d.Change.Table = in.Intern(d.Change.Table)
	return d.Change, nil
}

// Backoff is exponential backoff with full jitter: a random wait up to
// Base·2^(attempt-1), capped at Max, so retrying clients spread out instead
// of hitting a throttled server in step.
type Backoff struct{ Base, Max time.Duration }

// Wait sleeps before the attempt-th retry (1 is the first), or returns the
// context's error when it ends first.
func (b Backoff) Wait(ctx context.Context, attempt int) error {
	d := b.Base
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = time.Duration(rand.Int64N(int64(max(min(d, b.Max), 1))) + 1)
	return SleepCtx(ctx, d)
}

// SleepCtx sleeps for d or until ctx ends (then its error).
func SleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
