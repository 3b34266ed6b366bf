package stream

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

var itemsTable = &change.Table{
	Schema: "public", Name: "items", Version: 1,
	Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "bigint", Kind: change.KindInt}, Key: true},
		{Name: "val", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	},
	Key: []int{0},
}

func row(id, val string) []change.Value {
	return []change.Value{change.V(change.KindInt, id), change.V(change.KindText, val)}
}

func at(n int) change.Position { return change.Position{CommitLSN: change.LSN(n), LSN: change.LSN(n)} }

func newTestProducer(t *testing.T, mod func(*ProducerConfig)) *Producer {
	t.Helper()
	cfg := ProducerConfig{Transport: "Test", Stream: "s", StateFile: filepath.Join(t.TempDir(), "state.json"), MaxRecordBytes: 1 << 20,
		DeadLetterKey: "stream.test.dead_letter_file", Now: func() time.Time { return time.Unix(1_750_000_000, 0) }}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// decoded is a plan's records, decoded, segment by segment.
func decoded(t *testing.T, pl *Plan) [][]change.Change {
	t.Helper()
	var out [][]change.Change
	for _, seg := range pl.Segments {
		var cs []change.Change
		for _, r := range seg.Records {
			d, err := change.DecodeRecord(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			if pk := string(AppendPartitionKey(nil, &d.Change)); pk != r.Key {
				t.Fatalf("record under key %q, its change's key is %q", r.Key, pk)
			}
			cs = append(cs, d.Change)
		}
		if seg.Everywhere && (len(cs) != 1 || cs[0].Op != change.OpTruncate) {
			t.Fatalf("an everywhere segment holds %+v, want one truncate", cs)
		}
		out = append(out, cs)
	}
	return out
}

// One batch: a key change is split in two, a truncate is a barrier that
// goes everywhere, and a committed plan's changes are skipped when the
// batch comes again (a replay after a restart, with a new producer on the
// same state file).
func TestProducerPlansSplitsBarriersAndSkipsReplays(t *testing.T) {
	p := newTestProducer(t, nil)
	b := &change.Batch{Changes: []change.Change{
		{Op: change.OpInsert, Table: itemsTable, After: row("1", "a"), Pos: at(10)},
		{Op: change.OpUpdate, Table: itemsTable, Before: row("1", "a"), After: row("2", "a"), Pos: at(11)},
		{Op: change.OpTruncate, Table: itemsTable, Pos: at(12)},
		{Op: change.OpInsert, Table: itemsTable, After: row("3", "c"), Pos: at(13)},
	}}
	pl, err := p.Prepare(b)
	if err != nil {
		t.Fatal(err)
	}
	segs := decoded(t, pl)
	if len(segs) != 3 || len(segs[0]) != 3 || !pl.Segments[1].Everywhere || len(segs[2]) != 1 || pl.Records != 5 {
		t.Fatalf("segments %+v, want [insert, delete, insert] [truncate] [insert]", segs)
	}
	if segs[0][1].Op != change.OpDelete || segs[0][2].Op != change.OpInsert || segs[0][2].After[0].Text != "2" {
		t.Fatalf("the key change is %+v, want a delete of 1 and an insert of 2", segs[0][1:])
	}
	if err := p.Commit(pl); err != nil {
		t.Fatal(err)
	}
	again := newTestProducer(t, func(c *ProducerConfig) { c.StateFile = p.cfg.StateFile })
	pl, err = again.Prepare(b)
	if err != nil || pl.Records != 0 {
		t.Fatalf("a replayed batch planned %d records (%v), want none", pl.Records, err)
	}
	if _, err := NewProducer(ProducerConfig{Transport: "Test", Stream: "other", StateFile: p.cfg.StateFile, MaxRecordBytes: 1}); err == nil || !strings.Contains(err.Error(), "belongs to stream") {
		t.Fatalf("another stream's state file: %v", err)
	}
}

// A table reset before its snapshot gets a reset marker (a truncate at the
// snapshot's position) before its first snapshot row only; an uncommitted
// plan (a failed send) keeps the marker for the retry.
func TestProducerResetMarker(t *testing.T) {
	p := newTestProducer(t, nil)
	if err := p.Reset(t.Context(), itemsTable); err != nil {
		t.Fatal(err)
	}
	snap := &change.Batch{Changes: []change.Change{
		{Op: change.OpRead, Table: itemsTable, After: row("1", "a"), Pos: at(50)},
		{Op: change.OpRead, Table: itemsTable, After: row("2", "b"), Pos: at(50)},
	}}
	for range 2 { // the first plan is not committed
		pl, err := p.Prepare(snap)
		if err != nil {
			t.Fatal(err)
		}
		segs := decoded(t, pl)
		if len(segs) != 2 || segs[0][0].Pos != at(50) || len(segs[1]) != 2 {
			t.Fatalf("segments %+v, want [marker] [read, read]", segs)
		}
	}
	pl, _ := p.Prepare(snap)
	if err := p.Commit(pl); err != nil {
		t.Fatal(err)
	}
	if pl, _ = p.Prepare(snap); len(pl.Segments) != 1 || pl.Segments[0].Everywhere {
		t.Fatalf("after a committed marker: %+v, want the rows alone", decoded(t, pl))
	}
}

// A keyless table's partition key is the whole row: equal rows share it.
func TestProducerKeylessKeyIsTheRow(t *testing.T) {
	events := &change.Table{Schema: "public", Name: "events", Version: 1, Columns: []change.Column{
		{Name: "kind", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
		{Name: "n", Type: change.Type{Name: "integer", Kind: change.KindInt}, Nullable: true},
	}}
	ev := func(k, n string) []change.Value {
		return []change.Value{change.V(change.KindText, k), change.V(change.KindInt, n)}
	}
	a := AppendPartitionKey(nil, &change.Change{Op: change.OpInsert, Table: events, After: ev("click", "1")})
	b := AppendPartitionKey(nil, &change.Change{Op: change.OpDelete, Table: events, Before: ev("click", "1")})
	c := AppendPartitionKey(nil, &change.Change{Op: change.OpInsert, Table: events, After: ev("click", "2")})
	if string(a) != `public.events:"click",1` || string(a) != string(b) || string(a) == string(c) {
		t.Fatalf("keyless partition keys %s %s %s", a, b, c)
	}
}

// Over the limit: an error naming the key and the fix, or a dead letter on
// disk after SetAside, with the rest planned.
func TestProducerRecordOverTheLimit(t *testing.T) {
	big := change.Change{Op: change.OpInsert, Table: itemsTable, After: row("7", strings.Repeat("x", 2000)), Pos: at(5)}
	small := change.Change{Op: change.OpInsert, Table: itemsTable, After: row("8", "y"), Pos: at(6)}
	p := newTestProducer(t, func(c *ProducerConfig) { c.MaxRecordBytes = 1000 })
	_, err := p.Prepare(&change.Batch{Changes: []change.Change{big, small}})
	var tooLarge *RecordTooLargeError
	if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), "key [7]") || !strings.Contains(err.Error(), "stream.test.dead_letter_file") {
		t.Fatalf("Prepare: %v, want a RecordTooLargeError naming the key and the setting", err)
	}
	dlq := filepath.Join(t.TempDir(), "dead.jsonl")
	p = newTestProducer(t, func(c *ProducerConfig) { c.MaxRecordBytes, c.DeadLetterFile = 1000, dlq })
	pl, err := p.Prepare(&change.Batch{Changes: []change.Change{big, small}})
	if err != nil || pl.Records != 1 {
		t.Fatalf("Prepare with a dead-letter file: %d records, %v", pl.Records, err)
	}
	if err := p.SetAside(pl); err != nil {
		t.Fatal(err)
	}
	if err := p.SetAside(pl); err != nil { // a retried send
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(dlq); strings.Count(string(data), "\n") != 1 || !strings.Contains(string(data), `"key":"[7]"`) || p.DeadLettered() != 1 {
		t.Fatalf("dead-letter file:\n%s", data)
	}
}

func TestSpreadIsStable(t *testing.T) {
	// Pinned values: a topic written by one version is partitioned the same
	// way by the next.
	for pk, want := range map[string]int{"public.items:1": 3, "public.items:2": 2, "": 1} {
		if got := Spread(pk, 6); got != want {
			t.Errorf("Spread(%q, 6) = %d", pk, got)
		}
	}
	if Spread("anything", 1) != 0 {
		t.Error("one lane is lane 0")
	}
}
