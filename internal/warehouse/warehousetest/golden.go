package warehousetest

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Golden checks the SQL a dialect generates for the many-types table (DDL,
// an ALTER, the merge with and without unchanged values, the checksum and
// bucket queries, the state tables) against testdata/<name>.golden, so a
// reviewer reads the SQL that will run. go test -update rewrites it; the
// calling test package defines the -update flag (as Go test packages
// usually do), so that two suites in one binary cannot define it twice.
func Golden(t *testing.T, d warehouse.Dialect, name string) {
	f := ManyTypes("public", "many")
	target := change.TableID{Schema: "public", Name: "many"}
	var b strings.Builder
	section := func(title string, stmts ...string) {
		b.WriteString("-- " + title + "\n")
		for _, s := range stmts {
			b.WriteString(s + ";\n")
		}
		b.WriteString("\n")
	}
	section("state tables", warehouse.SetupSQL()...)
	section("create table", warehouse.CreateTableSQL(d, target, f.Table))
	v2 := *f.Table
	v2.Columns = append([]change.Column{}, f.Table.Columns[:len(f.Table.Columns)-1]...)
	v2.Columns[1].Type = change.Type{Name: "bigint", Kind: change.KindInt}
	v2.Columns = append(v2.Columns, change.Column{Name: "added", Type: change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}, Nullable: true})
	missing := change.Array(change.V(change.KindBytes, "\x01\xff"), change.Null)
	v2.Columns = append(v2.Columns, change.Column{Name: "added_with_default", Type: change.Type{Name: "bytea[]", Kind: change.KindArray, Elem: change.KindBytes, Base: "bytea"}, Nullable: true, Missing: &missing})
	alter, err := warehouse.AlterTableSQL(d, target, f.Table, &v2)
	if err != nil {
		t.Fatal(err)
	}
	section("alter table: i2 smallint -> bigint, ajb dropped, added timestamptz added, added_with_default bytea[] added with a fast default", alter...)
	section("staging table", warehouse.CreateStageSQL(d, "_sluice_stage_1", f.Table))
	section("merge", warehouse.StageMergeSQL(d, target, "_sluice_stage_1", f.Table, nil, false)...)
	section("merge with unchanged TOAST values in columns t and jb", warehouse.StageMergeSQL(d, target, "_sluice_stage_1", f.Table, []int{9, 21}, false)...)
	section("append (every key new)", warehouse.StageMergeSQL(d, target, "_sluice_stage_1", f.Table, nil, true)...)
	section("checksums, 16 buckets", warehouse.ChecksumSQL(d, target, f.Table, 16))
	section("bucket keys, bucket 3 of 16, first 20", warehouse.BucketKeysSQL(d, target, f.Table, 16, 3, 20))
	got := b.String()
	path := filepath.Join("testdata", name+".golden")
	if f := flag.Lookup("update"); f != nil && f.Value.String() == "true" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("generated SQL differs from %s (run go test -update and review the diff):\n%s", path, got)
	}
}
