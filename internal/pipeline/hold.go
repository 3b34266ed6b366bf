package pipeline

import (
	"context"
	"fmt"

	"github.com/sluice-dev/sluice/internal/change"
)

// hold is a request to stop applying at a source position: every change
// committed before at is applied, nothing after it, until release. Verify
// uses it to compare source and target at one consistent point while
// changes keep flowing.
type hold struct {
	at      change.LSN
	reached chan struct{} // closed once the target holds exactly the changes before at
	release chan struct{} // closed by the requester
}

// HoldAt makes the target stop at lsn: once it has applied every change
// committed before lsn and none after, HoldAt returns a release function that
// lets the pipeline go on. The source keeps its position meanwhile and pauses
// when the queue fills (back-pressure). If ctx ends first, the hold is
// dropped and ctx's error returned.
func (p *Pipeline) HoldAt(ctx context.Context, lsn change.LSN) (release func(), err error) {
	h := &hold{at: lsn, reached: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	if p.hold != nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("another verify holds the pipeline: wait for it to finish")
	}
	p.hold = h
	if p.seen >= lsn {
		// Already past: the target may hold changes after lsn.
		p.hold = nil
		p.mu.Unlock()
		return nil, errPassed
	}
	p.mu.Unlock()
	var once bool
	rel := func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !once {
			once = true
			close(h.release)
			if p.hold == h {
				p.hold = nil
			}
		}
	}
	select {
	case <-h.reached:
		return rel, nil
	case <-ctx.Done():
		rel()
		return nil, ctx.Err()
	}
}

// errPassed: the pipeline already applied past the requested position.
var errPassed = fmt.Errorf("the target already applied changes past that position")

// ErrPassed is returned by HoldAt when the target is already beyond lsn.
var ErrPassed = errPassed

// applyHolding applies b, honouring a hold: the part of b committed before
// the hold position is applied, then the writer waits for release with the
// rest in hand.
func (p *Pipeline) applyHolding(runCtx, applyCtx context.Context, b *change.Batch) error {
	// Reading the hold and noting what is about to be applied happen under
	// one lock, so a HoldAt racing with this batch either sees the batch's
	// position (and reports ErrPassed) or is honoured by it.
	p.mu.Lock()
	h := p.hold
	if h == nil {
		p.noteSeenLocked(b)
	}
	p.mu.Unlock()
	if h == nil {
		return p.apply(applyCtx, b)
	}
	before, after := split(b, h.at)
	if err := p.apply(applyCtx, before); err != nil {
		return err
	}
	p.noteSeen(before)
	if after == nil {
		if p.seenAtLeast(h.at) {
			p.waitRelease(runCtx, h)
		}
		return nil
	}
	// Something at or after the hold position arrived: everything before it
	// is applied, since the source delivers in commit order.
	p.waitRelease(runCtx, h)
	p.noteSeen(after)
	return p.apply(applyCtx, after)
}

func (p *Pipeline) waitRelease(ctx context.Context, h *hold) {
	close(h.reached)
	select {
	case <-h.release:
	case <-ctx.Done():
	}
}

func (p *Pipeline) noteSeen(b *change.Batch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noteSeenLocked(b)
}

func (p *Pipeline) noteSeenLocked(b *change.Batch) {
	if b.Ack > p.seen {
		p.seen = b.Ack
	}
	if n := len(b.Changes); n > 0 && b.Changes[n-1].Op != change.OpRead && b.Changes[n-1].Pos.CommitLSN > p.seen {
		p.seen = b.Changes[n-1].Pos.CommitLSN
	}
}

func (p *Pipeline) seenAtLeast(l change.LSN) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen >= l
}

// split cuts b before its first change committed at or after at. The ack
// stays with the part it was sent with: a batch's Ack covers its last
// complete transaction, which may lie in either part, so the first part
// only keeps it when it is below at.
func split(b *change.Batch, at change.LSN) (before, after *change.Batch) {
	i := 0
	for i < len(b.Changes) && (b.Changes[i].Op == change.OpRead || b.Changes[i].Pos.CommitLSN < at) {
		i++
	}
	if i == len(b.Changes) && b.Ack < at {
		return b, nil
	}
	before = &change.Batch{Changes: b.Changes[:i]}
	after = &change.Batch{Changes: b.Changes[i:], Ack: b.Ack}
	before.Snapshotted = append(before.Snapshotted, b.Snapshotted...)
	if len(after.Changes) == 0 && b.Ack >= at {
		// Only the ack is past the hold: nothing to hold back but the ack itself.
		return before, after
	}
	return before, after
}
