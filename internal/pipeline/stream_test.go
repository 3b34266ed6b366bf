package pipeline

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

func mark(shard, seq, below string) change.StreamMark {
	return change.StreamMark{Stream: "s", Shard: shard, Sequence: seq, Below: below}
}

// Queued batches merged into one apply keep the latest mark of each shard,
// in the order the shards first came, with the fence of the shard's first
// merged records; the emitted batches' marks are not written through.
func TestQueueMergesMarks(t *testing.T) {
	q := newQueue(1 << 20)
	ctx := context.Background()
	first := &change.Batch{Changes: []change.Change{row("1", 10)}, Marks: []change.StreamMark{mark("a", "1", "1"), mark("b", "7", "")}, Ack: 1}
	for _, b := range []*change.Batch{
		first,
		{Marks: []change.StreamMark{mark("c", "4", "4")}, Ack: 2},
		{Changes: []change.Change{row("2", 5)}, Marks: []change.StreamMark{mark("a", "3", "2")}, Ack: 3},
	} {
		if err := q.push(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	got := q.pop(100, 1<<20)
	want := []change.StreamMark{mark("a", "3", "1"), mark("b", "7", ""), mark("c", "4", "4")}
	if !reflect.DeepEqual(got.Marks, want) || got.Ack != 3 || len(got.Changes) != 2 {
		t.Fatalf("merged batch: marks %v, ack %d, %d changes; want marks %v, ack 3, 2 changes", got.Marks, got.Ack, len(got.Changes), want)
	}
	if first.Marks[0].Sequence != "1" {
		t.Errorf("merging wrote into the first batch's marks: %v", first.Marks)
	}
}

// streamSource is a BatchAcker (and, with fenced set, a Fencer): it emits
// its batches acked 1, 2, … like a stream reader.
type streamSource struct {
	fakeSource
	fenced func(b *change.Batch, err error) *change.Batch
	calls  []*change.Batch // batches handed to Fenced
}

func (s *streamSource) AcksBatches() {}

func (s *streamSource) confirmedTokens() []change.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]change.LSN(nil), s.confirmed...)
}

type fencingSource struct{ *streamSource }

func (s fencingSource) Fenced(b *change.Batch, err error) *change.Batch {
	s.mu.Lock()
	s.calls = append(s.calls, b)
	s.mu.Unlock()
	return s.fenced(b, err)
}

var (
	_ BatchAcker = (*streamSource)(nil)
	_ Fencer     = fencingSource{}
)

// markTarget records each applied batch's marks and changes, refusing the
// batches refuse says to.
type markTarget struct {
	mu      sync.Mutex
	batches []*change.Batch
	refuse  func(b *change.Batch) error
}

func (t *markTarget) State(context.Context) (map[change.TableID]change.TableState, error) {
	return nil, nil
}
func (t *markTarget) Reset(context.Context, *change.Table) error { return nil }
func (t *markTarget) Apply(_ context.Context, b *change.Batch) error {
	if t.refuse != nil {
		if err := t.refuse(b); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.batches = append(t.batches, b)
	return nil
}

func (t *markTarget) applied() []*change.Batch {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*change.Batch(nil), t.batches...)
}

func runUntil(t *testing.T, p *Pipeline, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nil) }()
	waitFor(t, cond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A BatchAcker's acks are confirmed back as they came, a batch of marks
// alone is applied (a shard read to its end), and nothing shows the tokens
// as positions; such a pipeline cannot be held at a source position.
func TestBatchTokensConfirmedNotShownAsPositions(t *testing.T) {
	src := &streamSource{fakeSource: fakeSource{stream: []*change.Batch{
		{Changes: []change.Change{row("1", 900)}, Marks: []change.StreamMark{mark("a", "5", "")}, Ack: 1},
		{Marks: []change.StreamMark{mark("b", "SHARD_END", "")}, Ack: 2},
	}}}
	dst := &markTarget{}
	p := New(src, dst, Options{})
	runUntil(t, p, func() bool { tk := src.confirmedTokens(); return len(tk) > 0 && tk[len(tk)-1] == 2 })
	var marks []change.StreamMark
	for _, b := range dst.applied() {
		marks = append(marks, b.Marks...)
	}
	if want := []change.StreamMark{mark("a", "5", ""), mark("b", "SHARD_END", "")}; !reflect.DeepEqual(marks, want) {
		t.Errorf("the target stored marks %v, want %v (a batch of marks alone too)", marks, want)
	}
	st := p.Stats()
	if st.ConfirmedBatch != 2 || st.ConfirmedLSN != "" {
		t.Errorf("stats show confirmed batch %d, LSN %q: want batch 2 and no LSN", st.ConfirmedBatch, st.ConfirmedLSN)
	}
	if _, err := p.Pause(context.Background()); !errors.Is(err, ErrNoPositions) {
		t.Errorf("Pause = %v, want ErrNoPositions", err)
	}

	// The same batches from a source of positions are shown as positions.
	lsn := &fakeSource{stream: []*change.Batch{{Changes: []change.Change{row("1", 900)}, Ack: 901}}}
	p = New(lsn, &markTarget{}, Options{})
	runUntil(t, p, func() bool { return p.Stats().Confirmed == 901 })
	if st := p.Stats(); st.ConfirmedBatch != 0 || st.ConfirmedLSN != change.LSN(901).String() {
		t.Errorf("an LSN source's stats: batch %d, LSN %q", st.ConfirmedBatch, st.ConfirmedLSN)
	}
}

// A batch refused as fenced is not retried: the source's Fenced is handed
// it and its replacement is applied (and may be fenced again), or, when it
// returns nil, the batch is dropped; no apply failure is counted.
func TestFencedBatchGoesBackToTheSource(t *testing.T) {
	b1 := &change.Batch{Changes: []change.Change{row("1", 10), row("2", 11), row("3", 12)},
		Marks: []change.StreamMark{mark("0", "5", "3"), mark("1", "9", "8"), mark("2", "4", "4")}, Ack: 1}
	b2 := &change.Batch{Changes: []change.Change{row("4", 13)}, Marks: []change.StreamMark{mark("0", "6", "6")}, Ack: 2}
	b3 := &change.Batch{Changes: []change.Change{row("5", 14)}, Marks: []change.StreamMark{mark("1", "10", "10")}, Ack: 3}
	src := &streamSource{fakeSource: fakeSource{stream: []*change.Batch{b1, b2, b3}}}
	// Shards 0 and 2 are another reader's by now.
	dst := &markTarget{refuse: func(b *change.Batch) error {
		for _, m := range b.Marks {
			if (m.Shard == "0" || m.Shard == "2") && m.Below != "" {
				return fmt.Errorf("apply: %w", &fenceErr{m.Shard})
			}
		}
		return nil
	}}
	src.fenced = func(b *change.Batch, err error) *change.Batch {
		var fe *fenceErr
		if !errors.As(err, &fe) {
			t.Errorf("Fenced got %v, not the target's error", err)
			return nil
		}
		if b.Ack == 2 {
			return nil // dropped
		}
		out := &change.Batch{Ack: b.Ack}
		for i, m := range b.Marks {
			if m.Shard != fe.shard {
				out.Changes = append(out.Changes, b.Changes[i])
				out.Marks = append(out.Marks, m)
			}
		}
		return out
	}
	// One batch per apply: each is fenced on its own.
	p := New(fencingSource{src}, dst, Options{ApplyChanges: 1})
	runUntil(t, p, func() bool { tk := src.confirmedTokens(); return len(tk) > 0 && tk[len(tk)-1] == 3 })
	got := dst.applied()
	if len(got) != 2 || !reflect.DeepEqual(got[0].Marks, []change.StreamMark{mark("1", "9", "8")}) || len(got[0].Changes) != 1 ||
		got[0].Changes[0].After[0].Text != "2" || got[1].Ack != 3 {
		t.Fatalf("applied %v: want b1 without shards 0 and 2 (fenced one after the other), b2 dropped, then b3", got)
	}
	if len(src.calls) != 3 {
		t.Errorf("Fenced called %d times, want 3 (b1 twice, b2 once)", len(src.calls))
	}
	if tk := src.confirmedTokens(); !reflect.DeepEqual(tk, []change.LSN{1, 3}) {
		t.Errorf("confirmed %v, want 1 and 3: nothing of the dropped batch", tk)
	}
	if st := p.Stats(); len(st.ApplyFailures) != 0 || st.Stall != nil {
		t.Errorf("a fenced batch counted as a failure: %+v", st.ApplyFailures)
	}
}

// fenceErr is a target's refusal of a fenced batch.
type fenceErr struct{ shard string }

func (e *fenceErr) Error() string        { return "fenced on shard " + e.shard }
func (e *fenceErr) Is(target error) bool { return target == ErrFenced }
