package redshift

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

func docs() *change.Table {
	return &change.Table{Schema: "app", Name: "docs", Version: 1, Key: []int{0}, Columns: []change.Column{
		{Name: "id", Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: true},
		{Name: "body", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
		{Name: "raw", Type: change.Type{Name: "bytea", Kind: change.KindBytes}, Nullable: true},
		{Name: "doc", Type: change.Type{Name: "json", Kind: change.KindJSON}, Nullable: true},
		{Name: "docb", Type: change.Type{Name: "jsonb", Kind: change.KindJSON}, Nullable: true},
	}}
}

// docRecord is the change record of an insert into docs.
func docRecord(id int, body, raw, doc, docb string) (change.Change, []byte) {
	v := func(k change.Kind, s string) change.Value {
		if s == "" {
			return change.Null
		}
		return change.V(k, s)
	}
	c := change.Change{Op: change.OpInsert, Table: docs(), Pos: change.Position{CommitLSN: change.LSN(100 + id), LSN: change.LSN(90 + id)}, CommitTime: time.Unix(1700000000, 0),
		After: []change.Value{change.V(change.KindInt, itoa(id)), v(change.KindText, body), v(change.KindBytes, raw), v(change.KindJSON, doc), v(change.KindJSON, docb)}}
	return c, change.AppendRecord(nil, &c, change.RecordMeta{Pipeline: "test", Database: "src", Emitted: time.Unix(1700000000, 0)})
}

// What JSON_PARSE refuses by default: strings over 65,535 bytes and keys
// repeated in an object.
// https://docs.aws.amazon.com/redshift/latest/dg/super-configurations.html
// https://docs.aws.amazon.com/redshift/latest/dg/limitations-super.html
func TestRefuseRecord(t *testing.T) {
	long := strings.Repeat("x", maxJSONString+1)
	for _, tc := range []struct {
		name                 string
		body, raw, doc, docb string
		want                 string
	}{
		{"small", "hello", "\x00\x01", `{"a": 1}`, `{"a": 1}`, ""},
		{"text of 65,535 bytes", strings.Repeat("é", maxJSONString/2) + "x", "", "", "", ""},
		{"text over 64 KB", long, "", "", "", `a string of 65536 bytes at "after.body"`},
		{"escapes count decoded", strings.Repeat("\n", 40000), "", "", "", ""},
		{"bytea of 49,152 bytes", "", strings.Repeat("b", 49152), "", "", "a string of 65536 bytes"},
		{"bytea of 49,149 bytes", "", strings.Repeat("b", 49149), "", "", ""},
		{"long string inside jsonb", "", "", "", `{"k": "` + long + `"}`, `a string of 65536 bytes at "after.docb.k"`},
		{"repeated key in json", "", "", `{"a": 1, "b": {"c": 2, "c": 3}}`, "", `the key "c" twice in one object at "after.doc.b.c"`},
		{"same key in sibling objects", "", "", `[{"a": 1}, {"a": 2}]`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := docRecord(1, tc.body, tc.raw, tc.doc, tc.docb)
			got := RefuseRecord(&c, rec)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("RefuseRecord = %q, want %q", got, tc.want)
			}
		})
	}
}

// Keys differing only in trailing blanks are one key to Redshift: such a
// key is refused at the producer, except character(n), padded alike.
// https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html#r_Character_types-significance-of-trailing-blanks
func TestRefuseKeyWithTrailingBlanks(t *testing.T) {
	tbl := &change.Table{Schema: "app", Name: "codes", Version: 1, Key: []int{0, 1}, Columns: []change.Column{
		{Name: "code", Type: change.Type{Name: "text", Kind: change.KindText}, Key: true},
		{Name: "pad", Type: change.Type{Name: "character(4)", Kind: change.KindText}, Key: true},
		{Name: "note", Type: change.Type{Name: "text", Kind: change.KindText}, Nullable: true},
	}}
	for _, tc := range []struct {
		code, pad, note string
		refused         bool
	}{
		{"a", "ab  ", "x ", false},
		{"a ", "ab  ", "x", true},
		{" a", "ab  ", "x", false},
	} {
		c := change.Change{Op: change.OpInsert, Table: tbl, After: []change.Value{
			change.V(change.KindText, tc.code), change.V(change.KindText, tc.pad), change.V(change.KindText, tc.note)}}
		got := RefuseRecord(&c, change.AppendRecord(nil, &c, change.RecordMeta{}))
		if (got != "") != tc.refused || (tc.refused && !strings.Contains(got, `"code"`)) {
			t.Errorf("key %q/%q: RefuseRecord = %q, want refused %v", tc.code, tc.pad, got, tc.refused)
		}
	}
}
