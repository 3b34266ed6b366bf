package redshift

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

// customers with a column added at the source (ADD COLUMN email).
func customersWithEmail() *change.Table {
	t := customers()
	t.Version = 2
	t.Columns = append(t.Columns, change.Column{Name: "email", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true})
	return t
}

// customers with a column dropped at the source (DROP COLUMN phone).
func customersWithoutPhone() *change.Table {
	t := customers()
	t.Version = 3
	t.Columns = t.Columns[:3]
	return t
}

// row of any customers shape: the named values, NULL elsewhere.
func custRow(t *change.Table, vals map[string]string) []change.Value {
	row := make([]change.Value, len(t.Columns))
	for i, c := range t.Columns {
		row[i] = change.Null
		if v, ok := vals[c.Name]; ok {
			k := change.KindText
			if c.Name == "userid" {
				k = change.KindInt
			}
			row[i] = change.V(k, v)
		}
	}
	return row
}

func (e *env) columns(schema, table string) string {
	e.t.Helper()
	cols, err := CatalogInspector{Conn: e.db, Dialect: Postgres}.Columns(e.ctx, Object{Schema: schema, Name: table})
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Join(cols, ",")
}

// ADD COLUMN, then DROP COLUMN at the source, with records of the old and
// the new shape pending in one merge: the mirror is altered to the newest
// record's shape, every record is merged, a column an older record does
// not name keeps its value, and a re-run changes nothing.
func TestMergeAppliesSchemaChanges(t *testing.T) {
	v1, v2, v3 := customers(), customersWithEmail(), customersWithoutPhone()
	v3.Columns = append(v3.Columns, v2.Columns[4]) // email stays; phone goes
	e := newEnv(t, v1)
	pos := uint64(100)
	ch := func(tbl *change.Table, op change.Op, before, after map[string]string) landed {
		pos += 10
		c := change.Change{Op: op, Table: tbl, Pos: change.Position{CommitLSN: change.LSN(pos + 5), LSN: change.LSN(pos)}}
		if before != nil {
			c.Before = custRow(tbl, before)
		}
		if after != nil {
			c.After = custRow(tbl, after)
		}
		return record(c)
	}
	e.land(ch(v1, change.OpInsert, nil, map[string]string{"userid": "1", "first_name": "Ada", "last_name": "L", "phone": "+1"}),
		ch(v1, change.OpInsert, nil, map[string]string{"userid": "2", "first_name": "Alan", "last_name": "T", "phone": "+2"}))
	e.merge()

	// ADD COLUMN email: old-shape changes before it, new-shape ones after,
	// landed in one run, on every shard.
	e.land(
		ch(v1, change.OpUpdate, nil, map[string]string{"userid": "1", "first_name": "Ada", "last_name": "Lovelace", "phone": "+1"}),
		ch(v1, change.OpInsert, nil, map[string]string{"userid": "3", "first_name": "Grace", "last_name": "H", "phone": "+3"}),
		ch(v2, change.OpUpdate, nil, map[string]string{"userid": "2", "first_name": "Alan", "last_name": "T", "phone": "+2", "email": "alan@x"}),
		ch(v2, change.OpInsert, nil, map[string]string{"userid": "4", "first_name": "Edsger", "last_name": "D", "email": "ed@x"}),
		// An old-shape update of key 3 before the new-shape one: the email
		// comes from the newer record.
		ch(v2, change.OpUpdate, nil, map[string]string{"userid": "3", "first_name": "Grace", "last_name": "Hopper", "phone": "+3", "email": "grace@x"}),
	)
	if n, err := Pending(e.ctx, e.db, e.plan); err != nil || n[v1.ID()] != 5 {
		t.Fatalf("pending = %v (%v), want 5", n, err)
	}
	e.merge()
	if got := e.columns("public", "customers"); got != "userid,first_name,last_name,phone,_sluice_commit_lsn,_sluice_lsn,email" {
		t.Fatalf("mirror columns after ADD COLUMN: %s", got)
	}
	const dump2 = `SELECT "userid", "first_name", "last_name", "phone", "email" FROM "public"."customers"`
	want := []string{"1|Ada|Lovelace|+1|NULL", "2|Alan|T|+2|alan@x", "3|Grace|Hopper|+3|grace@x", "4|Edsger|D|NULL|ed@x"}
	equalLines(t, "after ADD COLUMN", e.dump(dump2), want)
	e.merge()
	equalLines(t, "after ADD COLUMN, merged again", e.dump(dump2), want)

	// DROP COLUMN phone, with a late old-shape (v2) record of key 1 in the
	// same run as new-shape ones, and a v2 update of key 2 before a v3 one
	// that does not name phone.
	e.land(
		ch(v2, change.OpUpdate, nil, map[string]string{"userid": "1", "first_name": "Ada", "last_name": "Lovelace", "phone": "+1", "email": "ada@x"}),
		ch(v3, change.OpUpdate, nil, map[string]string{"userid": "2", "first_name": "Alan M.", "last_name": "T", "email": "alan@x"}),
		ch(v3, change.OpDelete, map[string]string{"userid": "4"}, nil),
		ch(v3, change.OpInsert, nil, map[string]string{"userid": "5", "first_name": "Barbara", "last_name": "Liskov"}),
	)
	e.merge()
	if got := e.columns("public", "customers"); got != "userid,first_name,last_name,_sluice_commit_lsn,_sluice_lsn,email" {
		t.Fatalf("mirror columns after DROP COLUMN: %s", got)
	}
	const dump3 = `SELECT "userid", "first_name", "last_name", "email" FROM "public"."customers"`
	want = []string{"1|Ada|Lovelace|ada@x", "2|Alan M.|T|alan@x", "3|Grace|Hopper|grace@x", "5|Barbara|Liskov|NULL"}
	equalLines(t, "after DROP COLUMN", e.dump(dump3), want)
	e.merge()
	equalLines(t, "after DROP COLUMN, merged again", e.dump(dump3), want)
	if n, err := Pending(e.ctx, e.db, e.plan); err != nil || n[v1.ID()] != 0 {
		t.Fatalf("pending = %v (%v), want 0", n, err)
	}

	// A plan of the newest schema (sluice restarted) finds the altered
	// mirror usable, and its merge of new records changes what they say.
	cfg := seedConfig(Postgres, v3)
	p := mustPlan(t, cfg)
	if err := p.Inspect(e.ctx, CatalogInspector{Conn: e.db, Dialect: Postgres}); err != nil {
		t.Fatal(err)
	}
	o := object(t, p, KindTable, "public", "customers")
	if o.State != Exists || !strings.Contains(o.Problem, "another schema") {
		t.Fatalf("the altered mirror inspected by the new plan: state %v, %q", o.State, o.Problem)
	}
	e.plan = p
	e.land(ch(v3, change.OpUpdate, nil, map[string]string{"userid": "5", "first_name": "Barbara", "last_name": "Liskov", "email": "b@x"}))
	e.merge()
	equalLines(t, "merged by the new plan", e.dump(dump3), []string{"1|Ada|Lovelace|ada@x", "2|Alan M.|T|alan@x", "3|Grace|Hopper|grace@x", "5|Barbara|Liskov|b@x"})
}

// A column whose type changed, or a key that changed, at the source is not
// applied automatically: the merge stops saying so, nothing merged.
func TestMergeRefusesTypeAndKeyChanges(t *testing.T) {
	v1 := customers()
	e := newEnv(t, v1)
	e.land(record(cust(v1, change.OpInsert, 100, 90, 1, "a", "a", nil)))
	e.merge()
	retyped := customers()
	retyped.Columns[3].Type = change.Type{Name: "text", Kind: change.KindText}
	e.land(record(cust(retyped, change.OpInsert, 200, 190, 2, "b", "b", ptr("+2"))))
	err := Merge(e.ctx, e.db, e.plan)
	if !errors.Is(err, ErrShapeChanged) || !strings.Contains(err.Error(), `column "phone" changed type`) {
		t.Fatalf("merge of a retyped column: err = %v", err)
	}
	equalLines(t, "nothing merged", e.dump(dumpCustomers), []string{"1|a|a|NULL"})

	e2 := newEnv(t, customers())
	rekeyed := customers()
	rekeyed.Key = []int{1}
	rekeyed.Columns[0].Key, rekeyed.Columns[1].Key = false, true
	e2.land(record(cust(rekeyed, change.OpInsert, 200, 190, 2, "b", "b", nil)))
	if err := Merge(e2.ctx, e2.db, e2.plan); !errors.Is(err, ErrShapeChanged) || !strings.Contains(err.Error(), "cannot change its key in place") {
		t.Fatalf("merge of a changed key: err = %v", err)
	}
}

// A keyless table through ADD COLUMN: rows of the old shape and the new in
// one run; a delete of an old-shape row finds it (its new column is NULL).
func TestMergeKeylessAddColumn(t *testing.T) {
	v1 := events()
	v2 := events()
	v2.Columns = append(v2.Columns, change.Column{Name: "extra", Type: change.Type{Name: "integer", Kind: change.KindInt}, Nullable: true})
	e := newEnv(t, v1)
	m := &multiset{t: t, tbl: v1, pos: 100}
	a := ev{kind: ptr("a"), n: ptr("1")}
	m.insert(a, change.OpInsert)
	m.insert(a, change.OpInsert)
	m.land(e)
	e.merge()
	m.delete(a) // old shape
	m.tbl = v2
	row := append(a.values(), change.V(change.KindInt, "7"))
	m.put(change.Change{Op: change.OpInsert, After: row, Pos: m.next()})
	m.put(change.Change{Op: change.OpInsert, After: append(a.values(), change.Null), Pos: m.next()})
	m.land(e)
	e.merge()
	if got := e.columns("app", "events"); !strings.HasSuffix(got, "_sluice_lsn,extra") {
		t.Fatalf("mirror columns: %s", got)
	}
	const dump = `SELECT "kind", "n", "extra" FROM "app"."events"`
	want := []string{"a|1|7", "a|1|NULL", "a|1|NULL"}
	equalLines(t, "keyless after ADD COLUMN", e.dump(dump), want)
	e.merge()
	equalLines(t, "keyless after ADD COLUMN, merged again", e.dump(dump), want)
}

// The Redshift text of a run over two pending schemas (email added): the
// ALTER, which schema each record has, and email "unchanged" in the older
// records. https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html
func TestGoldenSchemaChange(t *testing.T) {
	p := mustPlan(t, seedConfig(Redshift, customers()))
	v2 := customersWithEmail()
	run, err := shapesPlan(p, p.Tables[0], v2, []*change.Table{v2, customers()})
	if err != nil {
		t.Fatal(err)
	}
	alters := alterSQL(Redshift, run.Target, []string{"userid", "first_name", "last_name", "phone"}, run.Columns)
	if len(alters) != 1 || alters[0] != `ALTER TABLE "public"."customers" ADD COLUMN "email" VARCHAR(65535)` {
		t.Errorf("alters = %q", alters)
	}
	golden(t, "redshift_customers_schema_change.sql", strings.Join(append(alters, run.Merge...), ";\n\n")+";\n")
}
