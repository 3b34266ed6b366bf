package view

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

func want(t *testing.T, b *change.Batch, lines ...string) {
	t.Helper()
	got := describe(b)
	if !slices.Equal(got, lines) {
		t.Fatalf("outputs\n got: %q\nwant: %q", got, lines)
	}
}

func ord(id, cust int, amount, status string) []change.Value {
	return []change.Value{I(id), I(cust), N(amount), S(status), S("n")}
}

func TestFilterRetracts(t *testing.T) {
	e := open(t, "", []Spec{{Name: "live", SQL: "SELECT id, amount FROM orders WHERE status <> 'cancelled'"}}, orders)
	want(t, apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "5.00", "new")}})), "live r 1,5.00")
	want(t, apply(t, e, (&tx{lsn: 200}).upd(orders, ord(1, 1, "5.00", "cancelled")...).batch()), "live d 1,5.00")
	want(t, apply(t, e, (&tx{lsn: 300}).upd(orders, ord(1, 1, "6.00", "cancelled")...).batch()))
	want(t, apply(t, e, (&tx{lsn: 400}).upd(orders, ord(1, 1, "6.00", "paid")...).batch()), "live c 1,6.00")
	want(t, apply(t, e, (&tx{lsn: 500}).upd(orders, ord(1, 1, "7.00", "paid")...).batch()), "live u 1,7.00")
}

func TestKeyChangeIsDeleteAndInsert(t *testing.T) {
	e := open(t, "", []Spec{{Name: "live", SQL: "SELECT id, amount FROM orders"}}, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "5.00", "new")}}))
	b := apply(t, e, (&tx{lsn: 200}).add(change.OpUpdate, orders, []change.Value{I(1), change.Null, change.Null, change.Null, change.Null}, ord(2, 1, "5.00", "new")).batch())
	want(t, b, "live d 1,5.00", "live c 2,5.00")
	for i, c := range b.Changes {
		if c.Pos != (change.Position{CommitLSN: 200, LSN: change.LSN(i + 1)}) {
			t.Fatalf("change %d at %s, want 0/C8:%d", i, c.Pos, i+1)
		}
	}
}

func TestJoinPartnerMoveIsUpdate(t *testing.T) {
	e := open(t, "", []Spec{{Name: "named", SQL: "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id"}}, orders, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{
		orders:    {ord(1, 1, "5.00", "new")},
		customers: {{I(1), S("ann"), S("gold")}, {I(2), S("bob"), S("gold")}},
	}))
	want(t, apply(t, e, (&tx{lsn: 200}).upd(orders, ord(1, 2, "5.00", "new")...).batch()), "named u 1,bob")
	want(t, apply(t, e, (&tx{lsn: 300}).upd(customers, I(2), S("bobby"), S("gold")).batch()), "named u 1,bobby")
	want(t, apply(t, e, (&tx{lsn: 400}).del(customers, I(2), change.Null, change.Null).batch()), "named d 1,bobby")
}

// A new partner on the right of a LEFT JOIN touches only the rows it matches.
func TestLeftJoinPartnerTouchesOnlyItsRows(t *testing.T) {
	e := open(t, "", []Spec{{Name: "facts", SQL: "SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON c.id = o.customer_id"}}, orders, customers)
	var rows [][]change.Value
	for i := 1; i <= 200; i++ {
		rows = append(rows, ord(i, 1000+i, "1.00", "new"))
	}
	b := apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: rows, customers: nil}))
	if len(b.Changes) != 200 {
		t.Fatalf("%d snapshot rows", len(b.Changes))
	}
	want(t, apply(t, e, (&tx{lsn: 200}).ins(customers, I(1007), S("ann"), S("gold")).batch()), "facts u 7,ann")
	want(t, apply(t, e, (&tx{lsn: 300}).del(customers, I(1007), change.Null, change.Null).batch()), "facts u 7,NULL")
}

func TestAggregatesStayExactUnderDeletes(t *testing.T) {
	e := open(t, "", []Spec{{Name: "per", SQL: `SELECT customer_id, count(*) AS n, sum(amount) AS total, min(amount) AS lo, max(amount) AS hi
		FROM orders GROUP BY customer_id HAVING count(*) > 1`}}, orders)
	if k := e.Outputs()[0].KeyNames(); !slices.Equal(k, []string{"customer_id"}) {
		t.Fatalf("key %v", k)
	}
	want(t, apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {
		ord(1, 1, "5.00", "new"), ord(2, 1, "9.00", "new"), ord(3, 1, "7.00", "new"), ord(4, 2, "1.00", "new")}})),
		"per r 1,3,21.00,5.00,9.00")
	// The max goes: its group recomputes.
	want(t, apply(t, e, (&tx{lsn: 200}).del(orders, I(2), change.Null, change.Null, change.Null, change.Null).batch()), "per u 1,2,12.00,5.00,7.00")
	// Group 2 enters HAVING, group 1 leaves it.
	want(t, apply(t, e, (&tx{lsn: 300}).upd(orders, ord(3, 2, "7.00", "new")...).batch()), "per d 1,2,12.00,5.00,7.00", "per c 2,2,8.00,1.00,7.00")
}

func TestDistinct(t *testing.T) {
	e := open(t, "", []Spec{{Name: "pairs", SQL: "SELECT DISTINCT customer_id, status FROM orders"}}, orders)
	want(t, apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "5.00", "new"), ord(2, 1, "6.00", "new")}})), "pairs r 1,new")
	want(t, apply(t, e, (&tx{lsn: 200}).del(orders, I(1), change.Null, change.Null, change.Null, change.Null).batch()))
	want(t, apply(t, e, (&tx{lsn: 300}).del(orders, I(2), change.Null, change.Null, change.Null, change.Null).batch()), "pairs d 1,new")
}

// A keyless input is a multiset: equal rows are separate rows, a delete
// removes one of them, NULLs compare equal.
func TestKeylessInputIsAMultiset(t *testing.T) {
	e := open(t, "", []Spec{{Name: "counts", SQL: "SELECT customer_id, kind, count(*) AS n FROM events GROUP BY customer_id, kind"}}, events)
	ev := []change.Value{change.Null, S("view")}
	want(t, apply(t, e, snapshot(100, map[*change.Table][][]change.Value{events: {ev, ev, ev}})), "counts r NULL,view,3")
	want(t, apply(t, e, (&tx{lsn: 200}).del(events, ev...).batch()), "counts u NULL,view,2")
	want(t, apply(t, e, (&tx{lsn: 300}).ins(events, ev...).del(events, ev...).del(events, ev...).batch()), "counts u NULL,view,1")
	want(t, apply(t, e, (&tx{lsn: 400}).add(change.OpUpdate, events, ev, []change.Value{I(1), S("view")}).batch()),
		"counts d NULL,view,1", "counts c 1,view,1")
}

// A keyless input can be joined under a declared key.
func TestKeylessInputUnderDeclaredKey(t *testing.T) {
	e := open(t, "", []Spec{{Name: "last", Key: []string{"customer_id"}, SQL: "SELECT customer_id, max(kind) AS kind FROM events GROUP BY customer_id"}}, events)
	want(t, apply(t, e, snapshot(100, map[*change.Table][][]change.Value{events: {{I(1), S("a")}, {I(1), S("b")}}})), "last r 1,b")
	want(t, apply(t, e, (&tx{lsn: 200}).del(events, I(1), S("b")).batch()), "last u 1,a")
}

func TestUnchangedToastKeepsStoredValue(t *testing.T) {
	e := open(t, "", []Spec{{Name: "notes", SQL: "SELECT id, note, amount FROM orders"}}, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {{I(1), I(1), N("1.00"), S("new"), S("long text")}}}))
	want(t, apply(t, e, (&tx{lsn: 200}).upd(orders, I(1), I(1), N("2.00"), S("new"), change.Unchanged).
		upd(orders, I(1), I(1), N("3.00"), S("new"), change.Unchanged).batch()), "notes u 1,long text,3.00")
	// A key change carries the unchanged value along.
	want(t, apply(t, e, (&tx{lsn: 300}).add(change.OpUpdate, orders, []change.Value{I(1), change.Null, change.Null, change.Null, change.Null},
		[]change.Value{I(9), I(1), N("3.00"), S("new"), change.Unchanged}).batch()), "notes d 1,long text,3.00", "notes c 9,long text,3.00")
}

// Nothing of half a transaction is visible; a transaction split over
// batches emits one net change per key when it completes.
func TestTransactionAcrossBatches(t *testing.T) {
	e := open(t, "", []Spec{{Name: "live", SQL: "SELECT id, amount FROM orders"}}, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "1.00", "new")}}))
	t1 := (&tx{lsn: 200}).upd(orders, ord(1, 1, "2.00", "new")...).ins(orders, ord(2, 1, "1.00", "new")...).
		upd(orders, ord(1, 1, "3.00", "new")...).del(orders, I(2), change.Null, change.Null, change.Null, change.Null)
	want(t, apply(t, e, &change.Batch{Changes: t1.changes[:2], Ack: 100}))
	want(t, apply(t, e, &change.Batch{Changes: t1.changes[2:3]}))
	want(t, apply(t, e, &change.Batch{Changes: t1.changes[3:], Ack: 200}), "live u 1,3.00")
	// A later transaction's first change also completes the one before.
	t2 := (&tx{lsn: 300}).upd(orders, ord(1, 1, "4.00", "new")...)
	t3 := (&tx{lsn: 400}).upd(orders, ord(1, 1, "5.00", "new")...)
	want(t, apply(t, e, &change.Batch{Changes: append(t2.changes, t3.changes...)}), "live u 1,4.00")
	want(t, apply(t, e, &change.Batch{Ack: 400}), "live u 1,5.00")
}

func TestSnapshotWaitsForEveryInput(t *testing.T) {
	e := open(t, "", []Spec{{Name: "named", SQL: "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id"}}, orders, customers)
	b := apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "5.00", "new")}}))
	want(t, b)
	if len(b.Snapshotted) != 0 {
		t.Fatal("view snapshotted before all its inputs")
	}
	b = apply(t, e, snapshot(100, map[*change.Table][][]change.Value{customers: {{I(1), S("ann"), S("gold")}}}))
	want(t, b, "named r 1,ann")
	if len(b.Snapshotted) != 1 || b.Snapshotted[0].Table.Name != "named" || b.Snapshotted[0].Pos.CommitLSN != 100 {
		t.Fatalf("Snapshotted = %+v", b.Snapshotted)
	}
	// Changes at or before an input's snapshot position are in the snapshot.
	want(t, apply(t, e, (&tx{lsn: 100}).upd(customers, I(1), S("old"), S("gold")).batch()))
}

// A re-snapshot of an input emits the view's whole output again, with
// deletes of the keys that vanished.
func TestResnapshotOfAnInput(t *testing.T) {
	e := open(t, "", []Spec{{Name: "live", SQL: "SELECT id, amount FROM orders"}}, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "1.00", "new"), ord(2, 1, "1.00", "new")}}))
	want(t, apply(t, e, snapshot(500, map[*change.Table][][]change.Value{orders: {ord(1, 1, "9.00", "new")}})), "live r 1,9.00", "live d 2,1.00")
}

// A view whose declared key turns out not unique stops alone: the other
// views go on, and it stays stopped across a restart.
func TestDeclaredKeyNotUnique(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	spec := []Spec{
		{Name: "by_customer", Key: []string{"customer_id"}, SQL: "SELECT customer_id, id FROM orders"},
		{Name: "amounts", SQL: "SELECT id, amount FROM orders"},
	}
	e := open(t, path, spec, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "1.00", "new")}}))
	want(t, apply(t, e, (&tx{lsn: 200}).ins(orders, ord(2, 1, "1.00", "new")...).batch()), "amounts c 2,1.00")
	const msg = "view by_customer: at 0/C8:0/0 key (customer_id=1): the declared key (customer_id) is not unique: 2 output rows have this key; declare a key that is unique, or derive it"
	wantStopped(t, e, "public.by_customer", msg)
	want(t, apply(t, e, (&tx{lsn: 300}).ins(orders, ord(3, 2, "3.00", "new")...).batch()), "amounts c 3,3.00")
	e.Close()
	e = open(t, path, spec, orders)
	wantStopped(t, e, "public.by_customer", msg)
	if got := deadLetters(t, e); got != "by_customer||(customer_id=1)|200|"+strings.TrimPrefix(msg, "view by_customer: at 0/C8:0/0 key (customer_id=1): ") {
		t.Fatalf("dead letters: %s", got)
	}
	want(t, apply(t, e, (&tx{lsn: 400}).ins(orders, ord(4, 2, "4.00", "new")...).batch()), "amounts c 4,4.00")
}

// wantStopped checks that the only stopped view is the one named, for the
// reason given.
func wantStopped(t *testing.T, e *Engine, view, why string) {
	t.Helper()
	got := e.Stopped()
	if len(got) != 1 || got[change.TableID{Schema: "public", Name: strings.TrimPrefix(view, "public.")}] != why {
		t.Fatalf("stopped views: %v\nwant %s: %s", got, view, why)
	}
}

func deadLetters(t *testing.T, e *Engine) string {
	t.Helper()
	rows, err := e.conn.QueryContext(context.Background(), `SELECT view_name, input_table, input_key, commit_lsn, message FROM "_sluice"."dead_letters" ORDER BY recorded_at`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v, in, k, m string
		var lsn uint64
		if err := rows.Scan(&v, &in, &k, &lsn, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s|%s|%s|%d|%s", v, in, k, lsn, m))
	}
	return strings.Join(out, "\n")
}

// A row failing a cast stops that view alone (the policy): a dead letter
// names the view, the input key, the position; the other views and the
// mirror go on. It stays stopped across restarts until it is fixed, which
// rebuilds it from the stored inputs (which kept up meanwhile).
func TestCastFailureStopsTheView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	spec := []Spec{
		{Name: "nums", SQL: "SELECT id, CAST(note AS INTEGER) AS n FROM orders"},
		{Name: "amounts", SQL: "SELECT id, amount FROM orders"},
	}
	e := open(t, path, spec, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {{I(1), I(1), N("1.00"), S("new"), S("42")}}}))
	bad := (&tx{lsn: 200}).upd(orders, I(1), I(1), N("2.00"), S("new"), S("forty-two")).batch()
	want(t, apply(t, e, bad), "amounts u 1,2.00")
	const msg = "view nums: at 0/C8:0/0 key public.orders(id=1): Could not convert string 'forty-two' to INT32 when casting from source column note"
	wantStopped(t, e, "public.nums", msg)
	want(t, apply(t, e, (&tx{lsn: 300}).ins(orders, I(2), I(1), N("3.00"), S("new"), S("7")).batch()), "amounts c 2,3.00")
	e.Close()
	// A restart: still stopped; the replay of a transaction it stopped at
	// emits what was logged.
	e = open(t, path, spec, orders)
	wantStopped(t, e, "public.nums", msg)
	want(t, apply(t, e, bad), "amounts u 1,2.00")
	if got := deadLetters(t, e); got != "nums|public.orders|public.orders(id=1)|200|Could not convert string 'forty-two' to INT32 when casting from source column note" {
		t.Fatalf("dead letters:\n%s", got)
	}
	// Fixed with TRY_CAST: the view is rebuilt from its stored inputs.
	e.Close()
	e = open(t, path, []Spec{{Name: "nums", SQL: "SELECT id, TRY_CAST(note AS INTEGER) AS n FROM orders"}, spec[1]}, orders)
	if got := e.Rebuilding(); len(got) != 1 || got[0].Name != "nums" {
		t.Fatalf("Rebuilding = %v", got)
	}
	if got := e.Stopped(); len(got) != 0 {
		t.Fatalf("stopped after the fix: %v", got)
	}
	want(t, apply(t, e, &change.Batch{Ack: 300}), "nums r 1,NULL", "nums r 2,7")
}

// A view failing on a transaction that began in an earlier batch: that
// batch is kept while its transaction is open, so the state is opened
// again and both are applied again without the view. Past the bound on
// what is kept, Apply asks for a restart (the pipeline's Fatal) and the
// source sends the transaction again.
func TestFailureInACarriedTransaction(t *testing.T) {
	spec := []Spec{
		{Name: "nums", SQL: "SELECT id, CAST(note AS INTEGER) AS n FROM orders"},
		{Name: "amounts", SQL: "SELECT id, amount FROM orders"},
	}
	big := (&tx{lsn: 200}).ins(orders, I(2), I(1), N("2.00"), S("new"), S("5")).ins(orders, I(3), I(1), N("2.50"), S("new"), S("6")).
		upd(orders, I(1), I(1), N("3.00"), S("new"), S("x"))
	first := &change.Batch{Changes: big.changes[:1], Ack: 100}
	middle := &change.Batch{Changes: big.changes[1:2], Ack: 100}
	rest := &change.Batch{Changes: big.changes[2:], Ack: 200}
	outs := []string{"amounts u 1,3.00", "amounts c 2,2.00", "amounts c 3,2.50"}
	const why = "view nums: at 0/C8:0/0 key public.orders(id=2) public.orders(id=3) public.orders(id=1): Could not convert string 'x' to INT32 when casting from source column note"
	start := func(path string) *Engine {
		e := open(t, path, spec, orders)
		apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {{I(1), I(1), N("1.00"), S("new"), S("42")}}}))
		return e
	}

	e := start("")
	want(t, apply(t, e, first))
	want(t, apply(t, e, middle))
	want(t, apply(t, e, rest), outs...)
	wantStopped(t, e, "public.nums", why)
	want(t, apply(t, e, (&tx{lsn: 300}).ins(orders, I(4), I(1), N("4.00"), S("new"), S("6")).batch()), "amounts c 4,4.00")

	path := filepath.Join(t.TempDir(), "v.db")
	e = start(path)
	e.carryLimit = 1
	tr := NewTransform(e, nil)
	want(t, apply(t, e, first))
	want(t, apply(t, e, middle)) // 2 changes kept: past the bound
	_, err := tr.Transform(context.Background(), rest)
	var re *RestartError
	var te *pipeline.TargetError
	if !errors.As(err, &re) || re.View != "nums" || !errors.As(err, &te) || te.Class != pipeline.Fatal {
		t.Fatalf("error %T %v, want a RestartError for nums, Fatal to the pipeline", err, err)
	}
	if _, err := e.Apply(context.Background(), &change.Batch{}); err == nil || !strings.Contains(err.Error(), "stopped by an earlier error") {
		t.Fatalf("after a lost transaction: %v", err)
	}
	e.Close()
	e = open(t, path, spec, orders)
	wantStopped(t, e, "public.nums", why)
	want(t, apply(t, e, first))
	want(t, apply(t, e, middle))
	want(t, apply(t, e, rest), outs...)
}

// The output log: a replay of transactions the engine already processed
// emits the same outputs at the same positions; Confirm prunes the log.
func TestReplayFromOutputLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	spec := []Spec{{Name: "live", SQL: "SELECT id, amount FROM orders"}}
	e := open(t, path, spec, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "1.00", "new")}}))
	t1 := (&tx{lsn: 200}).upd(orders, ord(1, 1, "2.00", "new")...).batch()
	t2 := (&tx{lsn: 300}).ins(orders, ord(2, 1, "2.00", "new")...).batch()
	first := apply(t, e, t1)
	e.Close() // a crash: the target never saw it
	e = open(t, path, spec, orders)
	again := apply(t, e, t1)
	if !slices.Equal(describe(first), describe(again)) || first.Changes[0].Pos != again.Changes[0].Pos {
		t.Fatalf("replay %v at %s, first %v at %s", describe(again), again.Changes[0].Pos, describe(first), first.Changes[0].Pos)
	}
	e.Confirm(200)
	want(t, apply(t, e, t2), "live c 2,2.00")
	var n int
	if err := e.conn.QueryRowContext(context.Background(), `SELECT count(*) FROM "_sluice"."outlog"`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("output log holds %d rows (%v), want the one of 0/12C", n, err)
	}
	// A confirmed transaction replayed again: nothing to emit, nothing recomputed.
	want(t, apply(t, e, t1))
}

func TestInputSchemaChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	spec := []Spec{{Name: "facts", SQL: "SELECT id, amount, note FROM orders"}, {Name: "amounts", SQL: "SELECT id, amount FROM orders"}}
	e := open(t, path, spec, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "1.00", "new")}}))
	// A column added: the view is undisturbed; existing rows hold its missing value.
	added := table("public", "orders", append(slices.Clone(orders.Columns), col("extra", textT(), false))...)
	added.Version = 2
	missing := S("m")
	added.Columns[5].Missing = &missing
	want(t, apply(t, e, (&tx{lsn: 200}).upd(added, I(1), I(1), N("2.00"), S("new"), S("n"), S("x")).batch()), "facts u 1,2.00,n", "amounts u 1,2.00")
	// A column no view reads dropped: fine.
	dropped := table("public", "orders", added.Columns[0], added.Columns[1], added.Columns[2], added.Columns[4], added.Columns[5])
	dropped.Version = 3
	want(t, apply(t, e, (&tx{lsn: 300}).upd(dropped, I(1), I(1), N("3.00"), S("n"), S("x")).batch()), "facts u 1,3.00,n", "amounts u 1,3.00")
	// A column the view reads dropped: the view stops, naming it; the
	// other views go on.
	gone := table("public", "orders", dropped.Columns[0], dropped.Columns[1], dropped.Columns[2], dropped.Columns[4])
	gone.Version = 4
	want(t, apply(t, e, (&tx{lsn: 400}).upd(gone, I(1), I(1), N("4.00"), S("x")).batch()), "amounts u 1,4.00")
	const msg = "view facts: at 0/190:0/0: column note of public.orders was dropped; the view reads it: change the view"
	wantStopped(t, e, "public.facts", msg)
	want(t, apply(t, e, (&tx{lsn: 500}).upd(gone, I(1), I(1), N("5.00"), S("x")).batch()), "amounts u 1,5.00")
	e.Close()
	// A restart: the view no longer compiles, but it ran with this very
	// definition before, so it stays stopped instead of refusing the start.
	e = open(t, path, spec, gone)
	wantStopped(t, e, "public.facts", msg)
	want(t, apply(t, e, (&tx{lsn: 600}).upd(gone, I(1), I(1), N("6.00"), S("x")).batch()), "amounts u 1,6.00")
	e.Close()
	// A column retyped while sluice was not running: the unchanged view
	// reading it stops at start-up, and the input is snapshotted again
	// (its stored values of the column are gone).
	retyped := table("public", "orders", gone.Columns[0], gone.Columns[1], col("amount", textT(), false), gone.Columns[3])
	e = open(t, path, spec[1:], retyped)
	wantStopped(t, e, "public.amounts", "view amounts: at 0/258:0/0: column amount of public.orders changed type (stored as DECIMAL(12,2), now VARCHAR); the view reads it: change the view")
	if got := e.Unsnapshotted(); len(got) != 1 || got[0] != orders.ID() {
		t.Fatalf("Unsnapshotted = %v, want the retyped input", got)
	}
	// A view that is new (or changed) and reads it is refused nothing: it
	// is built from that new snapshot.
	e.Close()
	e = open(t, path, []Spec{{Name: "amounts2", SQL: "SELECT id, amount FROM orders"}}, retyped)
	if got := e.Stopped(); len(got) != 0 {
		t.Fatalf("stopped: %v", got)
	}
	want(t, apply(t, e, snapshot(700, map[*change.Table][][]change.Value{retyped: {{I(1), I(1), S("7.00"), S("x")}}})), "amounts2 r 1,7.00")
}

// A comma join with its condition in WHERE, and a self-join under aliases.
func TestCommaAndSelfJoin(t *testing.T) {
	e := open(t, "", []Spec{
		{Name: "named", SQL: "SELECT o.id, c.name FROM orders o, customers c WHERE c.id = o.customer_id"},
		{Name: "pairs", SQL: "SELECT a.id AS a_id, b.id AS b_id FROM orders a JOIN orders b ON b.customer_id = a.customer_id AND b.id > a.id"},
	}, orders, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{
		orders:    {ord(1, 1, "5.00", "new"), ord(2, 1, "5.00", "new")},
		customers: {{I(1), S("ann"), S("gold")}},
	}))
	want(t, apply(t, e, (&tx{lsn: 200}).ins(orders, ord(3, 1, "1.00", "new")...).batch()), "named c 3,ann", "pairs c 1,3", "pairs c 2,3")
	want(t, apply(t, e, (&tx{lsn: 300}).upd(orders, ord(1, 2, "1.00", "new")...).batch()), "named d 1,ann", "pairs d 1,2", "pairs d 1,3")
}

// A restart keeps every stored column of an input whose types the catalog
// spells otherwise than they were created (timestamptz, timetz): a key
// column no view reads was once taken for retyped and dropped, and the
// next open failed to index the key.
func TestReopenKeepsColumnsTheCatalogRespells(t *testing.T) {
	tsT := change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}
	timeT := change.Type{Name: "time with time zone", Kind: change.KindTime}
	readings := table("public", "readings", col("sensor", intT(), true), col("at", tsT, true), col("v", numT(), false), col("tz", timeT, false))
	path := filepath.Join(t.TempDir(), "v.db")
	spec := []Spec{{Name: "per_sensor", SQL: "SELECT sensor, count(*) AS n, sum(v) AS total FROM readings GROUP BY sensor"}}
	ts := change.V(change.KindTimestampTZ, "2026-01-02 03:04:05+00")
	tz := change.V(change.KindTime, "10:00:00+02")
	e := open(t, path, spec, readings)
	want(t, apply(t, e, snapshot(100, map[*change.Table][][]change.Value{readings: {{I(1), ts, N("1.50"), tz}}})), "per_sensor r 1,1,1.50")
	e.Close()
	e = open(t, path, spec, readings)
	stored, err := e.storedCols(context.Background(), e.inputs[readings.ID()])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range stored {
		names = append(names, s.name)
	}
	if !slices.Equal(names, []string{"sensor", "at", "v", "tz"}) {
		t.Fatalf("stored columns after a restart: %v", names)
	}
	want(t, apply(t, e, (&tx{lsn: 200}).upd(readings, I(1), ts, N("2.50"), tz).batch()), "per_sensor u 1,1,2.50")
}

// A view's whole output comes in pages of bounded size, the deletes of
// vanished keys after its rows, its SnapshotDone with the last page; no
// source batch is taken meanwhile.
func TestWholeOutputInPages(t *testing.T) {
	e := open(t, "", []Spec{{Name: "live", SQL: "SELECT id, amount FROM orders"}}, orders)
	e.pageRows = 2
	var rows [][]change.Value
	for i := 1; i <= 5; i++ {
		rows = append(rows, ord(i, 1, fmt.Sprintf("%d.00", i), "new"))
	}
	b := apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: rows}))
	want(t, b, "live r 1,1.00", "live r 2,2.00")
	if len(b.Snapshotted) != 0 || !e.Pending() {
		t.Fatalf("first page: Snapshotted %v, Pending %v", b.Snapshotted, e.Pending())
	}
	if _, err := e.Apply(context.Background(), (&tx{lsn: 200}).ins(orders, ord(9, 1, "9.00", "new")...).batch()); err == nil || !strings.Contains(err.Error(), "NextPage") {
		t.Fatalf("a batch while pages are pending: %v", err)
	}
	page := func(lines ...string) *change.Batch {
		t.Helper()
		b, err := e.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want(t, b, lines...)
		return b
	}
	page("live r 3,3.00", "live r 4,4.00")
	if last := page("live r 5,5.00"); len(last.Snapshotted) != 1 || last.Snapshotted[0].Table.Name != "live" || e.Pending() {
		t.Fatalf("last page: Snapshotted %v, Pending %v", last.Snapshotted, e.Pending())
	}
	want(t, apply(t, e, (&tx{lsn: 200}).ins(orders, ord(9, 1, "9.00", "new")...).batch()), "live c 9,9.00")
	// A re-snapshot that lost keys: the rows, then the deletes.
	b = apply(t, e, snapshot(300, map[*change.Table][][]change.Value{orders: rows[:1]}))
	want(t, b, "live r 1,1.00", "live d 2,2.00")
	page("live d 3,3.00", "live d 4,4.00")
	if last := page("live d 5,5.00", "live d 9,9.00"); len(last.Snapshotted) != 0 || !e.Pending() {
		t.Fatalf("a full page is not known to be the last: Snapshotted %v", last.Snapshotted)
	}
	if last := page(); len(last.Snapshotted) != 1 || e.Pending() {
		t.Fatalf("after the last rows: Snapshotted %v, Pending %v", last.Snapshotted, e.Pending())
	}
}

// reshapeEngine is a view over orders with one order, and orders' shape
// without its note column.
func reshapeEngine(t *testing.T) (*Engine, *change.Table) {
	t.Helper()
	e := open(t, "", []Spec{{Name: "amounts", SQL: "SELECT id, amount FROM orders"}}, orders)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "1.00", "new")}}))
	noNote := table("public", "orders", orders.Columns[0], orders.Columns[1], orders.Columns[2], orders.Columns[3])
	noNote.Version = 2
	return e, noNote
}

// A new shape of an input in the middle of a batch, after other
// transactions wrote its rows: DuckDB refuses to commit rows written to a
// table before an ALTER of it in one transaction, so the state commits
// first.
func TestReshapeAfterWritesInOneBatch(t *testing.T) {
	e, noNote := reshapeEngine(t)
	b := (&tx{lsn: 200}).upd(orders, ord(1, 1, "2.00", "new")...).batch()
	b.Changes = append(b.Changes, (&tx{lsn: 300}).upd(noNote, I(1), I(1), N("3.00"), S("new")).ins(noNote, I(2), I(1), N("4.00"), S("new")).changes...)
	b.Ack = 300
	want(t, apply(t, e, b), "amounts u 1,2.00", "amounts u 1,3.00", "amounts c 2,4.00")
}

// A re-snapshot with a new shape after changes of the table in the same
// batch commits them first; a new shape inside a transaction that changed
// the table's rows before it is refused with the way out.
func TestReshapeMidBatch(t *testing.T) {
	e, noNote := reshapeEngine(t)
	b := (&tx{lsn: 200}).upd(orders, ord(1, 1, "2.00", "new")...).batch()
	snap := snapshot(300, map[*change.Table][][]change.Value{noNote: {{I(1), I(1), N("5.00"), S("new")}}})
	b.Changes = append(b.Changes, snap.Changes...)
	b.Snapshotted = snap.Snapshotted
	want(t, apply(t, e, b), "amounts u 1,2.00", "amounts r 1,5.00")

	mid := (&tx{lsn: 400}).upd(noNote, I(1), I(1), N("6.00"), S("new")).upd(orders, ord(1, 1, "7.00", "new")...).batch()
	if _, err := e.Apply(context.Background(), mid); err == nil || !strings.Contains(err.Error(), "inside source transaction 0/190 after that transaction changed its rows") {
		t.Fatalf("a new shape inside a transaction that wrote the table: %v", err)
	}
}

// A transaction whose change of one input follows changes of another
// brings the first's new shape: it still stands alone and commits after
// the transactions before it, which wrote the input.
func TestReshapeLaterInATransaction(t *testing.T) {
	spec := []Spec{{Name: "amounts", SQL: "SELECT o.id, o.amount, c.name FROM orders o JOIN customers c ON c.id = o.customer_id"}}
	e := open(t, "", spec, orders, customers)
	apply(t, e, snapshot(100, map[*change.Table][][]change.Value{orders: {ord(1, 1, "1.00", "new")}, customers: {{I(1), S("ann"), S("gold")}}}))
	noNote := table("public", "orders", orders.Columns[0], orders.Columns[1], orders.Columns[2], orders.Columns[3])
	noNote.Version = 2
	b := (&tx{lsn: 200}).upd(orders, ord(1, 1, "2.00", "new")...).batch()
	b.Changes = append(b.Changes, (&tx{lsn: 300}).upd(customers, I(1), S("bob"), S("gold")).upd(noNote, I(1), I(1), N("3.00"), S("new")).changes...)
	b.Ack = 300
	want(t, apply(t, e, b), "amounts u 1,2.00,ann", "amounts u 1,3.00,bob")
}
