package change

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func customers() *Table {
	return &Table{Schema: "public", Name: "customers", Version: 1, Key: []int{0}, Columns: []Column{
		{Name: "userid", Type: Type{OID: 23, Name: "integer", Kind: KindInt}, Key: true},
		{Name: "first_name", Type: Type{OID: 1043, Name: "character varying(63)", Kind: KindText}},
		{Name: "last_name", Type: Type{OID: 1043, Name: "character varying(63)", Kind: KindText}},
		{Name: "phone", Type: Type{OID: 1043, Name: "character varying(63)", Kind: KindText}, Nullable: true},
	}}
}

func everyKind() *Table {
	return &Table{Schema: "public", Name: "Every \"Kind\"", Version: 1, Key: []int{0}, Columns: []Column{
		{Name: "id", Type: Type{Name: "bigint", Kind: KindInt}, Key: true},
		{Name: "b", Type: Type{Name: "boolean", Kind: KindBool}, Nullable: true},
		{Name: "f", Type: Type{Name: "double precision", Kind: KindFloat}, Nullable: true},
		{Name: "fnan", Type: Type{Name: "real", Kind: KindFloat}, Nullable: true},
		{Name: "n", Type: Type{Name: "numeric(40,20)", Kind: KindNumeric}, Nullable: true},
		{Name: "t", Type: Type{Name: "text", Kind: KindText}, Nullable: true},
		{Name: "by", Type: Type{Name: "bytea", Kind: KindBytes}, Nullable: true},
		{Name: "d", Type: Type{Name: "date", Kind: KindDate}, Nullable: true},
		{Name: "tm", Type: Type{Name: "time without time zone", Kind: KindTime}, Nullable: true},
		{Name: "ts", Type: Type{Name: "timestamp without time zone", Kind: KindTimestamp}, Nullable: true},
		{Name: "tz", Type: Type{Name: "timestamp with time zone", Kind: KindTimestampTZ}, Nullable: true},
		{Name: "j", Type: Type{Name: "jsonb", Kind: KindJSON}, Nullable: true},
		{Name: "a", Type: Type{Name: "integer[]", Kind: KindArray, Elem: KindInt, Base: "integer"}, Nullable: true},
		{Name: "big", Type: Type{Name: "text", Kind: KindText}, Nullable: true},
	}}
}

func everyKindRow() []Value {
	return []Value{
		V(KindInt, "-9223372036854775808"),
		V(KindBool, "true"),
		V(KindFloat, "1.2345678901234567e-300"),
		V(KindFloat, "NaN"),
		V(KindNumeric, "12345678901234567890.12345678901234567890"),
		V(KindText, "tab\there \"quoted\" \\ back, nul-free unicode: ß 漢字 \u2028 \x01"),
		V(KindBytes, "\x00\x01\xffzero"),
		V(KindDate, "0044-03-15 BC"),
		V(KindTime, "23:59:59.999999"),
		V(KindTimestamp, "infinity"),
		V(KindTimestampTZ, "2024-02-29T12:00:00.5+00:00"),
		V(KindJSON, `{"a": [1, 2.50, "x"], "b": null}`),
		Array(Array(V(KindInt, "1"), Null), Array(V(KindInt, "3"), V(KindInt, "4"))),
		Unchanged,
	}
}

var meta = RecordMeta{Pipeline: "demo", Database: "app", Emitted: time.UnixMilli(1767225600123).UTC()}

func TestRecordGolden(t *testing.T) {
	cases := map[string]*Change{
		"customers_insert": {Op: OpInsert, Table: customers(), After: []Value{V(KindInt, "1"), V(KindText, "Ada"), V(KindText, "Lovelace"), Null},
			Pos: Position{CommitLSN: 0x16B37A0, LSN: 0x16B3748}, TxID: 750, CommitTime: time.UnixMilli(1767225600000).UTC()},
		"customers_delete": {Op: OpDelete, Table: customers(), Before: []Value{V(KindInt, "1"), Null, Null, Null},
			Pos: Position{CommitLSN: 0x16B3900, LSN: 0x16B38A0}, TxID: 751, CommitTime: time.UnixMilli(1767225601000).UTC()},
		"every_kind_update": {Op: OpUpdate, Table: everyKind(), After: everyKindRow(),
			Pos: Position{CommitLSN: 1 << 40, LSN: 1<<40 - 8}, TxID: 4294967295, CommitTime: time.UnixMilli(1767225602000).UTC()},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := AppendRecord(nil, c, meta)
			if !json.Valid(got) {
				t.Fatalf("record is not valid JSON: %s", got)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("record differs from %s:\n%s", path, pretty.Bytes())
			}

			r, err := DecodeRecord(got)
			if err != nil {
				t.Fatalf("decode own record: %v", err)
			}
			d := r.Change
			if d.Op != c.Op || d.Pos != c.Pos || d.TxID != c.TxID || !d.CommitTime.Equal(c.CommitTime) {
				t.Errorf("header round trip: got %v %v %d %v", d.Op, d.Pos, d.TxID, d.CommitTime)
			}
			if !rowsEqual(d.Before, c.Before) || !rowsEqual(d.After, c.After) {
				t.Errorf("rows round trip:\n got %v %v\nwant %v %v", d.Before, d.After, c.Before, c.After)
			}
			if !d.Table.SameShape(stripOIDs(c.Table)) {
				t.Errorf("schema round trip: got %+v", d.Table)
			}
			if r.Meta != meta {
				t.Errorf("meta round trip: got %+v", r.Meta)
			}
		})
	}
}

// stripOIDs drops what the record does not carry.
func stripOIDs(t *Table) *Table {
	u := *t
	u.Columns = append([]Column(nil), t.Columns...)
	for i := range u.Columns {
		u.Columns[i].Type.OID = 0
	}
	return &u
}

func rowsEqual(a, b []Value) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		// Control characters and U+2028 round-trip exactly; nothing is lost.
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func TestDecodeRecordErrors(t *testing.T) {
	good := string(AppendRecord(nil, &Change{Op: OpInsert, Table: customers(), After: []Value{V(KindInt, "1"), V(KindText, "a"), V(KindText, "b"), Null}, Pos: Position{CommitLSN: 2, LSN: 1}}, meta))
	cases := map[string]struct{ in, want string }{
		"not utf8":     {"\xff\xfe", "not UTF-8"},
		"not json":     {"hello", "invalid character"},
		"bad op":       {`{"op":"x"}`, `unknown op "x"`},
		"no source":    {`{"op":"c","after":{}}`, "missing source.schema"},
		"no lsn":       {`{"op":"c","after":{},"source":{"schema":"s","table":"t"}}`, "missing source.lsn"},
		"no columns":   {`{"op":"c","after":{},"source":{"schema":"s","table":"t","lsn":1,"commit_lsn":1}}`, "missing columns"},
		"unknown col":  {replace(good, `"phone":null`, `"phone":null,"fax":1`), `column "fax" is not among the columns`},
		"bad int":      {replace(good, `"userid":1`, `"userid":"one"`), "want an integer"},
		"insert empty": {replace(good, `"after":{`, `"x":{`), "without after"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeRecord([]byte(tc.in))
			if err == nil {
				t.Fatal("want an error")
			}
			if !errors.Is(err, ErrBadRecord) {
				t.Errorf("error %v does not wrap ErrBadRecord", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func replace(s, old, new string) string {
	i := bytes.Index([]byte(s), []byte(old))
	if i < 0 {
		panic("no " + old + " in " + s)
	}
	return s[:i] + new + s[i+len(old):]
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(AppendRecord(nil, &Change{Op: OpUpdate, Table: everyKind(), After: everyKindRow(), Pos: Position{CommitLSN: 9, LSN: 8}}, meta))
	f.Add([]byte(`{"op":"d","before":{"userid":1},"source":{"schema":"s","table":"t","lsn":1,"commit_lsn":1},"key":["userid"],"columns":[{"name":"userid","kind":"int"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRecord(data)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error does not wrap ErrBadRecord: %v", err)
			}
			return
		}
		// Whatever decodes must encode and decode to the same change.
		again, err := DecodeRecord(AppendRecord(nil, &r.Change, r.Meta))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !rowsEqual(again.Change.After, r.Change.After) || !rowsEqual(again.Change.Before, r.Change.Before) {
			t.Fatalf("round trip changed rows: %v -> %v", r.Change.After, again.Change.After)
		}
	})
}

func BenchmarkAppendRecord(b *testing.B) {
	c := &Change{Op: OpInsert, Table: customers(), After: []Value{V(KindInt, "123456"), V(KindText, "Ada"), V(KindText, "Lovelace"), V(KindText, "+44 20 7946 0000")}, Pos: Position{CommitLSN: 1 << 32, LSN: 1<<32 - 64}, TxID: 1234, CommitTime: time.Now()}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRecord(buf[:0], c, meta)
	}
	b.SetBytes(int64(len(buf)))
}

// TestJSONNullRoundTrip: a json value that is the JSON literal null stays
// distinct from SQL NULL through the record, in both rows, while the
// envelope itself shows null for both (as SQL over it expects).
func TestJSONNullRoundTrip(t *testing.T) {
	tbl := &Table{Schema: "public", Name: "docs", Key: []int{0}, Columns: []Column{
		{Name: "id", Type: Type{Name: "integer", Kind: KindInt}, Key: true},
		{Name: "j", Type: Type{Name: "jsonb", Kind: KindJSON}, Nullable: true},
		{Name: "k", Type: Type{Name: "json", Kind: KindJSON}, Nullable: true},
	}}
	jn := V(KindJSON, "null")
	c := &Change{Op: OpUpdate, Table: tbl, Before: []Value{V(KindInt, "1"), Null, jn}, After: []Value{V(KindInt, "1"), jn, Null}, Pos: Position{CommitLSN: 9, LSN: 8}}
	rec := AppendRecord(nil, c, meta)
	if !bytes.Contains(rec, []byte(`"after":{"id":1,"j":null,"k":null}`)) || !bytes.Contains(rec, []byte(`"json_null":{"before":["k"],"after":["j"]}`)) {
		t.Fatalf("record: %s", rec)
	}
	got, err := DecodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Change.Before[1].IsNull() || !got.Change.Before[2].Equal(jn) || !got.Change.After[1].Equal(jn) || !got.Change.After[2].IsNull() {
		t.Errorf("decoded before %v after %v", got.Change.Before, got.Change.After)
	}
	// No JSON null, no json_null: records stay as they were.
	plain := AppendRecord(nil, &Change{Op: OpInsert, Table: tbl, After: []Value{V(KindInt, "2"), Null, V(KindJSON, `{"a":null}`)}, Pos: Position{CommitLSN: 9, LSN: 8}}, meta)
	if bytes.Contains(plain, []byte("json_null")) {
		t.Errorf("record without JSON null: %s", plain)
	}
	if _, err := DecodeRecord([]byte(replace(string(rec), `"after":["j"]`, `"after":["id"]`))); err == nil || !bytes.Contains([]byte(err.Error()), []byte(`json_null column "id"`)) {
		t.Errorf("json_null naming a non-json column: %v", err)
	}
}
