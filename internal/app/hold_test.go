package app

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// fakeGrip is a hold whose Move blocks until ctx ends (stuck) or returns err.
type fakeGrip struct {
	err      error
	stuck    bool
	released int
	moved    []change.LSN
}

func (g *fakeGrip) Move(ctx context.Context, lsn change.LSN) error {
	g.moved = append(g.moved, lsn)
	if g.stuck {
		<-ctx.Done()
		return ctx.Err()
	}
	return g.err
}

func (g *fakeGrip) Release() { g.released++ }

// fakePauser hands out the grips in order, or err.
func fakePauser(err error, grips ...*fakeGrip) func(context.Context) (grip, error) {
	return func(context.Context) (grip, error) {
		if err != nil {
			return nil, err
		}
		g := grips[0]
		grips = grips[1:]
		return g, nil
	}
}

// A verify that pauses and then goes away does not hold the pipeline for
// ever: the hold lifts itself after its lease.
func TestHoldLapses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGrip{}
		h := &holder{pause: fakePauser(nil, g)}
		if err := h.Pause(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(holdLease - time.Second)
		if g.released != 0 {
			t.Fatal("released before the lease ran out")
		}
		time.Sleep(2 * time.Second)
		if g.released != 1 {
			t.Fatalf("released %d times after the lease, want 1", g.released)
		}
		if err := h.MoveTo(t.Context(), 10); admin.CodeOf(err) != admin.CodeNotPaused {
			t.Errorf("MoveTo after the lapse = %v (code %q), want %q", err, admin.CodeOf(err), admin.CodeNotPaused)
		}
	})
}

// The lease of a hold released early does not lift the next verify's hold.
func TestOldLeaseSparesNextHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		first, second := &fakeGrip{}, &fakeGrip{}
		h := &holder{pause: fakePauser(nil, first, second)}
		if err := h.Pause(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		h.Release()
		if err := h.Pause(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(holdLease - time.Second) // past the first lease, within the second
		if second.released != 0 {
			t.Fatal("the first hold's lease released the second hold")
		}
		if err := h.MoveTo(t.Context(), 7); err != nil || len(second.moved) != 1 || second.moved[0] != 7 {
			t.Errorf("MoveTo = %v, moved %v", err, second.moved)
		}
		h.Release()
		h.Release() // twice is fine
		if first.released != 1 || second.released != 1 {
			t.Errorf("released %d and %d times, want 1 and 1", first.released, second.released)
		}
	})
}

// Each way a hold fails has its code, and a failed move releases the hold.
func TestHoldErrorCodes(t *testing.T) {
	stall := fmt.Errorf("%w (check constraint)", pipeline.ErrStalled)
	for _, tc := range []struct {
		name     string
		pauseErr error
		grip     *fakeGrip
		want     admin.Code
	}{
		{"another verify", pipeline.ErrHeld, nil, admin.CodeHeld},
		{"pause timeout", context.DeadlineExceeded, nil, admin.CodeTimeout},
		{"pause fails", errors.New("boom"), nil, admin.CodeFailed},
		{"passed", nil, &fakeGrip{err: pipeline.ErrPassed}, admin.CodePassed},
		{"stalled", nil, &fakeGrip{err: stall}, admin.CodeStalled},
		{"move timeout", nil, &fakeGrip{stuck: true}, admin.CodeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := &holder{pause: fakePauser(tc.pauseErr, tc.grip)}
				err := h.Pause(t.Context())
				if tc.grip != nil {
					if err != nil {
						t.Fatal(err)
					}
					err = h.MoveTo(t.Context(), 42)
					if tc.grip.released != 1 {
						t.Errorf("a failed move released the hold %d times, want 1", tc.grip.released)
					}
				}
				if got := admin.CodeOf(err); got != tc.want {
					t.Errorf("error %v has code %q, want %q", err, got, tc.want)
				}
			})
		})
	}
}

// A process without an in-process pipeline (a stream consumer) says so by
// code, and release is harmless there.
func TestCallWithoutPipeline(t *testing.T) {
	r := &Running{}
	for _, op := range []string{"pause", "hold"} {
		if _, err := r.Call(context.Background(), op, nil); admin.CodeOf(err) != admin.CodeNoHold {
			t.Errorf("%s = %v (code %q), want %q", op, err, admin.CodeOf(err), admin.CodeNoHold)
		}
	}
	if _, err := r.Call(context.Background(), "release", nil); err != nil {
		t.Errorf("release = %v", err)
	}
	if _, err := r.Call(context.Background(), "checksums", nil); admin.CodeOf(err) != admin.CodeUnsupported {
		t.Errorf("checksums without a target = %v", err)
	}
	if _, err := r.Call(context.Background(), "hold", []byte("{")); admin.CodeOf(err) != admin.CodeBadRequest {
		t.Errorf("bad arguments = %v", err)
	}
	if _, err := r.Call(context.Background(), "frobnicate", nil); admin.CodeOf(err) != admin.CodeUnsupported {
		t.Errorf("unknown op = %v", err)
	}
}
