package stream

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Mark is a reader's checkpoint for one shard or partition; it travels in
// the batch (change.Batch.Marks) and the target stores it in the same
// transaction as the data read up to it.
type Mark = change.StreamMark

// FenceError is an apply refused because another reader stored a mark at
// or past the batch's records of a shard (see Mark.Below).
type FenceError = warehouse.FenceError

// MarkStore is where a reader finds, when it starts, how far each shard was
// read: the marks of one stream (shard → sequence) stored with the data. A
// consumer's is its warehouse target (warehouse.StreamTarget); a reader of
// event streams whose marks live elsewhere passes its own.
type MarkStore interface {
	StreamMarks(ctx context.Context, stream string) (map[string]string, error)
}

// ReadRecord is one stream record as a reader hands it to a Decoder.
type ReadRecord struct {
	Data     []byte
	Stream   string    // the Kinesis stream's name, or the Kafka topic
	Shard    string    // the shard id, or the partition number
	Sequence string    // the sequence number, or the offset
	Arrival  time.Time // when the stream took it (Kinesis' approximate arrival, Kafka's timestamp)
}

// Decoder turns one record into changes, appended to dst (none, one or
// several). An error makes the record a reject: set aside in the reject
// file, or, with strict records, the reader stops naming it. A reader's
// default is Interner.DecodeRecord (sluice change records); a reader of
// other records (plain JSON events for SQL views) passes its own. It is
// called from the reader's goroutines, several at once (one per shard).
type Decoder func(dst []change.Change, rec ReadRecord) ([]change.Change, error)

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

// DecodeRecord is the readers' default Decoder: rec is one sluice change
// record (change.DecodeRecord), whose table is interned.
func (in *Interner) DecodeRecord(dst []change.Change, rec ReadRecord) ([]change.Change, error) {
	d, err := change.DecodeRecord(rec.Data)
	if err != nil {
		return dst, err
	}
	d.Change.Table = in.Intern(d.Change.Table)
	return append(dst, d.Change), nil
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
