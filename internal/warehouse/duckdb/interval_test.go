package duckdb

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse/warehousetest"
)

func TestParseInterval(t *testing.T) {
	cases := map[string]interval{
		"00:00:00":                                  {},
		"1 year 2 mons 3 days 04:05:06.789":         {14, 3, 4*3600e6 + 5*60e6 + 6789000},
		"-1 years -2 mons +3 days -04:05:06.000001": {-14, 3, -(4*3600e6 + 5*60e6 + 6000001)},
		"1 mon":                                {1, 0, 0},
		"-00:00:01":                            {0, 0, -1e6},
		"100:00:00":                            {0, 0, 100 * 3600e6},
		"@ 1 year 2 mons 4 hours 5.5 secs ago": {-14, 0, -(4*3600e6 + 5.5e6)},
		"P1Y2M3DT4H5M6.5S":                     {14, 3, 4*3600e6 + 5*60e6 + 6.5e6},
		"P-1Y-2M3DT-4H-5M-6.000001S":           {-14, 3, -(4*3600e6 + 5*60e6 + 6000001)},
		"PT0S":                                 {},
	}
	for in, want := range cases {
		got, err := parseInterval(in)
		if err != nil || got != want {
			t.Errorf("parseInterval(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"1 fortnight", "abc", "1 year 2", "P1X"} {
		if _, err := parseInterval(bad); err == nil {
			t.Errorf("parseInterval(%q): no error", bad)
		}
	}
}

func TestMultiDimensionalArray(t *testing.T) {
	tg := open(t, ":memory:", Options{})
	tbl := &change.Table{Schema: "public", Name: "grid", Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "cells", Type: change.Type{Name: "integer[]", Kind: change.KindArray, Elem: change.KindInt, Base: "integer"}},
	}}
	one := change.V(change.KindInt, "1")
	err := tg.Apply(context.Background(), &change.Batch{Changes: []change.Change{{Op: change.OpInsert, Table: tbl, Pos: warehousetest.Pos(1),
		After: []change.Value{one, change.Array(change.Array(one, one), change.Array(one, one))}}}})
	if err == nil || !strings.Contains(err.Error(), `column "cells" of public.grid`) || !strings.Contains(err.Error(), "multi-dimensional") {
		t.Fatalf("got %v", err)
	}
}

// FuzzParseInterval: any text either parses or errors, never panics, and
// what Postgres prints in one style parses to what it prints in another.
func FuzzParseInterval(f *testing.F) {
	for _, s := range []string{"1 year 2 mons 3 days 04:05:06.789", "@ 1 year ago", "P1Y2M3DT4H5M6.5S", "-00:00:01", "", "P", "1 :"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		iv, err := parseInterval(s)
		if err != nil {
			return
		}
		back, err := parseInterval(iv.iso())
		if err != nil || back != iv {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, iv, iv.iso(), back, err)
		}
	})
}
