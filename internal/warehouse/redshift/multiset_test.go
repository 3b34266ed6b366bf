package redshift

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// events has no key (REPLICA IDENTITY FULL): a multiset, with a column of
// each kind of equality the merge uses (plain, VARCHAR with its length,
// SUPER as text, VARBYTE, timestamps).
func events() *change.Table {
	col := func(name, typ string, k change.Kind) change.Column {
		return change.Column{Name: name, Type: change.Type{Name: typ, Kind: k}, Nullable: true}
	}
	t := &change.Table{Schema: "app", Name: "events", Version: 1, Columns: []change.Column{
		col("kind", "text", change.KindText),
		col("n", "integer", change.KindInt),
		col("amount", "numeric(12,2)", change.KindNumeric),
		col("doc", "jsonb", change.KindJSON),
		col("raw", "bytea", change.KindBytes),
		col("at", "timestamp with time zone", change.KindTimestampTZ),
		col("ok", "boolean", change.KindBool),
	}}
	return t
}

type ev struct {
	kind, n, amount, doc, raw, at, ok *string
}

func (e ev) values() []change.Value {
	v := func(k change.Kind, p *string) change.Value {
		if p == nil {
			return change.Null
		}
		return change.V(k, *p)
	}
	return []change.Value{v(change.KindText, e.kind), v(change.KindInt, e.n), v(change.KindNumeric, e.amount),
		v(change.KindJSON, e.doc), v(change.KindBytes, e.raw), v(change.KindTimestampTZ, e.at), v(change.KindBool, e.ok)}
}

const dumpEvents = `SELECT "kind", "n", "amount"::text, "doc"::text, encode("raw", 'hex'), to_char("at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS'), "ok"::text FROM "app"."events"`

func (e ev) line() string {
	s := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return *p
	}
	raw := "NULL"
	if e.raw != nil {
		raw = hex.EncodeToString([]byte(*e.raw))
	}
	at := "NULL"
	if e.at != nil {
		at = strings.TrimSuffix(*e.at, "+00:00")
	}
	ok := "NULL"
	if e.ok != nil {
		ok = *e.ok
	}
	return strings.Join([]string{s(e.kind), s(e.n), s(e.amount), s(e.doc), raw, at, ok}, "|")
}

// multiset is a source-side model of the keyless table: its rows in any order.
type multiset struct {
	t       *testing.T
	tbl     *change.Table
	pos     uint64
	rows    []ev
	pending []landed
}

func (m *multiset) next() change.Position {
	m.pos += 10
	return change.Position{CommitLSN: change.LSN(m.pos + 5), LSN: change.LSN(m.pos)}
}

func (m *multiset) put(c change.Change) {
	c.Table, c.CommitTime = m.tbl, time.Unix(1700000000, 0)
	m.pending = append(m.pending, record(c))
}

func (m *multiset) insert(e ev, op change.Op) {
	m.put(change.Change{Op: op, After: e.values(), Pos: m.next()})
	m.rows = append(m.rows, e)
}

func (m *multiset) remove(e ev) {
	for i, r := range m.rows {
		if r.line() == e.line() {
			m.rows = append(m.rows[:i], m.rows[i+1:]...)
			return
		}
	}
	m.t.Fatalf("model has no row %s", e.line())
}

func (m *multiset) delete(e ev) {
	m.put(change.Change{Op: change.OpDelete, Before: e.values(), Pos: m.next()})
	m.remove(e)
}

// update as the producer puts it for a keyless table: a delete of the old
// row and an insert of the new one, at the update's position; or whole.
func (m *multiset) update(from, to ev, whole bool) {
	pos := m.next()
	if whole {
		m.put(change.Change{Op: change.OpUpdate, Before: from.values(), After: to.values(), Pos: pos})
	} else {
		m.put(change.Change{Op: change.OpDelete, Before: from.values(), Pos: pos})
		m.put(change.Change{Op: change.OpInsert, After: to.values(), Pos: pos})
	}
	m.remove(from)
	m.rows = append(m.rows, to)
}

func (m *multiset) truncate() {
	m.put(change.Change{Op: change.OpTruncate, Pos: m.next()})
	m.rows = nil
}

func (m *multiset) want() []string {
	out := make([]string, len(m.rows))
	for i, r := range m.rows {
		out[i] = r.line()
	}
	return sortedLines(out)
}

func sortedLines(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// land puts the pending records in the landing table, each shard's in order.
func (m *multiset) land(e *env) {
	e.land(m.pending...)
	m.pending = nil
}

// A keyless table through the merge: identical rows inserted, one of them
// deleted, one updated (split and whole), a row of NULLs in every column,
// rows that differ only in a trailing blank, a producer's duplicate, a
// truncate, each merge run twice: the mirror equals the source multiset.
func TestMergeKeyless(t *testing.T) {
	tbl := events()
	e := newEnv(t, tbl)
	m := &multiset{t: t, tbl: tbl, pos: 100}
	a := ev{kind: ptr("click"), n: ptr("1"), amount: ptr("9.50"), doc: ptr(`{"k": [1, 2]}`), raw: ptr("\x00\xff"), at: ptr("2024-05-01T10:00:00+00:00"), ok: ptr("true")}
	b := ev{kind: ptr("click "), n: ptr("1"), amount: ptr("9.50"), doc: ptr(`{"k": [1, 2]}`), raw: ptr("\x00\xff"), at: ptr("2024-05-01T10:00:00+00:00"), ok: ptr("true")}
	nulls := ev{} // NULL in every column
	c := ev{kind: ptr("view"), n: ptr("2"), ok: ptr("false")}
	for _, r := range []ev{a, a, a, b, nulls, nulls} {
		m.insert(r, change.OpRead)
	}
	m.land(e)
	e.merge()
	check := func(what string) {
		t.Helper()
		equalLines(t, what, e.dump(dumpEvents), m.want())
		e.merge() // a re-run changes nothing
		equalLines(t, what+", merged again", e.dump(dumpEvents), m.want())
	}
	check("snapshot of identical rows")

	// One of three identical rows deleted; one of two NULL rows updated;
	// the trailing-blank row is another row and stays.
	m.delete(a)
	m.update(nulls, c, false)
	m.insert(a, change.OpInsert)
	m.delete(a)
	m.land(e)
	e.merge()
	check("a delete and an update of identical rows")

	// A whole update record, a row of NULLs inserted, and the producer
	// putting a record twice.
	m.update(a, nulls, true)
	m.insert(nulls, change.OpInsert)
	dup := m.pending[len(m.pending)-1]
	m.pending = append(m.pending, dup)
	m.delete(b)
	again := append([]landed(nil), m.pending...)
	m.land(e)
	e.merge()
	check("a whole update, NULL rows, a duplicate record")

	// Deleting every copy of a value, in a later run than its insert; and
	// the producer putting records of the run before again (a batch put
	// again after a crash): they count once.
	m.delete(nulls)
	m.delete(nulls)
	m.pending = append(append(m.pending, dup), again...)
	m.land(e)
	e.merge()
	check("every copy deleted")

	// A truncate in the middle of a run: only what follows it stays.
	m.insert(c, change.OpInsert)
	m.truncate()
	m.insert(c, change.OpInsert)
	m.insert(c, change.OpInsert)
	m.land(e)
	e.merge()
	check("a truncate")
	if got := len(e.dump(dumpEvents)); got != 2 {
		t.Fatalf("after the truncate the mirror has %d rows, want 2", got)
	}
}

// A keyless table's DDL has no key and no NOT NULL (but sluice's own
// positions), and no delete markers table; its merge is pinned.
func TestGoldenKeyless(t *testing.T) {
	tbl := events()
	tbl.Columns[1].Nullable = false // NOT NULL at the source, not in the mirror
	p := mustPlan(t, seedConfig(Redshift, tbl))
	tp := p.Tables[0]
	if tp.Deleted != (change.TableID{}) {
		t.Errorf("a keyless table has delete markers %s", tp.Deleted)
	}
	golden(t, "redshift_events_applied.sql", object(t, p, KindTable, "_sluice", "app.events.applied").Create+";\n")
	ddl := object(t, p, KindTable, "app", "events").Create
	if strings.Contains(ddl, "PRIMARY KEY") || strings.Count(ddl, "NOT NULL") != 2 {
		t.Errorf("keyless DDL has a key or NOT NULL on a source column:\n%s", ddl)
	}
	golden(t, "redshift_events_ddl.sql", ddl+";\n")
	golden(t, "redshift_events_merge.sql", strings.Join(tp.Merge, ";\n\n")+";\n")
	pp := mustPlan(t, seedConfig(Postgres, events()))
	golden(t, "postgres_events_merge.sql", strings.Join(pp.Tables[0].Merge, ";\n\n")+";\n")
}
