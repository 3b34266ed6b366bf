package view

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	evstream "github.com/sluice-dev/sluice/internal/events"
)

func clicksStream(t *testing.T, keep bool) EventStream {
	t.Helper()
	tbl, err := evstream.Table("clicks", []evstream.Column{{Name: "user_id", Type: "bigint"}, {Name: "url", Type: "text"}})
	if err != nil {
		t.Fatal(err)
	}
	return EventStream{Table: tbl, Stream: "clicks", Keep: keep}
}

// clicks is a batch of events as a reader emits it: no position, no Ack.
func clicks(t *testing.T, es EventStream, shard string, seq int, rows ...string) *change.Batch {
	t.Helper()
	b := &change.Batch{}
	for i, r := range rows {
		c, err := evstream.Decode(es.Table, []byte(r), shard, itoa(seq+i), time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		b.Changes = append(b.Changes, c)
	}
	return b
}

func itoa(n int) string { return I(n).Text }

func openEvents(t *testing.T, path string, specs []Spec, es EventStream, inputs ...*change.Table) *Engine {
	t.Helper()
	e, err := Open(context.Background(), path, specs, inputs, nil, es)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

var clickNames = Spec{Name: "click_names", SQL: `SELECT e.event_id, e.url, c.name FROM events.clicks e LEFT JOIN customers c ON c.id = e.user_id`}

func TestEventsEnrichedWithTheCurrentRow(t *testing.T) {
	es := clicksStream(t, false)
	e := openEvents(t, filepath.Join(t.TempDir(), "v.db"), []Spec{clickNames}, es, customers)
	out := apply(t, e, snapshot(100, map[*change.Table][][]change.Value{customers: {{I(1), S("ann"), S("gold")}}}))
	if got := describe(out); len(got) != 0 {
		t.Fatalf("initial output of a view over events: %v, want none", got)
	}
	out = apply(t, e, clicks(t, es, "0", 7, `{"user_id": 1, "url": "/a"}`, `{"user_id": 2, "url": "/b"}`))
	want := []string{"click_names c 0/7,/a,ann", "click_names c 0/8,/b,NULL"}
	if got := describe(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("events: %v, want %v", got, want)
	}
	first := out.Changes[1].Pos
	if first.CommitLSN != 100 || first.LSN <= eventSeqBase {
		t.Fatalf("event output position %v: want (100, > 2^40), after the snapshot", first)
	}

	// A partner changing later does not rewrite the past event's output;
	// the next event sees the new row.
	out = apply(t, e, (&tx{lsn: 200}).upd(customers, I(1), S("anna"), S("gold")).ins(customers, I(2), S("bob"), S("new")).batch())
	if got := describe(out); len(got) != 0 {
		t.Fatalf("a partner's change rewrote past events: %v", got)
	}
	out = apply(t, e, clicks(t, es, "0", 9, `{"user_id": 1, "url": "/c"}`, `{"user_id": 2, "url": "/d"}`))
	want = []string{"click_names c 0/10,/d,bob", "click_names c 0/9,/c,anna"}
	if got := describe(out); !reflect.DeepEqual(sorted(got), sorted(want)) {
		t.Fatalf("later events: %v, want %v", got, want)
	}
	for _, c := range out.Changes {
		if c.Pos.CommitLSN != 200 || !first.Less(c.Pos) {
			t.Fatalf("position %v: want (200, n) after %v", c.Pos, first)
		}
	}
	// Nothing of the events is kept.
	var n int
	if err := e.conn.QueryRowContext(context.Background(), `SELECT (SELECT count(*) FROM events.clicks) + (SELECT count(*) FROM `+e.byName["public.click_names"].outTable()+`)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows of passed events kept in the state", n)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// An event reaching the engine while a transaction is open waits for it:
// it sees the whole transaction, never half of it.
func TestEventInsideAnOpenTransaction(t *testing.T) {
	es := clicksStream(t, false)
	path := filepath.Join(t.TempDir(), "v.db")
	e := openEvents(t, path, []Spec{clickNames}, es, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{customers: {{I(1), S("ann"), S("gold")}}}))
	tx := (&tx{lsn: 300}).upd(customers, I(1), S("half"), S("gold")).upd(customers, I(1), S("whole"), S("gold"))
	first := &change.Batch{Changes: tx.changes[:1]}
	if got := describe(apply(t, e, first)); len(got) != 0 {
		t.Fatalf("half a transaction: %v", got)
	}
	if got := describe(apply(t, e, clicks(t, es, "3", 1, `{"user_id": 1, "url": "/x"}`))); len(got) != 0 {
		t.Fatalf("an event inside an open transaction was evaluated at once: %v", got)
	}
	out := apply(t, e, &change.Batch{Changes: tx.changes[1:], Ack: 300})
	want := []string{"click_names c 3/1,/x,whole"}
	if got := describe(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the transaction: %v, want %v", got, want)
	}
	if p := out.Changes[0].Pos; p.CommitLSN != 300 {
		t.Fatalf("position %v: want the transaction's", p)
	}
	e.Close()

	// Its mark committed with it.
	e2 := openEvents(t, path, []Spec{clickNames}, es, customers)
	marks, _ := e2.StreamMarks(context.Background(), "clicks")
	if !reflect.DeepEqual(marks, map[string]string{"3": "1"}) {
		t.Fatalf("marks %v", marks)
	}
}

// A kill before the open transaction completes loses the event with it:
// its mark is not stored, so the reader reads it again.
func TestEventMarkCommitsWithTheEvent(t *testing.T) {
	es := clicksStream(t, false)
	path := filepath.Join(t.TempDir(), "v.db")
	e := openEvents(t, path, []Spec{clickNames}, es, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{customers: {{I(1), S("ann"), S("gold")}}}))
	apply(t, e, clicks(t, es, "0", 1, `{"user_id": 1, "url": "/a"}`))
	open := (&tx{lsn: 300}).upd(customers, I(1), S("x"), S("gold"))
	apply(t, e, &change.Batch{Changes: open.changes})
	apply(t, e, clicks(t, es, "0", 2, `{"user_id": 1, "url": "/b"}`))
	e.Close() // the open DuckDB transaction is rolled back, as by a kill

	e2 := openEvents(t, path, []Spec{clickNames}, es, customers)
	marks, _ := e2.StreamMarks(context.Background(), "clicks")
	if !reflect.DeepEqual(marks, map[string]string{"0": "1"}) {
		t.Fatalf("marks %v, want only the first event's", marks)
	}
}

// Outputs of events that the state committed and the target did not hold
// are sent again at start (Resend): the source's replay brings no events.
func TestEventOutputsSentAgain(t *testing.T) {
	es := clicksStream(t, false)
	path := filepath.Join(t.TempDir(), "v.db")
	e := openEvents(t, path, []Spec{clickNames}, es, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{customers: {{I(1), S("ann"), S("gold")}}}))
	a := apply(t, e, clicks(t, es, "0", 1, `{"user_id": 1, "url": "/a"}`))
	e.Confirm(100) // the target holds the snapshot and the first event
	apply(t, e, &change.Batch{Ack: 150})
	b := apply(t, e, clicks(t, es, "0", 2, `{"user_id": 1, "url": "/b"}`, `{"user_id": 1, "url": "/c"}`))
	e.Confirm(150)
	apply(t, e, &change.Batch{Ack: 160}) // prunes the log before 150
	e.Close()

	e2 := openEvents(t, path, []Spec{clickNames}, es, customers)
	e2.Resend(change.TableID{Schema: "public", Name: "click_names"}, a.Changes[0].Pos)
	out := apply(t, e2, &change.Batch{Ack: 170})
	if got, want := describe(out), describe(b); !reflect.DeepEqual(got, want) {
		t.Fatalf("sent again: %v, want %v", got, want)
	}
	for i := range out.Changes {
		if out.Changes[i].Pos != b.Changes[i].Pos {
			t.Fatalf("sent again at %v, first sent at %v", out.Changes[i].Pos, b.Changes[i].Pos)
		}
	}
	// A replay of the source's transactions does not send them twice.
	if got := describe(apply(t, e2, (&tx{lsn: 100}).ins(customers, I(1), S("ann"), S("gold")).batch())); len(got) != 0 {
		t.Fatalf("replay: %v", got)
	}
}

// Events arriving while a replayed transaction is received are taken when
// it is over.
func TestEventDuringAReplay(t *testing.T) {
	es := clicksStream(t, false)
	e := openEvents(t, filepath.Join(t.TempDir(), "v.db"), []Spec{clickNames}, es, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{customers: {{I(1), S("ann"), S("gold")}}}))
	t2 := (&tx{lsn: 200}).upd(customers, I(1), S("bea"), S("gold")).upd(customers, I(1), S("cid"), S("gold"))
	apply(t, e, t2.batch())
	b := &change.Batch{Changes: append(append([]change.Change{t2.changes[0]}, clicks(t, es, "0", 1, `{"user_id": 1, "url": "/a"}`).Changes...), t2.changes[1]), Ack: 200}
	out := apply(t, e, b)
	want := []string{"click_names c 0/1,/a,cid"}
	if got := describe(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}

func TestKeptEventsFeedAggregates(t *testing.T) {
	es := clicksStream(t, true)
	spec := Spec{Name: "clicks_per_tier", SQL: `SELECT c.tier, count(*) AS n FROM events.clicks e JOIN customers c ON c.id = e.user_id GROUP BY c.tier`}
	e := openEvents(t, filepath.Join(t.TempDir(), "v.db"), []Spec{spec}, es, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{customers: {{I(1), S("ann"), S("gold")}, {I(2), S("bob"), S("new")}}}))
	out := apply(t, e, clicks(t, es, "0", 1, `{"user_id": 1}`, `{"user_id": 1}`, `{"user_id": 2}`))
	want := []string{"clicks_per_tier c gold,2", "clicks_per_tier c new,1"}
	if got := describe(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	// With keep, a partner's change moves its past events.
	out = apply(t, e, (&tx{lsn: 200}).upd(customers, I(2), S("bob"), S("gold")).batch())
	want = []string{"clicks_per_tier u gold,3", "clicks_per_tier d new,1"}
	if got := describe(out); !reflect.DeepEqual(sorted(got), sorted(want)) {
		t.Fatalf("%v, want %v", got, want)
	}
}

func TestEventViewErrors(t *testing.T) {
	es := clicksStream(t, false)
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "v", SQL: `SELECT c.id, e.event_id FROM customers c JOIN events.clicks e ON e.user_id = c.id`}, "event stream events.clicks must be the first table of FROM"},
		{Spec{Name: "v", SQL: `SELECT user_id, count(*) AS n FROM events.clicks GROUP BY user_id`}, "cannot aggregate or use DISTINCT"},
		{Spec{Name: "v", SQL: `SELECT DISTINCT url FROM events.clicks`}, "cannot aggregate or use DISTINCT"},
		{Spec{Name: "v", SQL: `SELECT event_id, nope FROM events.clicks`}, "unknown column nope"},
	} {
		_, err := Open(context.Background(), filepath.Join(t.TempDir(), "v.db"), []Spec{c.spec}, []*change.Table{customers}, nil, es)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.spec.SQL, err, c.want)
		}
		var se *SQLError
		if err != nil && !errors.As(err, &se) {
			t.Errorf("%s: %T, want a *SQLError", c.spec.SQL, err)
		}
	}
	same, _ := evstream.Table("public.customers", []evstream.Column{{Name: "x", Type: "text"}})
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "v.db"), []Spec{clickNames}, []*change.Table{customers}, nil, EventStream{Table: same, Stream: "s"}); err == nil || !strings.Contains(err.Error(), "has the name of a mirrored table") {
		t.Errorf("an event stream named as a table: %v", err)
	}
}

// An event after the start of the transaction a batch leaves open waits
// for it, and does not hold back the transactions before it.
func TestEventAfterTheOpenTransaction(t *testing.T) {
	es := clicksStream(t, false)
	names := Spec{Name: "names", SQL: `SELECT id, name FROM customers`}
	e := openEvents(t, filepath.Join(t.TempDir(), "v.db"), []Spec{clickNames, names}, es, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{customers: {{I(1), S("ann"), S("gold")}, {I(2), S("bob"), S("new")}}}))
	t1 := (&tx{lsn: 300}).upd(customers, I(1), S("x"), S("gold"))
	t2 := (&tx{lsn: 400}).upd(customers, I(2), S("y"), S("new"))
	b := &change.Batch{Changes: append(append(t1.changes, t2.changes...), clicks(t, es, "0", 1, `{"user_id": 2}`).Changes...), Ack: 300}
	if got, want := describe(apply(t, e, b)), []string{"names u 1,x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if got, want := describe(apply(t, e, &change.Batch{Ack: 400})), []string{"names u 2,y", "click_names c 0/1,NULL,y"}; !reflect.DeepEqual(sorted(got), sorted(want)) {
		t.Fatalf("%v, want %v", got, want)
	}
}
