package pipeline

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

var viewTbl = &change.Table{Schema: "public", Name: "v", Key: []int{0}, Version: 1,
	Columns: []change.Column{{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true}}}

// recordingTransform declares one view fed by tbl, renames tbl's changes
// onto it, and records what it was handed and confirmed.
type recordingTransform struct {
	mu        sync.Mutex
	started   map[change.TableID]change.TableState
	handed    int
	confirmed []change.LSN
}

func (r *recordingTransform) Start(_ context.Context, source []*change.Table, state map[change.TableID]change.TableState) (TransformPlan, error) {
	r.started = state
	pl := TransformPlan{Outputs: []*change.Table{viewTbl}}
	if !state[viewTbl.ID()].Snapshotted {
		pl.Reset, pl.Snapshot = []*change.Table{viewTbl}, source
	}
	return pl, nil
}

func (r *recordingTransform) Transform(_ context.Context, b *change.Batch) (*change.Batch, error) {
	r.mu.Lock()
	r.handed++
	r.mu.Unlock()
	out := &change.Batch{Ack: b.Ack}
	for _, c := range b.Changes {
		c.Table = viewTbl
		out.Changes = append(out.Changes, c)
	}
	for _, s := range b.Snapshotted {
		out.Snapshotted = append(out.Snapshotted, change.SnapshotDone{Table: viewTbl, Pos: s.Pos})
	}
	return out, nil
}

func (r *recordingTransform) Confirm(l change.LSN) {
	r.mu.Lock()
	r.confirmed = append(r.confirmed, l)
	r.mu.Unlock()
}

// TestTransformContract: the pipeline resets and snapshots what the
// transform's Start says, hands each batch to Transform once even when the
// target refuses it and it is retried, applies the output, and confirms the
// transform and then the source only after the target committed.
func TestTransformContract(t *testing.T) {
	src := &fakeSource{
		snap:   []*change.Batch{{Changes: []change.Change{{Op: change.OpRead, Table: tbl, After: []change.Value{change.V(change.KindInt, "1")}, Pos: change.Position{CommitLSN: 10}}}, Snapshotted: []change.SnapshotDone{{Table: tbl, Pos: change.Position{CommitLSN: 10}}}}},
		stream: []*change.Batch{{Changes: []change.Change{row("2", 20)}, Ack: 21}},
	}
	refused := 2
	dst := &fakeTarget{state: map[change.TableID]change.TableState{tbl.ID(): {Snapshotted: true}}}
	var mu sync.Mutex
	dst.onApply = func() {
		mu.Lock()
		defer mu.Unlock()
		if refused > 0 {
			refused--
			dst.fail = errors.New("refused")
		} else {
			dst.fail = nil
		}
	}
	tr := &recordingTransform{}
	sleep := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	p := New(src, dst, Options{Transform: tr, Retry: Backoff{Sleep: sleep}, ApplyChanges: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()
	waitFor(t, func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.confirmed) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.started[tbl.ID()]; !ok {
		t.Errorf("Start did not see the target's state: %v", tr.started)
	}
	if !slices.Equal(dst.resets, []change.TableID{viewTbl.ID()}) {
		t.Errorf("resets %v, want the view alone (the mirror of t is complete)", dst.resets)
	}
	if len(src.snapshotted) != 1 || src.snapshotted[0] != tbl {
		t.Errorf("snapshotted %v, want the view's input", src.snapshotted)
	}
	if st := p.Stats(); st.Tables[tbl.ID().String()] != nil || st.Tables[viewTbl.ID().String()] == nil {
		t.Errorf("stats report tables %v, want the view's table and not its input (not in the target)", st.Tables)
	}
	if tr.handed != 2 {
		t.Errorf("Transform was handed %d batches for 2 (a refused batch is retried with the same output)", tr.handed)
	}
	for _, c := range dst.applied {
		if c.Table != viewTbl {
			t.Errorf("applied a change of %s, want the transform's output only", c.Table.ID())
		}
	}
	if len(dst.applied) != 2 || !slices.Equal(tr.confirmed, []change.LSN{21}) {
		t.Errorf("applied %d changes, transform confirmed %v", len(dst.applied), tr.confirmed)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if !slices.Equal(src.confirmed, []change.LSN{21}) {
		t.Errorf("source confirmed %v, want 21 after the commit", src.confirmed)
	}
}

// wholeTxTransform passes changes on only once their transaction is known
// to be whole (a change of a later transaction or an Ack at or after its
// commit arrived), as the view engine does.
type wholeTxTransform struct {
	Identity
	open []change.Change
}

func (w *wholeTxTransform) Transform(_ context.Context, b *change.Batch) (*change.Batch, error) {
	out := &change.Batch{Ack: b.Ack, Snapshotted: b.Snapshotted}
	for _, c := range b.Changes {
		if len(w.open) > 0 && w.open[0].Pos.CommitLSN != c.Pos.CommitLSN {
			out.Changes, w.open = append(out.Changes, w.open...), nil
		}
		w.open = append(w.open, c)
	}
	if len(w.open) > 0 && b.Ack >= w.open[0].Pos.CommitLSN {
		out.Changes, w.open = append(out.Changes, w.open...), nil
	}
	return out, nil
}

// TestHoldOnAckOnlyBatch: the transaction before the hold arrived without
// an Ack, and the Ack telling it is whole comes alone, at the hold point
// itself. The held target must hold that transaction's transformed output.
func TestHoldOnAckOnlyBatch(t *testing.T) {
	gate := make(chan struct{})
	src := &gatedSource{gate: gate, pause: 50 * time.Millisecond, batches: []*change.Batch{{Changes: []change.Change{row("1", 20)}}, {Ack: 30}}}
	dst := &fakeTarget{state: map[change.TableID]change.TableState{tbl.ID(): {Snapshotted: true}}}
	p := New(src, dst, Options{Transform: &wholeTxTransform{}})
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
	time.Sleep(50 * time.Millisecond)
	close(gate)
	release := <-held
	if n := dst.count(); n != 1 {
		t.Fatalf("held at 30: %d changes applied, want the transaction committed at 20", n)
	}
	release()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// signalTransform passes batches on unchanged and reports each batch's
// first change position as it starts transforming it; the first batch
// takes a while, so the next one is queued when the target gets the first.
type signalTransform struct {
	Identity
	started chan change.LSN
	calls   int
}

func (s *signalTransform) Transform(_ context.Context, b *change.Batch) (*change.Batch, error) {
	s.calls++
	if len(b.Changes) > 0 {
		s.started <- b.Changes[0].Pos.CommitLSN
	}
	if s.calls == 1 {
		time.Sleep(50 * time.Millisecond)
	}
	return b, nil
}

// TestTransformAheadOfApply: while the target applies a batch, the next
// queued batch is transformed, so a transform's time and the target's
// overlap. A Pause coming meanwhile waits for that batch too (it is in
// flight), and nothing after it is applied while paused.
func TestTransformAheadOfApply(t *testing.T) {
	gate := make(chan struct{})
	src := &gatedSource{gate: gate, batches: []*change.Batch{
		{Changes: []change.Change{row("1", 20)}, Ack: 21},
		{Changes: []change.Change{row("2", 40)}, Ack: 41},
	}}
	tr := &signalTransform{started: make(chan change.LSN, 10)}
	dst := &fakeTarget{state: map[change.TableID]change.TableState{tbl.ID(): {Snapshotted: true}}, block: make(chan struct{})}
	p := New(src, dst, Options{Transform: tr, ApplyChanges: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()
	close(gate)
	if got := <-tr.started; got != 20 {
		t.Fatalf("first transformed %s, want the batch at 20", got)
	}
	// The target is blocked applying the first batch: the second is
	// transformed meanwhile.
	select {
	case got := <-tr.started:
		if got != 40 {
			t.Fatalf("transformed %s ahead, want the batch at 40", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the next batch was not transformed while the target applied the first")
	}
	paused := make(chan *Hold)
	go func() {
		h, err := p.Pause(ctx)
		if err != nil {
			t.Error(err)
		}
		paused <- h
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-paused:
		t.Fatal("Pause returned while the target applied a batch")
	default:
	}
	close(dst.block)
	h := <-paused
	if n := dst.count(); n != 2 {
		t.Fatalf("paused with %d changes applied, want both batches (the second was in flight)", n)
	}
	h.Release()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// pagingTransform emits two pages after the first batch it is handed, and
// fails a batch handed while its pages are pending.
type pagingTransform struct {
	recordingTransform
	pmu     sync.Mutex
	pages   []string
	started bool
	early   error
}

func (p *pagingTransform) Transform(ctx context.Context, b *change.Batch) (*change.Batch, error) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	if len(p.pages) > 0 {
		p.early = errors.New("a batch was handed while pages were pending")
		return nil, p.early
	}
	if !p.started {
		p.started, p.pages = true, []string{"p1", "p2"}
	}
	return p.recordingTransform.Transform(ctx, b)
}

func (p *pagingTransform) Pending() bool {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return len(p.pages) > 0
}

func (p *pagingTransform) Next(context.Context) (*change.Batch, error) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	c := row(p.pages[0], 20)
	c.Table, p.pages = viewTbl, p.pages[1:]
	return &change.Batch{Changes: []change.Change{c}}, nil
}

// A paging transform's parts are applied after the batch that caused
// them and before the next batch is handed to it (nor transformed ahead);
// they confirm nothing.
func TestPagesBeforeTheNextBatch(t *testing.T) {
	gate := make(chan struct{})
	src := &gatedSource{gate: gate, batches: []*change.Batch{
		{Changes: []change.Change{row("1", 20)}, Ack: 21},
		{Changes: []change.Change{row("2", 40)}, Ack: 41},
	}}
	tr := &pagingTransform{}
	// The first apply waits until the second batch is queued, so that it
	// would be transformed ahead if the pages let it.
	release := make(chan struct{})
	dst := &fakeTarget{state: map[change.TableID]change.TableState{viewTbl.ID(): {Snapshotted: true}}}
	var once sync.Once
	dst.onApply = func() { once.Do(func() { <-release }) }
	p := New(src, dst, Options{Transform: tr, ApplyChanges: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, []*change.Table{tbl}) }()
	close(gate)
	waitFor(t, func() bool { n, _ := p.q.len(); return n > 0 })
	close(release)
	waitFor(t, func() bool { return dst.count() == 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range dst.applied {
		got = append(got, c.After[0].String())
	}
	if !slices.Equal(got, []string{"1", "p1", "p2", "2"}) || tr.early != nil {
		t.Fatalf("applied %v (%v), want the pages between the batches", got, tr.early)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if !slices.Equal(src.confirmed, []change.LSN{21, 41}) {
		t.Fatalf("confirmed %v, want the two batches' acks only", src.confirmed)
	}
}
