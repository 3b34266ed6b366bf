package stream

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// Batches emitted from several goroutines reach the pipeline with their
// tokens in order; Confirm hands back what the batches up to a token
// covered, once, in order; Wait returns once a token is confirmed.
func TestAcksTokensInEmitOrder(t *testing.T) {
	var a Acks[string]
	var mu sync.Mutex
	var got []change.LSN // the tokens in the order the pipeline got them
	emit := func(_ context.Context, b *change.Batch) error {
		// Some batches take longer to hand over (a full queue): a later
		// token must still not overtake them.
		time.Sleep(time.Duration(b.Ack%3) * 50 * time.Microsecond)
		mu.Lock()
		got = append(got, b.Ack)
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if err := a.Emit(context.Background(), emit, &change.Batch{}, string(rune('a'+g))+string(rune('0'+i%10))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i, tok := range got {
		if tok != change.LSN(i+1) {
			t.Fatalf("the pipeline got tokens %v: want 1, 2, 3, … in the order emitted", got)
		}
	}
	if p := a.Pending(3); len(p) != 3 {
		t.Errorf("Pending(3) = %v, want the first 3 batches", p)
	}
	waited := make(chan error, 1)
	go func() { waited <- a.Wait(context.Background(), 60) }()
	first := a.Confirm(50)
	if len(first) != 50 || !reflect.DeepEqual(a.Confirm(50), []string(nil)) {
		t.Fatalf("Confirm(50) took %d batches, then more on a repeat", len(first))
	}
	select {
	case err := <-waited:
		t.Fatalf("Wait(60) returned %v at 50", err)
	case <-time.After(20 * time.Millisecond):
	}
	if rest := a.Confirm(100); len(rest) != 50 {
		t.Fatalf("Confirm(100) took %d batches, want the other 50", len(rest))
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Wait(ctx, 101); err != context.Canceled {
		t.Errorf("Wait past the last token after ctx ended = %v", err)
	}
}

// The default decoder takes a sluice change record and interns its table;
// anything else is an error, which a reader turns into a reject.
func TestDecodeRecord(t *testing.T) {
	var in Interner
	tbl := &change.Table{Schema: "public", Name: "t", Key: []int{0}, Columns: []change.Column{{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true}}}
	c := change.Change{Op: change.OpInsert, Table: tbl, After: []change.Value{change.V(change.KindInt, "1")}, Pos: change.Position{CommitLSN: 10, LSN: 9}}
	data := change.AppendRecord(nil, &c, change.RecordMeta{Pipeline: "p"})
	var out []change.Change
	var err error
	for range 2 {
		if out, err = in.DecodeRecord(out, ReadRecord{Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) != 2 || out[0].Table != out[1].Table || out[1].Pos != c.Pos {
		t.Fatalf("decoded %+v: want two changes sharing one interned table", out)
	}
	if out, err = in.DecodeRecord(out, ReadRecord{Data: []byte(`{"id":1}`)}); err == nil || len(out) != 2 {
		t.Fatalf("a plain JSON event decoded as a change record: %v, %d changes", err, len(out))
	}
}
