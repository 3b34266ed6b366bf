package pipeline

import (
	"context"
	"sync"

	"github.com/sluice-dev/sluice/internal/change"
)

// queue holds batches between the source and the target, bounded in bytes.
// A full queue blocks the source (back-pressure); nothing is ever dropped.
// One batch larger than the bound is still admitted when the queue is empty,
// so a huge transaction cannot deadlock the pipeline; the source bounds its
// own batches, which bounds memory overall.
type queue struct {
	mu       sync.Mutex
	notEmpty *sync.Cond
	notFull  *sync.Cond
	items    []*change.Batch
	sizes    []int
	bytes    int
	max      int
	closed   bool
}

func newQueue(maxBytes int) *queue {
	q := &queue{max: maxBytes}
	q.notEmpty = sync.NewCond(&q.mu)
	q.notFull = sync.NewCond(&q.mu)
	return q
}

// push blocks until there is room or ctx ends.
func (q *queue) push(ctx context.Context, b *change.Batch) error {
	size := b.Size()
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.notFull.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) > 0 && q.bytes+size > q.max && !q.closed {
		if err := ctx.Err(); err != nil {
			return err
		}
		q.notFull.Wait()
	}
	if q.closed {
		return errStopping
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	q.items = append(q.items, b)
	q.sizes = append(q.sizes, size)
	q.bytes += size
	q.notEmpty.Signal()
	return nil
}

// pop waits for at least one batch, then takes queued batches up to the
// limits and merges them into one, so the target applies large batches when
// it is the bottleneck and small ones (low latency) when it keeps up.
// It returns nil once the queue is closed and empty.
func (q *queue) pop(maxChanges, maxBytes int) *change.Batch {
	return q.take(maxChanges, maxBytes, true)
}

// tryPop is pop without waiting: nil when nothing is queued.
func (q *queue) tryPop(maxChanges, maxBytes int) *change.Batch {
	return q.take(maxChanges, maxBytes, false)
}

func (q *queue) take(maxChanges, maxBytes int, wait bool) *change.Batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	for wait && len(q.items) == 0 && !q.closed {
		q.notEmpty.Wait()
	}
	if len(q.items) == 0 {
		return nil
	}
	// First how many batches fit, then one allocation for all of them.
	taken, bytes, changes := 1, q.sizes[0], len(q.items[0].Changes)
	for taken < len(q.items) {
		next := q.items[taken]
		if len(next.Reset) > 0 {
			break // its Reset must not be applied before the changes ahead of it
		}
		if changes+len(next.Changes) > maxChanges || bytes+q.sizes[taken] > maxBytes {
			break
		}
		changes += len(next.Changes)
		bytes += q.sizes[taken]
		taken++
	}
	out := q.items[0]
	if taken > 1 {
		// A new batch, so that appending does not alias the source's slices.
		out = &change.Batch{Reset: out.Reset, Changes: make([]change.Change, 0, changes), Ack: out.Ack}
		for _, b := range q.items[:taken] {
			out.Changes = append(out.Changes, b.Changes...)
			out.Snapshotted = append(out.Snapshotted, b.Snapshotted...)
			for _, m := range b.Marks {
				out.AddMark(m) // the latest per shard, in order
			}
			if b.Ack > out.Ack {
				out.Ack = b.Ack
			}
		}
	}
	clear(q.items[:taken])
	q.items = q.items[taken:]
	q.sizes = q.sizes[taken:]
	q.bytes -= bytes
	q.notFull.Broadcast()
	return out
}

func (q *queue) len() (int, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.bytes
}

// close wakes everyone; pop drains what is left, push fails.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
	q.mu.Unlock()
}
