package events

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

func TestDecode(t *testing.T) {
	tbl, err := Table("clicks", []Column{
		{Name: "user_id", Type: "bigint"}, {Name: "n", Type: "int"}, {Name: "price", Type: "numeric(12,2)"},
		{Name: "score", Type: "double precision"}, {Name: "ok", Type: "bool"}, {Name: "url", Type: "text"},
		{Name: "day", Type: "date"}, {Name: "at", Type: "timestamptz"}, {Name: "local", Type: "timestamp"},
		{Name: "doc", Type: "jsonb"}, {Name: "missing", Type: "text"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if tbl.ID().String() != "events.clicks" || tbl.Columns[0].Name != IDColumn || len(tbl.Key) != 1 {
		t.Fatalf("table %s %+v", tbl.ID(), tbl.Columns[:2])
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 500_000_000, time.UTC)
	c, err := Decode(tbl, []byte(`{"user_id": 9007199254740993, "n": -4, "price": 1.5e1, "score": 0.25, "ok": true, "url": "/a",
		"day": "2026-12-01", "at": "2026-12-01T11:00:00+01:00", "local": "2026-12-01 10:00:00.25", "doc": {"a": [1, "x"]}, "extra": 1}`), "shardId-1", "4711", at)
	if err != nil {
		t.Fatal(err)
	}
	want := []change.Value{
		change.V(change.KindText, "shardId-1/4711"), change.V(change.KindTimestampTZ, "2026-12-01T10:00:00.5+00:00"),
		change.V(change.KindInt, "9007199254740993"), change.V(change.KindInt, "-4"), change.V(change.KindNumeric, "15"),
		change.V(change.KindFloat, "0.25"), change.V(change.KindBool, "true"), change.V(change.KindText, "/a"),
		change.V(change.KindDate, "2026-12-01"), change.V(change.KindTimestampTZ, "2026-12-01T10:00:00+00:00"),
		change.V(change.KindTimestamp, "2026-12-01T10:00:00.25"), change.V(change.KindJSON, `{"a":[1,"x"]}`), change.Null,
	}
	if c.Op != change.OpInsert || len(c.After) != len(want) {
		t.Fatalf("%v %v", c.Op, c.After)
	}
	for i := range want {
		if !c.After[i].Equal(want[i]) {
			t.Errorf("%s: %v (%s), want %v (%s)", tbl.Columns[i].Name, c.After[i], c.After[i].Kind, want[i], want[i].Kind)
		}
	}
	if shard, seq, ok := SplitID(c.After[0].Text); !ok || shard != "shardId-1" || seq != "4711" {
		t.Fatalf("SplitID: %q %q %v", shard, seq, ok)
	}
}

func TestDecodeErrors(t *testing.T) {
	tbl, err := Table("e", []Column{{Name: "n", Type: "smallint"}, {Name: "at", Type: "timestamptz"}, {Name: "s", Type: "text"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ data, want string }{
		{`[1]`, "is not a JSON object"},
		{`not json`, "is not a JSON object"},
		{`null`, "is not a JSON object"},
		{`{"n": 40000}`, "field n: 40000 is not a smallint"},
		{`{"n": 1.5}`, "field n: 1.5 is not a smallint"},
		{`{"n": "1"}`, "field n: want a JSON integer for smallint, got a string"},
		{`{"at": "yesterday"}`, `field at: "yesterday" is not an RFC 3339 timestamp`},
		{`{"s": 5}`, "field s: want a JSON string for text, got a number"},
	} {
		_, err := Decode(tbl, []byte(c.data), "0", "1", time.Time{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "events.e") {
			t.Errorf("%s: %v, want %q", c.data, err, c.want)
		}
	}
}

func TestTableErrors(t *testing.T) {
	for _, c := range []struct {
		cols []Column
		want string
	}{
		{nil, "declare its fields under columns"},
		{[]Column{{Name: "event_id", Type: "text"}}, "column event_id is sluice's own"},
		{[]Column{{Name: "a", Type: "text"}, {Name: "A", Type: "int"}}, "column A is declared twice"},
		{[]Column{{Name: "a", Type: "money"}}, `type "money" is not one an event field can have`},
		{[]Column{{Name: "a", Type: "numeric(2,5)"}}, "want numeric(precision, scale)"},
		{[]Column{{Type: "text"}}, "a column without a name"},
	} {
		if _, err := Table("s.e", c.cols); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.cols, err, c.want)
		}
	}
	if tbl, err := Table("x", []Column{{Name: "p", Type: "Numeric( 10 , 2 )"}}); err != nil || tbl.Columns[2].Type.Name != "numeric(10,2)" {
		t.Fatalf("%v %v", tbl, err)
	}
}
