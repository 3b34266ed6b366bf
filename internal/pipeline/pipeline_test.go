package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

var tbl = &change.Table{Schema: "public", Name: "t", Key: []int{0}, Version: 1,
	Columns: []change.Column{{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true}}}

func row(id string, pos change.LSN) change.Change {
	return change.Change{Op: change.OpInsert, Table: tbl, After: []change.Value{change.V(change.KindInt, id)},
		Pos: change.Position{CommitLSN: pos, LSN: pos - 1}}
}

// fakeSource emits a fixed script of batches, then blocks until ctx ends.
type fakeSource struct {
	snapshotted []*change.Table
	snap        []*change.Batch
	stream      []*change.Batch
	mu          sync.Mutex
	confirmed   []change.LSN
}

func (s *fakeSource) Snapshot(ctx context.Context, tables []*change.Table, emit Emit) error {
	s.snapshotted = tables
	for _, b := range s.snap {
		if err := emit(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeSource) Stream(ctx context.Context, emit Emit) error {
	for _, b := range s.stream {
		if err := emit(ctx, b); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *fakeSource) Confirm(l change.LSN) {
	s.mu.Lock()
	s.confirmed = append(s.confirmed, l)
	s.mu.Unlock()
}

type fakeTarget struct {
	mu      sync.Mutex
	state   map[change.TableID]change.TableState
	applied []change.Change
	resets  []change.TableID
	fail    error
	block   chan struct{} // when set, Apply waits for it
	onApply func()
}

func (t *fakeTarget) State(context.Context) (map[change.TableID]change.TableState, error) {
	return t.state, nil
}
func (t *fakeTarget) Reset(_ context.Context, tb *change.Table) error {
	t.resets = append(t.resets, tb.ID())
	return nil
}
func (t *fakeTarget) Apply(_ context.Context, b *change.Batch) error {
	if t.onApply != nil {
		t.onApply()
	}
	if t.block != nil {
		<-t.block
	}
	if t.fail != nil {
		return t.fail
	}
	t.mu.Lock()
	t.applied = append(t.applied, b.Changes...)
	t.mu.Unlock()
	return nil
}

func (t *fakeTarget) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.applied)
}

func TestSnapshotThenStreamAndConfirmAfterApply(t *testing.T) {
	src := &fakeSource{
		snap:   []*change.Batch{{Changes: []change.Change{{Op: change.OpRead, Table: tbl, After: []change.Value{change.V(change.KindInt, "1")}, Pos: change.Position{CommitLSN: 10}}}, Snapshotted: []change.SnapshotDone{{Table: tbl, Pos: change.Position{CommitLSN: 10}}}}},
		stream: []*change.Batch{{Changes: []change.Change{row("2", 20)}, Ack: 21}, {Ack: 30}},
	}
	dst := &fakeTarget{state: map[change.TableID]change.TableState{}}
	ctx, cancel := context.WithCancel(context.Background())
	p := New(src, dst, Options{})
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()
	waitFor(t, func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return len(src.confirmed) > 0 && src.confirmed[len(src.confirmed)-1] == 30
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(dst.resets) != 1 || len(src.snapshotted) != 1 {
		t.Errorf("resets %v, snapshotted %v: want the one table", dst.resets, src.snapshotted)
	}
	if dst.count() != 2 || dst.applied[0].Op != change.OpRead {
		t.Errorf("applied %v: want the snapshot row first, then the insert", dst.applied)
	}
	st := p.Stats()
	if st.Applied != 2 || st.Tables["public.t"].SnapshotRows != 1 || !st.Tables["public.t"].Snapshotted {
		t.Errorf("stats %+v %+v", st, st.Tables["public.t"])
	}
}

func TestSnapshottedTableIsNotSnapshottedAgain(t *testing.T) {
	src := &fakeSource{}
	dst := &fakeTarget{state: map[change.TableID]change.TableState{tbl.ID(): {Snapshotted: true}}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := New(src, dst, Options{}).Run(ctx, []*change.Table{tbl}); err != nil {
		t.Fatal(err)
	}
	if src.snapshotted != nil || dst.resets != nil {
		t.Errorf("snapshot ran for a table the target holds: %v %v", src.snapshotted, dst.resets)
	}
}

func TestShutdownFinishesBatchInFlight(t *testing.T) {
	src := &fakeSource{stream: []*change.Batch{{Changes: []change.Change{row("1", 20)}, Ack: 21}}}
	started := make(chan struct{})
	dst := &fakeTarget{state: map[change.TableID]change.TableState{tbl.ID(): {Snapshotted: true}}, block: make(chan struct{}),
		onApply: func() { close(started) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- New(src, dst, Options{}).Run(ctx, []*change.Table{tbl}) }()
	<-started
	cancel() // SIGINT while the target is committing
	time.Sleep(50 * time.Millisecond)
	close(dst.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if dst.count() != 1 || len(src.confirmed) != 1 || src.confirmed[0] != 21 {
		t.Errorf("in-flight batch: applied %d, confirmed %v; want it finished and confirmed", dst.count(), src.confirmed)
	}
}

func TestQueueBackPressureAndMerge(t *testing.T) {
	q := newQueue(1000)
	ctx := context.Background()
	big := &change.Batch{Changes: []change.Change{row("1", 2)}, Ack: 3}
	size := big.Size()
	n := 1000 / size
	for i := 0; i < n; i++ {
		if err := q.push(ctx, &change.Batch{Changes: []change.Change{row("1", 2)}, Ack: change.LSN(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := q.push(tctx, big); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("push into a full queue = %v, want it to block until the deadline", err)
	}
	b := q.pop(2, 1<<30)
	if len(b.Changes) != 2 || b.Ack != 2 {
		t.Fatalf("pop merged %d changes ack %v, want 2 changes ack 2", len(b.Changes), b.Ack)
	}
	if err := q.push(ctx, big); err != nil {
		t.Fatalf("push after pop: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHoldAtStopsBetweenTransactions(t *testing.T) {
	// Two transactions committed at 20 and 40 arrive in one batch; a hold at
	// 30 must apply the first and keep the second until release.
	gate := make(chan struct{})
	src := &gatedSource{gate: gate, batches: []*change.Batch{{Changes: []change.Change{row("1", 20), row("2", 40)}, Ack: 41}}}
	dst := &fakeTarget{state: map[change.TableID]change.TableState{tbl.ID(): {Snapshotted: true}}}
	p := New(src, dst, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()
	held := make(chan func())
	go func() {
		release, err := holdAt(ctx, p, 30)
		if err != nil {
			t.Error(err)
		}
		held <- release
	}()
	time.Sleep(50 * time.Millisecond) // let HoldAt register before the batch flows
	close(gate)
	release := <-held
	if n := dst.count(); n != 1 {
		t.Fatalf("while held at 30: %d changes applied, want exactly the one committed at 20", n)
	}
	src.mu.Lock()
	// The first transaction is whole: its commit position may be confirmed
	// (a restart from there replays it), nothing of the held second one.
	for _, c := range src.confirmed {
		if c > 20 {
			t.Errorf("confirmed %v while the second transaction is held", src.confirmed)
		}
	}
	src.mu.Unlock()
	release()
	waitFor(t, func() bool { return dst.count() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := holdAt(context.Background(), p, 30); err != ErrPassed {
		t.Errorf("holding behind the applied position = %v, want ErrPassed", err)
	}
}

type gatedSource struct {
	fakeSource
	gate    chan struct{}
	batches []*change.Batch
	pause   time.Duration // between batches, so the queue does not merge them
}

func (s *gatedSource) Stream(ctx context.Context, emit Emit) error {
	<-s.gate
	for i, b := range s.batches {
		if i > 0 {
			time.Sleep(s.pause)
		}
		if err := emit(ctx, b); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestPauseThenMove(t *testing.T) {
	// Verify pauses first, then takes its snapshot at some later position
	// and moves the hold there: changes committed before it are applied,
	// later ones wait for release.
	gate := make(chan struct{})
	src := &gatedSource{gate: gate, batches: []*change.Batch{{Changes: []change.Change{row("1", 20), row("2", 40)}, Ack: 41}}}
	dst := &fakeTarget{state: map[change.TableID]change.TableState{tbl.ID(): {Snapshotted: true}}}
	p := New(src, dst, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()
	time.Sleep(20 * time.Millisecond)
	h, err := p.Pause(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pause(ctx); err != ErrHeld {
		t.Errorf("second Pause = %v, want ErrHeld", err)
	}
	close(gate)
	time.Sleep(50 * time.Millisecond)
	if n := dst.count(); n != 0 {
		t.Fatalf("paused, yet %d changes applied", n)
	}
	if err := h.Move(ctx, 30); err != nil {
		t.Fatal(err)
	}
	if n := dst.count(); n != 1 {
		t.Fatalf("held at 30: %d changes applied, want the one committed at 20", n)
	}
	if err := h.Move(ctx, 10); err == nil {
		t.Error("moving the hold backwards succeeded")
	}
	h.Release()
	waitFor(t, func() bool { return dst.count() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// holdAt is what verify does: pause, then move the hold to lsn.
func holdAt(ctx context.Context, p *Pipeline, lsn change.LSN) (release func(), err error) {
	h, err := p.Pause(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.Move(ctx, lsn); err != nil {
		return nil, err
	}
	return h.Release, nil
}
