package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// The hold's timers. verify pauses the running pipeline, takes a source
// snapshot, then moves the pipeline to the snapshot's position and compares;
// the calls come over the admin endpoint, so a verify that dies between
// them must not leave the pipeline held.
const (
	pauseWithin = time.Minute     // for the batch in flight to finish
	moveWithin  = time.Minute     // for the target to reach the position
	holdLease   = 2 * time.Minute // a hold lifts itself after this
)

// grip is what the holder needs of a pipeline.Hold.
type grip interface {
	Move(ctx context.Context, lsn change.LSN) error
	Release()
}

// holder keeps verify's hold on a running pipeline between admin calls.
// Its errors carry admin codes, so verify can tell them apart.
type holder struct {
	pause func(ctx context.Context) (grip, error)

	mu    sync.Mutex
	grip  grip // nil while nothing is held
	timer *time.Timer
}

func newHolder(p *pipeline.Pipeline) *holder {
	return &holder{pause: func(ctx context.Context) (grip, error) {
		h, err := p.Pause(ctx)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return h, nil
	}}
}

// Pause stops the target after the batch in flight; the hold lifts itself
// after holdLease in case the verify that asked for it died.
func (h *holder) Pause(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pauseWithin)
	defer cancel()
	g, err := h.pause(ctx)
	if err != nil {
		return holdError(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop() // a lapsed hold's timer must not lift this one
	}
	h.grip = g
	h.timer = time.AfterFunc(holdLease, func() { h.lapse(g) })
	return nil
}

// MoveTo moves the paused target to lsn: it applies every change committed
// before lsn and stops there. On failure the hold is released.
func (h *holder) MoveTo(ctx context.Context, lsn change.LSN) error {
	h.mu.Lock()
	g := h.grip
	h.mu.Unlock()
	if g == nil {
		return admin.Errorf(admin.CodeNotPaused, "the pipeline is not paused: call pause first")
	}
	ctx, cancel := context.WithTimeout(ctx, moveWithin)
	defer cancel()
	if err := g.Move(ctx, lsn); err != nil {
		h.Release()
		if errors.Is(err, context.DeadlineExceeded) {
			return admin.Errorf(admin.CodeTimeout, "the pipeline did not reach source position %s within a minute", lsn)
		}
		return holdError(err)
	}
	return nil
}

// Release lets the pipeline go on. It may be called with nothing held.
func (h *holder) Release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releaseLocked()
}

// lapse releases g when it is still the hold: the lease of a verify that
// went away ran out.
func (h *holder) lapse(g grip) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.grip == g {
		h.releaseLocked()
	}
}

func (h *holder) releaseLocked() {
	if h.grip != nil {
		h.grip.Release()
		h.grip = nil
		h.timer.Stop()
		h.timer = nil
	}
}

// holdError gives the pipeline's hold errors their admin codes.
func holdError(err error) error {
	switch {
	case errors.Is(err, pipeline.ErrHeld):
		return admin.Wrap(admin.CodeHeld, err)
	case errors.Is(err, pipeline.ErrPassed):
		return admin.Wrap(admin.CodePassed, err)
	case errors.Is(err, pipeline.ErrStalled):
		return admin.Wrap(admin.CodeStalled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return admin.Wrap(admin.CodeTimeout, err)
	}
	return err
}
