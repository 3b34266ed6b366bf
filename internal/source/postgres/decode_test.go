package postgres

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

var (
	tInt   = &typeInfo{oid: 23, kind: change.KindInt}
	tText  = &typeInfo{oid: 25, kind: change.KindText}
	tBytes = &typeInfo{oid: 17, kind: change.KindBytes}
	tTS    = &typeInfo{oid: 1184, kind: change.KindTimestampTZ}
	tNum   = &typeInfo{oid: 1700, kind: change.KindNumeric}
	tBool  = &typeInfo{oid: 16, kind: change.KindBool}
	tJSON  = &typeInfo{oid: 3802, kind: change.KindJSON}
)

func TestParseArray(t *testing.T) {
	for _, c := range []struct {
		in, want string
		elem     *typeInfo
		delim    byte
	}{
		{`{}`, `[]`, tInt, ','},
		{`{1,NULL,3}`, `[1,NULL,3]`, tInt, ','},
		{`{{1,2},{NULL,4}}`, `[[1,2],[NULL,4]]`, tInt, ','},
		{`[0:1]={5,6}`, `[5,6]`, tInt, ','},
		{`{"a,b","q\"x","NULL",NULL,"","b\\s"," s "}`, `[a,b,q"x,NULL,NULL,,b\s, s ]`, tText, ','},
		{`{"(1,1),(0,0)";"(2,2),(1,1)"}`, `[(1,1),(0,0),(2,2),(1,1)]`, tText, ';'},
		{`{"\\x00ff",NULL}`, `[00ff,NULL]`, tBytes, ','},
		{`{"2024-01-02 03:04:05+00"}`, `[2024-01-02T03:04:05+00:00]`, tTS, ','},
		{`{t,f}`, `[true,false]`, tBool, ','},
	} {
		v, err := parseArray(c.in, c.elem, c.delim)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if v.String() != c.want {
			t.Errorf("%s: got %s, want %s", c.in, v, c.want)
		}
	}
	for _, bad := range []string{`{1,2`, `1,2}`, `{"a}`, `{1}x`, `[1:2]{1,2}`} {
		if _, err := parseArray(bad, tInt, ','); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestTimestamps(t *testing.T) {
	for in, want := range map[string]string{
		"2024-01-02 03:04:05.123456":  "2024-01-02T03:04:05.123456",
		"2024-01-02 03:04:05+00":      "2024-01-02T03:04:05+00:00",
		"0044-03-15 12:00:00+00 BC":   "0044-03-15T12:00:00+00:00 BC",
		"infinity":                    "infinity",
		"-infinity":                   "-infinity",
		"2024-01-02 03:04:05.5+05:30": "2024-01-02T03:04:05.5+05:30",
		"12345-01-02 03:04:05+00":     "12345-01-02T03:04:05+00:00",
	} {
		tz := in[len(in)-3:] != "456"
		if got := isoTimestamp(in, tz); got != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
	if got := normOffset("12:00:00+05", 0); got != "12:00:00+05:00" {
		t.Errorf("timetz: %s", got)
	}
}

func TestCopyLine(t *testing.T) {
	f, n, err := splitCopyLine(`1	\N	a\tb\\c\nd	\x41\101	`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1", "", "a\tb\\c\nd", "AA", ""}
	if len(f) != len(want) || !n[1] || n[0] || n[4] {
		t.Fatalf("fields %q nulls %v", f, n)
	}
	for i := range want {
		if f[i] != want[i] {
			t.Errorf("field %d: %q, want %q", i, f[i], want[i])
		}
	}
	var lines []string
	w := &lineWriter{line: func(s string) error { lines = append(lines, s); return nil }}
	_, _ = w.Write([]byte("a\tb\nc"))
	_, _ = w.Write([]byte("d\n"))
	if err := w.finish(); err != nil || len(lines) != 2 || lines[1] != "cd" {
		t.Errorf("lines %q, %v", lines, err)
	}
}

// insertMessage builds a pgoutput insert message as the server sends it.
func insertMessage(relid uint32, vals ...*string) []byte {
	b := []byte{'I', 0, 0, 0, 0, 'N', 0, 0}
	binary.BigEndian.PutUint32(b[1:], relid)
	binary.BigEndian.PutUint16(b[6:], uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			b = append(b, 'n')
			continue
		}
		b = append(b, 't', 0, 0, 0, 0)
		binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(*v)))
		b = append(b, *v...)
	}
	return b
}

func sp(s string) *string { return &s }

var benchTypes = []*typeInfo{tInt, tText, tTS, tNum, tBool, tJSON, tText}

var benchTable = &change.Table{Schema: "public", Name: "orders", Version: 1, Key: []int{0}, Columns: []change.Column{
	{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
	{Name: "customer", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	{Name: "created_at", Type: change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}, Nullable: true},
	{Name: "amount", Type: change.Type{Name: "numeric(12,2)", Kind: change.KindNumeric}, Nullable: true},
	{Name: "paid", Type: change.Type{Name: "boolean", Kind: change.KindBool}, Nullable: true},
	{Name: "meta", Type: change.Type{Name: "jsonb", Kind: change.KindJSON}, Nullable: true},
	{Name: "note", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
}}

var benchMsg = insertMessage(16384, sp("123456"), sp("Jane Müller"), sp("2024-05-06 07:08:09.123456+00"),
	sp("1234.50"), sp("t"), sp(`{"source": "web", "tags": ["a", "b"]}`), nil)

func TestDecodeRow(t *testing.T) {
	lookup := func(uint32) []*typeInfo { return benchTypes }
	r, ok, err := decodeRow(string(benchMsg), lookup)
	if err != nil || !ok || r.op != change.OpInsert || r.relid != 16384 {
		t.Fatalf("%+v %v %v", r, ok, err)
	}
	if r.after[2].Text != "2024-05-06T07:08:09.123456+00:00" || r.after[4].Text != "true" || !r.after[6].IsNull() {
		t.Errorf("after = %v", r.after)
	}
	if _, _, err := decodeRow(string(benchMsg[:20]), lookup); err == nil {
		t.Error("truncated message: no error")
	}
}

// FuzzDecodeRow: no input may panic the row decoder.
func FuzzDecodeRow(f *testing.F) {
	f.Add(benchMsg)
	f.Add([]byte{'U', 0, 0, 0, 1, 'K', 0, 1, 'n', 'N', 0, 1, 't', 0, 0, 0, 1, '1'})
	f.Add([]byte{'D', 0, 0, 0, 1, 'O', 0, 1, 'u'})
	lookup := func(uint32) []*typeInfo { return benchTypes }
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		_, _, _ = decodeRow(string(b), lookup)
	})
}

// BenchmarkDecodeEncode is the hot path of streaming: a pgoutput insert
// message to a change.Change to its JSON change record.
func BenchmarkDecodeEncode(b *testing.B) {
	lookup := func(uint32) []*typeInfo { return benchTypes }
	meta := change.RecordMeta{Pipeline: "bench", Database: "db", Emitted: time.Now()}
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(benchMsg)))
	b.ReportAllocs()
	for b.Loop() {
		r, _, err := decodeRow(string(benchMsg), lookup)
		if err != nil {
			b.Fatal(err)
		}
		c := change.Change{Op: r.op, Table: benchTable, After: r.after, Pos: change.Position{CommitLSN: 1 << 32, LSN: 1 << 31}, TxID: 7, CommitTime: meta.Emitted}
		buf = change.AppendRecord(buf[:0], &c, meta)
	}
}

// FuzzParseArray: no array literal may panic the parser, and a literal it
// accepts gives an array value.
func FuzzParseArray(f *testing.F) {
	for _, s := range []string{`{}`, `{1,NULL}`, `{{"a\"b",c},{NULL,""}}`, `[0:1]={1,2}`, `{"\\x00"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, elem := range []*typeInfo{tText, tInt, tBytes, tTS} {
			v, err := parseArray(s, elem, ',')
			if err == nil && v.Kind != change.KindArray {
				t.Fatalf("%q: kind %v", s, v.Kind)
			}
		}
		_, _, _ = splitCopyLine(s, nil, nil)
	})
}
