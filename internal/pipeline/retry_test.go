package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// flakyTarget refuses batches with fail's error until fail returns nil.
type flakyTarget struct {
	fakeTarget
	mu2      sync.Mutex
	fail     func(attempt int) error
	attempts int
}

func (t *flakyTarget) Apply(ctx context.Context, b *change.Batch) error {
	t.mu2.Lock()
	t.attempts++
	err := t.fail(t.attempts)
	t.mu2.Unlock()
	if err != nil {
		return err
	}
	return t.fakeTarget.Apply(ctx, b)
}

// gate is an injected backoff sleep: it records each wait and returns when
// the test lets it (or at once when open).
type gate struct {
	mu    sync.Mutex
	waits []time.Duration
	tick  chan struct{}
	open  bool
}

func (g *gate) sleep(ctx context.Context, d time.Duration) error {
	g.mu.Lock()
	g.waits = append(g.waits, d)
	open := g.open
	g.mu.Unlock()
	if open {
		return nil
	}
	select {
	case <-g.tick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) recorded() []time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]time.Duration(nil), g.waits...)
}

func (s *fakeSource) confirms() []change.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]change.LSN(nil), s.confirmed...)
}

func snapshotted() map[change.TableID]change.TableState {
	return map[change.TableID]change.TableState{tbl.ID(): {Snapshotted: true}}
}

var notNull = &TargetError{Class: Permanent, Table: "public.t", Column: "v", Constraint: "t_v_not_null",
	Fix: "drop the constraint at the target", Err: errors.New(`null value in column "v" violates not-null constraint`)}

// A batch the target refuses stalls the pipeline, reported with the table,
// column and fix, with nothing confirmed; once the target is fixed, the
// next attempt applies it and the pipeline streams on, with no restart.
func TestPermanentFailureStallsThenResumes(t *testing.T) {
	var fixed sync.Mutex
	broken := true
	src := &fakeSource{stream: []*change.Batch{{Changes: []change.Change{row("1", 20)}, Ack: 21}, {Changes: []change.Change{row("2", 30)}, Ack: 31}}}
	dst := &flakyTarget{fakeTarget: fakeTarget{state: snapshotted()}, fail: func(int) error {
		fixed.Lock()
		defer fixed.Unlock()
		if broken {
			return notNull
		}
		return nil
	}}
	g := &gate{tick: make(chan struct{})}
	var logs bytes.Buffer
	p := New(src, dst, Options{Retry: Backoff{Sleep: g.sleep}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()

	// Three refusals: stalled, counted, logged once.
	for i := 0; i < 2; i++ {
		waitFor(t, func() bool { return len(g.recorded()) == i+1 })
		g.tick <- struct{}{}
	}
	waitFor(t, func() bool { return len(g.recorded()) == 3 })
	st := p.Stats()
	if st.Phase != PhaseStalled || st.Stall == nil {
		t.Fatalf("phase %s, stall %+v: want stalled", st.Phase, st.Stall)
	}
	s := st.Stall
	if s.Class != Permanent || s.Table != "public.t" || s.Column != "v" || s.Constraint != "t_v_not_null" || s.Fix == "" ||
		s.Attempts != 3 || !strings.Contains(s.Error, "not-null") || s.First != row("1", 20).Pos.String() || s.NextRetry.IsZero() {
		t.Errorf("stall %+v", s)
	}
	if len(st.ApplyFailures) != 1 || st.ApplyFailures[0] != (FailureCount{Table: "public.t", Class: Permanent, Count: 3}) {
		t.Errorf("failures %+v, want 3 permanent ones for public.t", st.ApplyFailures)
	}
	if c := src.confirms(); len(c) != 0 {
		t.Errorf("confirmed %v while the first batch is refused", c)
	}
	if n := strings.Count(logs.String(), "refused by the target"); n != 1 {
		t.Errorf("the same error logged %d times, want once:\n%s", n, logs.String())
	}
	if _, err := p.Pause(ctx); !errors.Is(err, ErrStalled) {
		t.Errorf("Pause while stalled = %v, want ErrStalled", err)
	}

	fixed.Lock()
	broken = false
	fixed.Unlock()
	if !p.RetryNow() {
		t.Error("RetryNow while stalled reported no stall")
	}
	waitFor(t, func() bool { c := src.confirms(); return len(c) > 0 && c[len(c)-1] == 31 })
	st = p.Stats()
	if st.Phase != PhaseStreaming || st.Stall != nil || st.Applied != 2 {
		t.Errorf("after the fix: phase %s, stall %+v, applied %d", st.Phase, st.Stall, st.Applied)
	}
	if !strings.Contains(logs.String(), "resumed") {
		t.Errorf("no log line says it resumed:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A transient error (no TargetError: a lost connection) is retried with
// doubling waits, capped, and the batch applied once it goes away.
func TestTransientFailureRetriesWithBackoff(t *testing.T) {
	src := &fakeSource{stream: []*change.Batch{{Changes: []change.Change{row("1", 20)}, Ack: 21}}}
	lost := errors.New("connection reset by peer")
	dst := &flakyTarget{fakeTarget: fakeTarget{state: snapshotted()}, fail: func(n int) error {
		if n <= 5 {
			return lost
		}
		return nil
	}}
	g := &gate{open: true}
	p := New(src, dst, Options{Retry: Backoff{Min: time.Second, Max: 5 * time.Second, Sleep: g.sleep}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()
	waitFor(t, func() bool { c := src.confirms(); return len(c) == 1 && c[0] == 21 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if got := g.recorded(); len(got) != len(want) || got[0] != want[0] || got[2] != want[2] || got[4] != want[4] {
		t.Errorf("waits %v, want %v", got, want)
	}
	st := p.Stats()
	if st.Stall != nil || len(st.ApplyFailures) != 1 || st.ApplyFailures[0] != (FailureCount{Table: "public.t", Class: Transient, Count: 5}) {
		t.Errorf("stall %+v, failures %+v", st.Stall, st.ApplyFailures)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second, 10: 5 * time.Minute, 1000: 5 * time.Minute} {
		if got := b.Delay(n); got != want {
			t.Errorf("Delay(%d) = %s, want %s", n, got, want)
		}
	}
}

// A fatal error (the target cannot be used by this process any more) ends
// the run with it, and nothing is confirmed.
func TestFatalFailureStopsRun(t *testing.T) {
	src := &fakeSource{stream: []*change.Batch{{Changes: []change.Change{row("1", 20)}, Ack: 21}}}
	fatal := &TargetError{Class: Fatal, Err: errors.New("database has been invalidated")}
	dst := &flakyTarget{fakeTarget: fakeTarget{state: snapshotted()}, fail: func(int) error { return fatal }}
	g := &gate{open: true}
	err := New(src, dst, Options{Retry: Backoff{Sleep: g.sleep}}).Run(context.Background(), []*change.Table{tbl})
	if !errors.Is(err, fatal) {
		t.Fatalf("Run = %v, want the fatal error", err)
	}
	if c := src.confirms(); len(c) != 0 || len(g.recorded()) != 0 {
		t.Errorf("confirmed %v, waited %v after a fatal error", c, g.recorded())
	}
}

// Stopping while stalled returns at once, with the refused batch left in
// the slot.
func TestShutdownWhileStalled(t *testing.T) {
	src := &fakeSource{stream: []*change.Batch{{Changes: []change.Change{row("1", 20)}, Ack: 21}}}
	dst := &flakyTarget{fakeTarget: fakeTarget{state: snapshotted()}, fail: func(int) error { return notNull }}
	g := &gate{tick: make(chan struct{})}
	p := New(src, dst, Options{Retry: Backoff{Sleep: g.sleep}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()
	waitFor(t, func() bool { return len(g.recorded()) == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop while stalled")
	}
	if c := src.confirms(); len(c) != 0 || dst.count() != 0 {
		t.Errorf("confirmed %v, applied %d", c, dst.count())
	}
}

// The failure is counted under the source table the warehouse's table
// stands for, and a distinct error is logged again.
func TestStallNamesSourceTableAndLogsEachDistinctError(t *testing.T) {
	b := &change.Batch{Changes: []change.Change{row("1", 20)}}
	if tb, tt := sourceTable(b, "mirror.t"); tb != "public.t" || tt != "mirror.t" {
		t.Errorf("sourceTable(mirror.t) = %q, %q", tb, tt)
	}
	if tb, tt := sourceTable(b, ""); tb != "public.t" || tt != "" {
		t.Errorf("sourceTable(\"\") = %q, %q", tb, tt)
	}
	var logs bytes.Buffer
	r := &Retrier{Backoff: Backoff{Sleep: func(context.Context, time.Duration) error { return nil }},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	// The wrapping text varies from attempt to attempt (a staging table's
	// name); the cause does not.
	lock := errors.New("lock timeout")
	errs := []error{notNull, notNull, fmt.Errorf("stage_1: %w", lock), fmt.Errorf("stage_2: %w", lock), nil}
	n := 0
	if err := r.Do(context.Background(), b, func() error { n++; return errs[n-1] }); err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(logs.String(), "level=ERROR"); c != 1 {
		t.Errorf("%d error lines, want 1:\n%s", c, logs.String())
	}
	if c := strings.Count(logs.String(), "level=WARN"); c != 1 {
		t.Errorf("%d warnings, want 1:\n%s", c, logs.String())
	}
	h := r.Health()
	if h.Stall != nil || len(h.Failures) != 2 {
		t.Errorf("health %+v", h)
	}
}
