package stream

import (
	"context"
	"sync"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// Acks numbers the batches a reader emits into a pipeline and keeps what
// each one covers (a V) until the target commits it. A reader's batches
// come from several shards, in no one LSN order, so their Ack is not a
// source position but a token of the reader's own: 1 for its first batch,
// then 2, 3, … in emit order (see pipeline.BatchAcker). Confirm(t) from the
// pipeline then says the batches up to t are committed. The zero value is
// ready; Emit, Confirm, Wait and Pending may run on different goroutines.
type Acks[V any] struct {
	// order is held from numbering a batch to handing it to the pipeline,
	// so that tokens reach it in their order from several shard readers.
	// Confirm does not take it: a full queue blocks Emit, and only applies
	// (which confirm) empty it.
	order sync.Mutex

	mu        sync.Mutex
	last      change.LSN // the last token given
	confirmed change.LSN
	pending   []pendingAck[V]
	changed   chan struct{} // closed and replaced at each Confirm
}

type pendingAck[V any] struct {
	token change.LSN
	v     V
}

// Emit gives b the next token as its Ack, keeps v for it, and emits b. It
// returns emit's error (the pipeline is stopping).
func (a *Acks[V]) Emit(ctx context.Context, emit pipeline.Emit, b *change.Batch, v V) error {
	a.order.Lock()
	defer a.order.Unlock()
	a.mu.Lock()
	a.last++
	b.Ack = a.last
	a.pending = append(a.pending, pendingAck[V]{a.last, v})
	a.mu.Unlock()
	return emit(ctx, b)
}

// Confirm takes what the batches up to token covered, in emit order: the
// target committed them. Tokens at or below one confirmed before return
// nothing.
func (a *Acks[V]) Confirm(token change.LSN) []V {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []V
	n := 0
	for n < len(a.pending) && a.pending[n].token <= token {
		out = append(out, a.pending[n].v)
		n++
	}
	clear(a.pending[:n])
	a.pending = a.pending[n:]
	if token > a.confirmed {
		a.confirmed = token
		if a.changed != nil {
			close(a.changed)
			a.changed = nil
		}
	}
	return out
}

// Wait returns once token is confirmed, or ctx's error when it ends first.
func (a *Acks[V]) Wait(ctx context.Context, token change.LSN) error {
	for {
		a.mu.Lock()
		if a.confirmed >= token {
			a.mu.Unlock()
			return nil
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		ch := a.changed
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Pending returns what the batches not yet confirmed up to token cover, in
// emit order: a batch the pipeline merged from them (pipeline.Fencer).
func (a *Acks[V]) Pending(token change.LSN) []V {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []V
	for _, p := range a.pending {
		if p.token > token {
			break
		}
		out = append(out, p.v)
	}
	return out
}
