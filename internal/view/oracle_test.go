package view

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

// The oracle workload: customers and orders (keyed) and events (keyless),
// changed at random; after every source transaction each view's folded
// output must equal the same SQL run in full by DuckDB over the inputs.

var events = table("public", "events", col("customer_id", intT(), false), col("kind", textT(), false))

var oracleViews = []Spec{
	{Name: "big_orders", SQL: `SELECT id, amount, status FROM orders WHERE status <> 'cancelled' AND amount > 10`},
	{Name: "order_names", SQL: `SELECT o.id AS order_id, o.amount, c.name FROM orders o JOIN customers c ON c.id = o.customer_id`},
	{Name: "order_facts", SQL: `SELECT o.id AS order_id, o.amount, c.name AS customer_name, c.tier, o.note
		FROM public.orders o LEFT JOIN public.customers c ON c.id = o.customer_id WHERE o.status <> 'cancelled'`},
	{Name: "tiers", SQL: `SELECT c.tier, count(*) AS n, sum(o.amount) AS total, min(o.amount) AS lo, max(o.amount) AS hi, avg(o.amount) AS mean
		FROM orders o LEFT JOIN customers c ON c.id = o.customer_id GROUP BY c.tier HAVING count(*) > 1`},
	{Name: "statuses", SQL: `SELECT DISTINCT customer_id, status FROM orders`},
	{Name: "per_customer", SQL: `SELECT customer_id, count(*) AS n, max(amount) AS hi FROM orders GROUP BY customer_id`},
	{Name: "customer_orders", SQL: `SELECT c.id AS cid, o.id AS oid, o.amount, c.tier FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.tier <> 'bronze'`},
	{Name: "event_counts", SQL: `SELECT customer_id, kind, count(*) AS n FROM events GROUP BY customer_id, kind`},
	{Name: "event_names", SQL: `SELECT e.customer_id, c.name, count(*) AS n FROM events e LEFT JOIN customers c ON c.id = e.customer_id GROUP BY e.customer_id, c.name`},
	{Name: "order_events", Key: []string{"order_id", "kind"}, SQL: `SELECT o.id AS order_id, e.kind, count(*) AS n FROM orders o JOIN events e ON e.customer_id = o.customer_id GROUP BY o.id, e.kind`},
}

// model is the inputs as the source holds them.
type model struct {
	customers map[int][]change.Value
	orders    map[int][]change.Value
	events    [][]change.Value
}

func newModel() *model {
	return &model{customers: map[int][]change.Value{}, orders: map[int][]change.Value{}}
}

type workload struct {
	r   *rand.Rand
	m   *model
	lsn change.LSN
}

var tiers = []string{"gold", "silver", "bronze"}
var statuses = []string{"new", "paid", "cancelled"}

func (w *workload) amount() change.Value {
	if w.r.IntN(10) == 0 {
		return change.Null
	}
	return N(fmt.Sprintf("%d.%02d", w.r.IntN(30), w.r.IntN(100)))
}

func (w *workload) customer(id int) []change.Value {
	tier := S(tiers[w.r.IntN(3)])
	if w.r.IntN(8) == 0 {
		tier = change.Null
	}
	return []change.Value{I(id), S(fmt.Sprintf("c%d", w.r.IntN(5))), tier}
}

func (w *workload) order(id int) []change.Value {
	return []change.Value{I(id), I(1 + w.r.IntN(8)), w.amount(), S(statuses[w.r.IntN(3)]), S(fmt.Sprintf("note%d", w.r.IntN(100)))}
}

func pickKey(r *rand.Rand, m map[int][]change.Value) (int, bool) {
	if len(m) == 0 {
		return 0, false
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys[r.IntN(len(keys))], true
}

func clone1(r []change.Value) []change.Value { return slices.Clone(r) }

// next makes one source transaction and applies it to the model.
func (w *workload) next() *tx {
	w.lsn += 1000
	t := &tx{lsn: w.lsn}
	n := 1 + w.r.IntN(6)
	if w.r.IntN(15) == 0 {
		n = 30 // now and then a bigger one
	}
	m := w.m
	for range n {
		switch k := w.r.IntN(20); {
		case k < 2: // new customer
			id := 1 + w.r.IntN(10)
			if _, ok := m.customers[id]; ok {
				continue
			}
			row := w.customer(id)
			m.customers[id] = row
			t.ins(customers, clone1(row)...)
		case k < 4: // customer changes name or tier
			id, ok := pickKey(w.r, m.customers)
			if !ok {
				continue
			}
			row := w.customer(id)
			m.customers[id] = row
			t.upd(customers, clone1(row)...)
		case k < 5: // customer goes, with all its orders' partner
			id, ok := pickKey(w.r, m.customers)
			if !ok {
				continue
			}
			delete(m.customers, id)
			t.del(customers, I(id), change.Null, change.Null)
		case k < 8: // new order
			id := 1 + w.r.IntN(40)
			if _, ok := m.orders[id]; ok {
				continue
			}
			row := w.order(id)
			m.orders[id] = row
			t.ins(orders, clone1(row)...)
			if w.r.IntN(6) == 0 { // insert then delete in one transaction
				delete(m.orders, id)
				t.del(orders, I(id), change.Null, change.Null, change.Null, change.Null)
			}
		case k < 13: // order update: amount, status, partner; note unchanged (TOAST)
			id, ok := pickKey(w.r, m.orders)
			if !ok {
				continue
			}
			row := clone1(m.orders[id])
			switch w.r.IntN(4) {
			case 0:
				row[2] = w.amount()
			case 1:
				row[3] = S(statuses[w.r.IntN(3)])
			case 2:
				row[1] = I(1 + w.r.IntN(8))
			case 3:
				row[2], row[3] = w.amount(), S(statuses[w.r.IntN(3)])
			}
			m.orders[id] = row
			sent := clone1(row)
			if w.r.IntN(2) == 0 {
				sent[4] = change.Unchanged
			} else {
				row[4] = S(fmt.Sprintf("note%d", w.r.IntN(100)))
				sent[4] = row[4]
			}
			t.upd(orders, sent...)
		case k < 14: // order key change
			id, ok := pickKey(w.r, m.orders)
			if !ok {
				continue
			}
			nid := 1 + w.r.IntN(40)
			if _, taken := m.orders[nid]; taken {
				continue
			}
			row := clone1(m.orders[id])
			delete(m.orders, id)
			row[0] = I(nid)
			m.orders[nid] = row
			sent := clone1(row)
			sent[4] = change.Unchanged
			t.add(change.OpUpdate, orders, []change.Value{I(id), change.Null, change.Null, change.Null, change.Null}, sent)
		case k < 16: // order deleted
			id, ok := pickKey(w.r, m.orders)
			if !ok {
				continue
			}
			delete(m.orders, id)
			t.del(orders, I(id), change.Null, change.Null, change.Null, change.Null)
		case k < 18: // event (duplicates are separate rows)
			row := []change.Value{I(1 + w.r.IntN(8)), S([]string{"view", "click"}[w.r.IntN(2)])}
			if w.r.IntN(6) == 0 {
				row[0] = change.Null
			}
			m.events = append(m.events, row)
			t.ins(events, clone1(row)...)
		case k < 19: // one of equal events deleted
			if len(m.events) == 0 {
				continue
			}
			i := w.r.IntN(len(m.events))
			row := m.events[i]
			m.events = slices.Delete(m.events, i, i+1)
			t.del(events, clone1(row)...)
		default: // many changes of one key
			id, ok := pickKey(w.r, m.orders)
			if !ok {
				continue
			}
			for range 3 {
				row := clone1(m.orders[id])
				row[2] = w.amount()
				row[3] = S(statuses[w.r.IntN(3)])
				m.orders[id] = row
				t.upd(orders, clone1(row)...)
			}
		}
	}
	if len(t.changes) == 0 {
		t.ins(events, I(1), S("view"))
		m.events = append(m.events, []change.Value{I(1), S("view")})
	}
	return t
}

// initial gives the model some rows and returns them as a snapshot batch.
func (w *workload) initial() *change.Batch {
	for id := 1; id <= 6; id++ {
		w.m.customers[id] = w.customer(id)
	}
	for id := 1; id <= 20; id++ {
		w.m.orders[id] = w.order(id)
	}
	for range 10 {
		w.m.events = append(w.m.events, []change.Value{I(1 + w.r.IntN(8)), S("view")})
	}
	w.lsn = 10_000
	return snapshot(w.lsn, w.rows())
}

func (w *workload) rows() map[*change.Table][][]change.Value {
	out := map[*change.Table][][]change.Value{}
	for _, k := range sortedKeys(w.m.customers) {
		out[customers] = append(out[customers], clone1(w.m.customers[k]))
	}
	for _, k := range sortedKeys(w.m.orders) {
		out[orders] = append(out[orders], clone1(w.m.orders[k]))
	}
	for _, r := range w.m.events {
		out[events] = append(out[events], clone1(r))
	}
	return out
}

func sortedKeys(m map[int][]change.Value) []int {
	var k []int
	for id := range m {
		k = append(k, id)
	}
	sort.Ints(k)
	return k
}

// oracle runs each view's SQL in full over the model in its own DuckDB.
type oracle struct {
	db *sql.DB
}

func newOracle(t *testing.T) *oracle {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`CREATE SCHEMA public`, `SET search_path = 'public'`, `SET TimeZone = 'UTC'`,
		`CREATE TABLE public.customers (id INTEGER, name VARCHAR, tier VARCHAR)`,
		`CREATE TABLE public.orders (id INTEGER, customer_id INTEGER, amount DECIMAL(12,2), status VARCHAR, note VARCHAR)`,
		`CREATE TABLE public.events (customer_id INTEGER, kind VARCHAR)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return &oracle{db: db}
}

func lit(v change.Value) string {
	if v.IsNull() {
		return "NULL"
	}
	return change.QuoteLiteral(v.Text)
}

func (o *oracle) load(t *testing.T, m *model) {
	t.Helper()
	var qs []string
	qs = append(qs, "DELETE FROM customers", "DELETE FROM orders", "DELETE FROM events")
	add := func(tbl string, rows [][]change.Value) {
		if len(rows) == 0 {
			return
		}
		var vals []string
		for _, r := range rows {
			var l []string
			for _, v := range r {
				l = append(l, lit(v))
			}
			vals = append(vals, "("+strings.Join(l, ", ")+")")
		}
		qs = append(qs, "INSERT INTO "+tbl+" VALUES "+strings.Join(vals, ", "))
	}
	var cs, os [][]change.Value
	for _, k := range sortedKeys(m.customers) {
		cs = append(cs, m.customers[k])
	}
	for _, k := range sortedKeys(m.orders) {
		os = append(os, m.orders[k])
	}
	add("customers", cs)
	add("orders", os)
	add("events", m.events)
	for _, q := range qs {
		if _, err := o.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rows returns a view's rows, each rendered as text.
func (o *oracle) rows(t *testing.T, sqlText string) []string {
	t.Helper()
	rs, err := o.db.Query("SELECT CAST(COLUMNS(*) AS VARCHAR) FROM (" + sqlText + ")")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, v := range vals {
			if !v.Valid {
				s = append(s, "NULL")
			} else {
				s = append(s, v.String)
			}
		}
		out = append(out, strings.Join(s, "|"))
	}
	sort.Strings(out)
	return out
}

// folded is a target's view tables: output rows by key, per view, with
// the position applied last (a later position wins; replays are skipped).
type folded struct {
	rows    map[string]map[string][]change.Value
	applied map[string]change.Position
}

func newFolded() *folded {
	return &folded{rows: map[string]map[string][]change.Value{}, applied: map[string]change.Position{}}
}

func rowText(r []change.Value) string {
	var s []string
	for _, v := range r {
		s = append(s, v.String())
	}
	return strings.Join(s, "|")
}

func keyText(t *change.Table, r []change.Value) string {
	var s []string
	for _, k := range t.Key {
		s = append(s, r[k].String())
	}
	return strings.Join(s, "|")
}

// apply folds a batch in, checking the rules every output obeys.
func (f *folded) apply(t *testing.T, b *change.Batch) {
	t.Helper()
	perTx := map[string]bool{}
	for _, c := range b.Changes {
		name := c.Table.Name
		if c.Pos.Compare(f.applied[name]) <= 0 && c.Op != change.OpRead {
			continue // a replay the target already holds
		}
		f.applied[name] = c.Pos
		m := f.rows[name]
		if m == nil {
			m = map[string][]change.Value{}
			f.rows[name] = m
		}
		var k string
		switch c.Op {
		case change.OpRead, change.OpInsert:
			k = keyText(c.Table, c.After)
			if _, ok := m[k]; ok && c.Op == change.OpInsert {
				t.Fatalf("%s: insert of key %s that exists (at %s)", name, k, c.Pos)
			}
			m[k] = c.After
		case change.OpUpdate:
			k = keyText(c.Table, c.After)
			if kb := keyText(c.Table, c.Before); kb != k {
				t.Fatalf("%s: update changes the key %s -> %s", name, kb, k)
			}
			if old, ok := m[k]; !ok || rowText(old) != rowText(c.Before) {
				t.Fatalf("%s: update of key %s whose before %v is not what the target holds %v", name, k, c.Before, old)
			}
			m[k] = c.After
		case change.OpDelete:
			k = keyText(c.Table, c.Before)
			if old, ok := m[k]; !ok || rowText(old) != rowText(c.Before) {
				t.Fatalf("%s: delete of key %s without a prior insert (holds %v)", name, k, old)
			}
			delete(m, k)
		}
		tk := fmt.Sprintf("%s/%d/%s", name, c.Pos.CommitLSN, k)
		if perTx[tk] && c.Op != change.OpRead {
			t.Fatalf("%s: key %s changed twice by the transaction at %s", name, k, c.Pos.CommitLSN)
		}
		perTx[tk] = true
	}
}

func (f *folded) sorted(view string) []string {
	var out []string
	for _, r := range f.rows[view] {
		out = append(out, rowText(r))
	}
	sort.Strings(out)
	return out
}

func (f *folded) check(t *testing.T, o *oracle, m *model, when string) {
	t.Helper()
	o.load(t, m)
	for _, v := range oracleViews {
		want := o.rows(t, v.SQL)
		got := f.sorted(v.Name)
		if !slices.Equal(want, got) {
			t.Fatalf("%s: view %s differs from its SQL run in full\n got: %v\nwant: %v", when, v.Name, got, want)
		}
	}
}

func TestOracle(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := &workload{r: rand.New(rand.NewPCG(seed, 7)), m: newModel()}
			e := open(t, "", oracleViews, orders, customers, events)
			o := newOracle(t)
			f := newFolded()
			f.apply(t, apply(t, e, w.initial()))
			f.check(t, o, w.m, "after the snapshot")
			for i := range 40 {
				tx := w.next()
				f.apply(t, apply(t, e, tx.batch()))
				f.check(t, o, w.m, fmt.Sprintf("after transaction %d (%s)", i, tx.lsn))
			}
			// Evaluate agrees with the folded output too.
			rows := w.rows()
			var in []InputRows
			for _, tb := range []*change.Table{customers, orders, events} {
				in = append(in, InputRows{Table: tb, Rows: rows[tb]})
			}
			for _, v := range oracleViews {
				got, err := e.Evaluate(context.Background(), v.Name, in)
				if err != nil {
					t.Fatal(err)
				}
				var s []string
				for _, r := range got {
					s = append(s, rowText(r))
				}
				sort.Strings(s)
				if want := f.sorted(v.Name); !slices.Equal(s, want) {
					t.Fatalf("Evaluate(%s) = %v, folded %v", v.Name, s, want)
				}
			}
		})
	}
}

// TestOracleGrouped hands the engine batches of several complete
// transactions, as a busy source does: after every batch the folded output
// equals the SQL run in full, and every output carries the position of the
// batch's last transaction.
func TestOracleGrouped(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 11))
			w := &workload{r: rand.New(rand.NewPCG(seed, 7)), m: newModel()}
			e := open(t, "", oracleViews, orders, customers, events)
			o := newOracle(t)
			f := newFolded()
			f.apply(t, apply(t, e, w.initial()))
			grouped := 0
			for i := range 15 {
				b := &change.Batch{}
				n := 1 + r.IntN(8)
				for range n {
					tx := w.next()
					b.Changes = append(b.Changes, tx.changes...)
					b.Ack = tx.lsn
				}
				out := apply(t, e, b)
				for _, c := range out.Changes {
					if c.Pos.CommitLSN != b.Ack {
						t.Fatalf("batch %d: output at %s, want the last transaction's %s", i, c.Pos, b.Ack)
					}
				}
				if n > 1 && len(out.Changes) > 0 {
					grouped++
				}
				f.apply(t, out)
				f.check(t, o, w.m, fmt.Sprintf("after batch %d (%d transactions, to %s)", i, n, b.Ack))
			}
			if grouped < 5 {
				t.Fatalf("only %d batches of several transactions had output", grouped)
			}
		})
	}
}

var _ = filepath.Join
