package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// binaryCases are values of every type with a binary encoder, in the forms
// the source writes, edge cases included.
var binaryCases = []struct {
	typ  string
	kind change.Kind
	vals []string
}{
	{"smallint", change.KindInt, []string{"0", "-32768", "32767"}},
	{"integer", change.KindInt, []string{"1", "-2147483648", "2147483647"}},
	{"bigint", change.KindInt, []string{"-9223372036854775808", "9223372036854775807"}},
	{"boolean", change.KindBool, []string{"true", "false"}},
	{"real", change.KindFloat, []string{"1.5", "-3.4028235e+38", "1.17549435e-38", "NaN", "Infinity", "-Infinity", "0.1"}},
	{"double precision", change.KindFloat, []string{"0.1", "-1.7976931348623157e+308", "5e-324", "NaN", "-Infinity", "-0"}},
	{"numeric", change.KindNumeric, []string{"0", "0.000", "-0.5", "1", "10000", "12345678.9", "0.00001234", "-99999999.99990000",
		"123456789012345678901234567890.123456789012345678901234567890", "NaN", "100000000", "0.0001", "9999", "-10000.0001"}},
	{"numeric(12,2)", change.KindNumeric, []string{"1234567890.12", "-0.01", "0.00", "5.50"}},
	{"text", change.KindText, []string{"", "plain", "tab\tnew\nline \\ back", "ünïcödé ✓"}},
	{"character varying(10)", change.KindText, []string{"abc", ""}},
	{"bytea", change.KindBytes, []string{"", "\x00\x01\xff raw"}},
	{"json", change.KindJSON, []string{`{"b": 1, "a": [1, 2]}`, `null`}},
	{"jsonb", change.KindJSON, []string{`{"a": [1, 2], "b": 1}`, `"x"`}},
	{"uuid", change.KindText, []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}},
	{"date", change.KindDate, []string{"2024-02-29", "0001-01-01", "9999-12-31", "1970-01-01", "1999-12-31", "infinity", "-infinity"}},
	{"timestamp without time zone", change.KindTimestamp, []string{"2024-01-02T03:04:05", "2024-01-02T03:04:05.123456", "1900-06-30T23:59:59.5",
		"0001-01-01T00:00:00", "infinity", "-infinity", "2000-01-01T24:00:00"}},
	{"timestamp with time zone", change.KindTimestampTZ, []string{"2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05.000001+00:00",
		"1969-12-31T23:59:59.999999+00:00", "2024-06-01T12:00:00+05:30", "2024-06-01T12:00:00-03:00", "2024-06-01T12:00:00+05:45:30", "2024-06-01T12:00:00Z",
		"infinity", "-infinity"}},
	{"timestamp(3) with time zone", change.KindTimestampTZ, []string{"2024-01-02T03:04:05.123456+00:00"}},
}

// TestBinaryCopyMatchesText: every value loads through binary COPY to the
// same stored value as through its text form.
func TestBinaryCopyMatchesText(t *testing.T) {
	ctx := context.Background()
	tg := open(t, newDB(t), Options{})
	for i, tc := range binaryCases {
		t.Run(tc.typ, func(t *testing.T) {
			name := fmt.Sprintf("bin_%d", i)
			if _, err := tg.Pool().Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, v %s)`, name, tc.typ)); err != nil {
				t.Fatal(err)
			}
			tbl := &change.Table{Schema: "public", Name: name, Key: []int{0}, Columns: []change.Column{
				{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
				{Name: "v", Type: change.Type{Name: tc.typ, Kind: tc.kind}, Nullable: true},
			}}
			rows := []warehouse.Row{{Op: 'i', Values: []change.Value{change.V(change.KindInt, "0"), change.Null}}}
			for j, v := range tc.vals {
				rows = append(rows, warehouse.Row{Op: 'i', Values: []change.Value{change.V(change.KindInt, fmt.Sprint(j+1)), change.V(tc.kind, v)}})
			}
			err := tg.tx(ctx, func(s *session) error {
				bin, err := s.binaryColumns(ctx, tbl.ID().Quoted(), tbl, false)
				if err != nil {
					return err
				}
				if bin == nil {
					t.Fatalf("no binary encoder for %s", tc.typ)
				}
				return s.copyBinary(ctx, tbl.ID(), tbl.ID(), "COPY "+tbl.ID().Quoted()+" (id, v) FROM STDIN", bin, rows)
			})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			r, err := tg.Pool().Query(ctx, fmt.Sprintf(`SELECT id::text, CASE WHEN v IS NULL THEN '<null>' ELSE v::text END FROM %s`, name))
			if err != nil {
				t.Fatal(err)
			}
			for r.Next() {
				var id, v string
				if err := r.Scan(&id, &v); err != nil {
					t.Fatal(err)
				}
				got[id] = v
			}
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			if got["0"] != "<null>" {
				t.Errorf("NULL stored as %q", got["0"])
			}
			for j, v := range tc.vals {
				src := v
				if tc.kind == change.KindBytes {
					src = `\x` + fmt.Sprintf("%x", v)
				}
				var want string
				if err := tg.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT CAST(CAST($1 AS text) AS %s)::text`, tc.typ), src).Scan(&want); err != nil {
					t.Fatal(err)
				}
				if g := got[fmt.Sprint(j+1)]; g != want {
					t.Errorf("%s %q: binary COPY stored %q, text input gives %q", tc.typ, v, g, want)
				}
			}
		})
	}
}

// TestBinaryCopyFallsBackToText: a value the binary encoder does not read
// (a BC timestamp, a numeric Infinity) sends its table to text COPY, and
// the batch lands whole; the table stays on text COPY.
func TestBinaryCopyFallsBackToText(t *testing.T) {
	ctx := context.Background()
	tg := open(t, newDB(t), Options{})
	tbl := &change.Table{Schema: "public", Name: "odd", Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "at", Type: change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}, Nullable: true},
		{Name: "n", Type: change.Type{Name: "numeric", Kind: change.KindNumeric}, Nullable: true},
	}}
	ins := func(i int, at, n string) change.Change {
		return change.Change{Op: change.OpInsert, Table: tbl, Pos: warehousetest.Pos(i), After: []change.Value{
			change.V(change.KindInt, fmt.Sprint(i)), change.V(change.KindTimestampTZ, at), change.V(change.KindNumeric, n)}}
	}
	b := &change.Batch{Changes: []change.Change{
		ins(1, "2024-01-02T03:04:05+00:00", "1.5"),
		ins(2, "0044-03-15T12:00:00+00:00 BC", "2"),
		ins(3, "2024-01-02T03:04:05+00:00", "Infinity"),
	}}
	if err := tg.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !tg.textCopy[tbl.ID()] {
		t.Errorf("table not sent to text COPY")
	}
	got := rows(t, tg.Pool(), tbl.ID(), []string{"id", "at", "n"})
	if len(got) != 3 {
		t.Fatalf("got %d rows, want 3", len(got))
	}
	var bc string
	if err := tg.Pool().QueryRow(ctx, `SELECT at::text FROM odd WHERE id = 2`).Scan(&bc); err != nil || bc != "0044-03-15 12:00:00+00 BC" {
		t.Errorf("BC timestamp: %q, %v", bc, err)
	}
}

// BenchmarkEncodeRow: one row of the benchmark's customers table (int,
// three varchar, text, timestamptz, numeric(12,2)) into binary and text
// COPY: the allocations per row (0 for both: values are appended to a
// reused buffer, converted once from their text).
func BenchmarkEncodeRow(b *testing.B) {
	tbl, rows := customersRows(1000)
	cols := []binaryCol{}
	oids := []uint32{oidInt4, oidVarchar, oidVarchar, oidVarchar, oidText, oidTimestampTZ, oidNumeric}
	for i, c := range tbl.Columns {
		cols = append(cols, binaryCol{name: c.Name, value: i, enc: binaryEncoder(oids[i], c.Type.Kind), key: c.Key})
	}
	b.Run("binary", func(b *testing.B) {
		var r binaryRows
		buf := make([]byte, 0, 1<<20)
		b.ReportAllocs()
		for b.Loop() {
			r.reset(tbl.ID(), cols, rows, buf)
			for i := range rows {
				var err error
				if r.buf, err = r.appendRow(r.buf, &rows[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
	})
	b.Run("text", func(b *testing.B) {
		buf := make([]byte, 0, 1<<20)
		b.ReportAllocs()
		for b.Loop() {
			buf = buf[:0]
			for i := range rows {
				var err error
				if buf, err = appendCopyValues(buf, tbl, rows[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
	})
}

func customersRows(n int) (*change.Table, []warehouse.Row) {
	tbl := &change.Table{Schema: "public", Name: "customers", Key: []int{0}, Columns: []change.Column{
		{Name: "userid", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "first_name", Type: change.Type{Name: "character varying(63)", Kind: change.KindText}},
		{Name: "last_name", Type: change.Type{Name: "character varying(63)", Kind: change.KindText}},
		{Name: "phone", Type: change.Type{Name: "character varying(63)", Kind: change.KindText}},
		{Name: "email", Type: change.Type{Name: "text", Kind: change.KindText}},
		{Name: "created_at", Type: change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}},
		{Name: "balance", Type: change.Type{Name: "numeric(12,2)", Kind: change.KindNumeric}},
	}}
	rows := make([]warehouse.Row, n)
	for i := range rows {
		rows[i] = warehouse.Row{Op: 'i', Values: []change.Value{
			change.V(change.KindInt, fmt.Sprint(i+1)),
			change.V(change.KindText, fmt.Sprintf("first%d", i)),
			change.V(change.KindText, fmt.Sprintf("last%d", i)),
			change.V(change.KindText, fmt.Sprintf("+1-555-%07d", i)),
			change.V(change.KindText, fmt.Sprintf("user%d@example.com", i)),
			change.V(change.KindTimestampTZ, fmt.Sprintf("2026-%02d-%02dT%02d:%02d:%02d.%06d+00:00", i%12+1, i%28+1, i%24, i%60, i%60, i)),
			change.V(change.KindNumeric, fmt.Sprintf("%d.%02d", i*7%100000, i%100)),
		}}
	}
	return tbl, rows
}

// snapshotBatch is n snapshot reads of warehousetest.Items from key from.
func snapshotBatch(tbl *change.Table, from, n int) *change.Batch {
	b := &change.Batch{}
	for i := from; i < from+n; i++ {
		b.Changes = append(b.Changes, warehousetest.Read(tbl, warehousetest.Pos(5), i, fmt.Sprintf("row %d", i), i))
	}
	return b
}

func count(t *testing.T, tg *Target, tbl *change.Table) (rows, keys int) {
	t.Helper()
	err := tg.Pool().QueryRow(context.Background(), "SELECT count(*), count(DISTINCT k) FROM "+tbl.ID().Quoted()).Scan(&rows, &keys)
	if err != nil {
		t.Fatal(err)
	}
	return rows, keys
}

// TestSnapshotDirectBinaryReplay: snapshot reads into a just reset table
// go straight into it by binary COPY; a batch handed again (its commit
// reported failed though it happened) adds no row.
func TestSnapshotDirectBinaryReplay(t *testing.T) {
	ctx := context.Background()
	tg := open(t, newDB(t), Options{})
	it := warehousetest.Items()
	if err := tg.Reset(ctx, it); err != nil {
		t.Fatal(err)
	}
	b1, b2 := snapshotBatch(it, 1, 1000), snapshotBatch(it, 1001, 1000)
	for _, b := range []*change.Batch{b1, b2, b1, b2} {
		if err := tg.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if tg.copies.binary == 0 || tg.copies.text != 0 {
		t.Errorf("copies %+v: want binary ones only", tg.copies)
	}
	if rows, keys := count(t, tg, it); rows != 2000 || keys != 2000 {
		t.Errorf("%d rows, %d keys after a replayed snapshot batch: want 2000 of each", rows, keys)
	}
	done := &change.Batch{Snapshotted: []change.SnapshotDone{{Table: it, Pos: warehousetest.Pos(5)}}}
	if err := tg.Apply(ctx, done); err != nil {
		t.Fatal(err)
	}
	// Replays after the marker are skipped by the state.
	if err := tg.Apply(ctx, b1); err != nil {
		t.Fatal(err)
	}
	if rows, _ := count(t, tg, it); rows != 2000 {
		t.Errorf("%d rows after a replay past the marker, want 2000", rows)
	}
}

// TestSnapshotCutMidCopy: a snapshot batch whose COPY is cut off half-way
// (the process killed, here its context cancelled while the rows stream)
// leaves none of its rows and the table not snapshotted; the next run
// (a new target over the same database) resets it and snapshots it again,
// exactly once.
func TestSnapshotCutMidCopy(t *testing.T) {
	ctx := context.Background()
	url := newDB(t)
	tg := open(t, url, Options{})
	it := warehousetest.Items()
	if err := tg.Reset(ctx, it); err != nil {
		t.Fatal(err)
	}
	if err := tg.Apply(ctx, snapshotBatch(it, 1, 1000)); err != nil {
		t.Fatal(err)
	}
	big := snapshotBatch(it, 1001, 200_000)
	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		// Cancel once the server has received some of the rows.
		for {
			select {
			case <-stop:
				return
			default:
			}
			var n int
			_ = tg.Pool().QueryRow(ctx, `SELECT coalesce(sum(tuples_processed), 0) FROM pg_stat_progress_copy`).Scan(&n)
			if n > 0 {
				cancel()
				return
			}
		}
	}()
	t0 := time.Now()
	err := tg.Apply(cut, big)
	t.Logf("apply cut after %v: %v", time.Since(t0), err)
	close(stop)
	<-stopped
	if err == nil {
		t.Fatal("the apply was not cut (it ended before the COPY was seen in progress)")
	}
	if rows, _ := count(t, tg, it); rows != 1000 {
		t.Errorf("%d rows after the cut batch, want the 1000 committed before", rows)
	}
	tg.Close()

	tg = open(t, url, Options{})
	st, err := tg.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[it.ID()].Snapshotted {
		t.Fatalf("table snapshotted after a cut snapshot: %+v", st[it.ID()])
	}
	if err := tg.Reset(ctx, it); err != nil {
		t.Fatal(err)
	}
	all := snapshotBatch(it, 1, 3000)
	all.Snapshotted = []change.SnapshotDone{{Table: it, Pos: warehousetest.Pos(5)}}
	if err := tg.Apply(ctx, all); err != nil {
		t.Fatal(err)
	}
	if rows, keys := count(t, tg, it); rows != 3000 || keys != 3000 {
		t.Errorf("%d rows, %d keys after the snapshot again: want 3000 of each", rows, keys)
	}
	if st, err := tg.State(ctx); err != nil || !st[it.ID()].Snapshotted {
		t.Errorf("state after the snapshot again: %+v, %v", st[it.ID()], err)
	}
}

// TestStageTypes: the types binary COPY assumes for a staging table are
// the ones it has, for every column of the many-types table.
func TestStageTypes(t *testing.T) {
	ctx := context.Background()
	tg := open(t, newDB(t), Options{})
	f := warehousetest.ManyTypes("public", "many")
	err := tg.tx(ctx, func(s *session) error {
		if err := s.Exec(ctx, warehouse.CreateStageSQL(Dialect{}, "_sluice_stage_t", f.Table)); err != nil {
			return err
		}
		real, err := columnTypes(ctx, s.tx, Dialect{}.StageName("_sluice_stage_t"))
		if err != nil {
			return err
		}
		assumed := stageTypes(f.Table)
		known := 0
		for name, oid := range assumed {
			if oid != 0 {
				known++
				if real[name] != oid {
					t.Errorf("column %q: assumed type %d, has %d", name, oid, real[name])
				}
			}
		}
		if known < 10 {
			t.Errorf("only %d columns with a known type", known)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
