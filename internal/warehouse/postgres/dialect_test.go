package postgres

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

// TestGoldenStageMerge pins the Postgres merge (warehouse.MergeSQL's
// statements planned by key, see StageMergeSQL) in
// testdata/postgres_merge.golden; go test -update rewrites it.
func TestGoldenStageMerge(t *testing.T) {
	f := warehousetest.ManyTypes("public", "many")
	target := change.TableID{Schema: "public", Name: "many"}
	var b strings.Builder
	section := func(title string, stmts ...string) {
		b.WriteString("-- " + title + "\n")
		for _, s := range stmts {
			b.WriteString(s + ";\n")
		}
		b.WriteString("\n")
	}
	d := Dialect{}
	section("merge", d.StageMergeSQL(target, "_sluice_stage_1", f.Table, nil, false)...)
	section("merge with unchanged TOAST values in columns t and jb", d.StageMergeSQL(target, "_sluice_stage_1", f.Table, []int{9, 21}, false)...)
	section("append (every key new)", d.StageMergeSQL(target, "_sluice_stage_1", f.Table, nil, true)...)
	got := b.String()
	path := filepath.Join("testdata", "postgres_merge.golden")
	if fl := flag.Lookup("update"); fl != nil && fl.Value.String() == "true" {
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
