package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sluice-dev/sluice/internal/change"
)

// Hold is a grip on the target's progress that verify takes to compare
// source and target at one consistent point while changes keep flowing:
// Pause stops the target, the verify takes a source snapshot at some later
// position, Move lets the target apply exactly the changes committed before
// that position, and Release lets the pipeline go on. Meanwhile the source
// keeps its position and pauses when the queue fills (back-pressure).
type Hold struct {
	p       *Pipeline
	mu      sync.Mutex
	at      change.LSN    // apply only changes committed before at
	reached chan struct{} // closed once the target holds exactly those changes
	moved   chan struct{} // closed when at moves
	release chan struct{}
	once    sync.Once
}

// ErrHeld is returned by Pause while another hold exists.
var ErrHeld = errors.New("another verify holds the pipeline: wait for it to finish")

// Pause stops applying after the batch in flight and returns once the target
// is still. Snapshot rows still flow (a table's snapshot is not a point in
// the stream). If ctx ends first, the hold is released and ctx's error
// returned. A BatchAcker's pipeline cannot be held: ErrNoPositions.
func (p *Pipeline) Pause(ctx context.Context) (*Hold, error) {
	if _, ok := p.src.(BatchAcker); ok {
		return nil, ErrNoPositions
	}
	h := &Hold{p: p, reached: make(chan struct{}), moved: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	if p.hold != nil {
		p.mu.Unlock()
		return nil, ErrHeld
	}
	p.hold = h
	if !p.applying {
		close(h.reached) // idle: the next batch will see the hold
	}
	p.mu.Unlock()
	if err := h.wait(ctx, h.reached); err != nil {
		return nil, err
	}
	return h, nil
}

// Move lets the target apply every change committed before lsn and stop
// there; it returns once the target holds exactly those changes. lsn may
// only grow.
func (h *Hold) Move(ctx context.Context, lsn change.LSN) error {
	h.mu.Lock()
	if lsn < h.at {
		h.mu.Unlock()
		return fmt.Errorf("hold position can only move forward (from %s to %s)", h.at, lsn)
	}
	h.at = lsn
	h.reached = make(chan struct{})
	reached := h.reached
	close(h.moved)
	h.moved = make(chan struct{})
	h.mu.Unlock()

	h.p.mu.Lock()
	if h.p.seenChange >= lsn {
		// The target applied a change committed at or after lsn before the
		// pause: it cannot be held before lsn any more.
		h.p.mu.Unlock()
		h.Release()
		return ErrPassed
	}
	if !h.p.applying && h.p.seen >= lsn {
		h.signal(reached)
	}
	h.p.mu.Unlock()
	return h.wait(ctx, reached)
}

// Release lets the pipeline go on. It may be called more than once.
func (h *Hold) Release() {
	h.once.Do(func() {
		h.p.mu.Lock()
		if h.p.hold == h {
			h.p.hold = nil
		}
		h.p.mu.Unlock()
		close(h.release)
	})
}

// wait waits for ch. While the target refuses the batch it must apply
// first, the hold cannot reach its position: it is released and
// ErrStalled returned.
func (h *Hold) wait(ctx context.Context, ch chan struct{}) error {
	select {
	case <-ch:
		return nil
	default:
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		h.Release()
		return ctx.Err()
	case <-h.p.retry.stalled():
		h.Release()
		return stalledError(h.p.retry.Health().Stall)
	}
}

func (h *Hold) state() (change.LSN, chan struct{}, chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.at, h.reached, h.moved
}

func (h *Hold) signal(ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// ErrPassed is returned by Move when the target already applied a change
// committed at or after the position; the hold is then released.
var ErrPassed = errors.New("the target already applied changes past that position")

// applyHolding applies b, honouring a hold: the part of b committed before
// the hold position is applied, then the writer waits, with the rest in
// hand, for the hold to move or be released.
//
// tb is b's transform output when b was transformed ahead (taken while no
// hold existed, so in flight for any hold that came since): it is applied
// whole.
func (p *Pipeline) applyHolding(runCtx, applyCtx context.Context, b, tb *change.Batch) error {
	// Reading the hold and marking the writer busy happen under one lock,
	// so a Pause racing with this batch is either seen here or waits for it.
	p.mu.Lock()
	h := p.hold
	p.applying = true
	if h == nil {
		p.noteSeenLocked(b)
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		// A batch transformed ahead is in flight already.
		p.applying = p.ahead != nil
		p.mu.Unlock()
	}()
	if h == nil || tb != nil {
		if err := p.apply(runCtx, applyCtx, b, tb); err != nil || h == nil {
			return err
		}
		// A hold came while b was in flight: now the target is still.
		b = nil
		if at, _, _ := h.state(); !p.seenAtLeast(at) {
			return nil
		}
		_, reached, _ := h.state()
		h.signal(reached)
		return nil
	}
	for b != nil {
		at, reached, moved := h.state()
		before, after := split(b, at)
		if before.Ack == 0 && after != nil {
			// The stream passed at with this batch (a change at or after
			// it, or an Ack that reaches it, even alone): the last
			// transaction of the batches already applied is whole too. Say
			// so, so a transform waiting for its end (views) emits it
			// before the hold.
			p.mu.Lock()
			if p.seenChange < at {
				before.Ack = p.seenChange
			}
			p.mu.Unlock()
		}
		if len(before.Changes) > 0 || len(before.Snapshotted) > 0 || before.Ack > 0 || len(before.Reset) > 0 {
			if err := p.apply(runCtx, applyCtx, before, nil); err != nil {
				return err
			}
			p.noteSeen(before)
		}
		b = after
		if b == nil && !p.seenAtLeast(at) {
			return nil // more batches are needed to know the stream passed at
		}
		// Something at or after the hold position arrived (the source
		// delivers in commit order), or the stream is known to be past it:
		// the target holds exactly the changes committed before at.
		h.signal(reached)
		select {
		case <-h.release:
			if b == nil {
				return nil
			}
			p.noteSeen(b)
			return p.apply(runCtx, applyCtx, b, nil)
		case <-moved:
		case <-runCtx.Done():
			return nil // the held rest stays in the slot
		}
	}
	return nil
}

func (p *Pipeline) noteSeen(b *change.Batch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noteSeenLocked(b)
}

func (p *Pipeline) noteSeenLocked(b *change.Batch) {
	p.seen = max(p.seen, b.Ack)
	if n := len(b.Changes); n > 0 && b.Changes[n-1].Op != change.OpRead {
		p.seenChange = max(p.seenChange, b.Changes[n-1].Pos.CommitLSN)
		p.seen = max(p.seen, p.seenChange)
	}
}

func (p *Pipeline) seenAtLeast(l change.LSN) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen >= l
}

// split cuts b before its first change committed at or after at. Snapshot
// rows always go first. The ack stays with the part it was sent with: a
// batch's Ack covers its last complete transaction, which may lie in either
// part, so the first part only keeps it when it is below at.
func split(b *change.Batch, at change.LSN) (before, after *change.Batch) {
	i := 0
	for i < len(b.Changes) && (b.Changes[i].Op == change.OpRead || b.Changes[i].Pos.CommitLSN < at) {
		i++
	}
	if i == len(b.Changes) && b.Ack < at {
		return b, nil
	}
	// Marks, like the ack, speak for the whole batch: they go with its end.
	before = &change.Batch{Reset: b.Reset, Changes: b.Changes[:i], Snapshotted: b.Snapshotted}
	after = &change.Batch{Changes: b.Changes[i:], Marks: b.Marks, Ack: b.Ack}
	// Every transaction before the cut is whole (the source delivers in
	// commit order and the rest starts at or after at): say so, so that a
	// transform waiting for a transaction's end (views) emits its output
	// now. The last one's commit LSN is a safe Ack: its commit record
	// ends after it, so a restart from there replays it, never skips it.
	for j := i - 1; j >= 0; j-- {
		if c := &b.Changes[j]; c.Op != change.OpRead {
			before.Ack = c.Pos.CommitLSN
			break
		}
	}
	return before, after
}
