package change

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The change record is a Debezium-style JSON envelope, so SQL written for
// Debezium (data.op, data.before.id, data.after.name) works unchanged:
//
//	{"before":{...}|null,"after":{...}|null,"op":"r|c|u|d|t","ts_ms":<emitted>,
//	 "source":{"connector":"postgresql","name":<pipeline>,"db":...,"schema":...,"table":...,
//	           "lsn":<change LSN>,"commit_lsn":<commit LSN>,"txId":...,"ts_ms":<commit time>,
//	           "snapshot":true|false},
//	 "key":[<key column names>],
//	 "columns":[{"name":...,"type":...,"kind":...,"elem":...,"num":...,"nullable":...}, ...],
//	 "unchanged":[<columns whose TOASTed value was not sent>],
//	 "json_null":{"before":[<columns>],"after":[<columns>]}}
//
// LSNs are JSON numbers (as in Debezium) so a warehouse can compare them
// without parsing. "key" and "columns" let a consumer that never saw the
// source (a stream reader in another process, Redshift) create and merge the
// table. Unchanged TOAST columns are left out of "after" and named in
// "unchanged", never written as null. A json/jsonb value that is the JSON
// literal null is embedded as null like SQL NULL, and told apart by
// "json_null", which names such columns of each row (present only when
// some row has one), so SQL that reads the envelope sees both as null.

// RecordMeta is what the record says about its origin beyond the Change.
type RecordMeta struct {
	Pipeline string    // source.name
	Database string    // source.db
	Emitted  time.Time // ts_ms: when sluice wrote the record
}

// AppendRecord appends the JSON change record for c to dst. It is written by
// hand rather than through encoding/json because it is on the hot path of
// every stream and keeps value forms exact (numeric digits, raw JSON).
func AppendRecord(dst []byte, c *Change, m RecordMeta) []byte {
	t := c.Table
	dst = append(dst, `{"before":`...)
	dst = appendRow(dst, t, c.Before)
	dst = append(dst, `,"after":`...)
	dst = appendRow(dst, t, c.After)
	dst = append(dst, `,"op":"`...)
	dst = append(dst, c.Op.String()...)
	dst = append(dst, `","ts_ms":`...)
	dst = strconv.AppendInt(dst, m.Emitted.UnixMilli(), 10)
	dst = append(dst, `,"source":{"connector":"postgresql","name":`...)
	dst = appendString(dst, m.Pipeline)
	dst = append(dst, `,"db":`...)
	dst = appendString(dst, m.Database)
	dst = append(dst, `,"schema":`...)
	dst = appendString(dst, t.Schema)
	dst = append(dst, `,"table":`...)
	dst = appendString(dst, t.Name)
	dst = append(dst, `,"lsn":`...)
	dst = strconv.AppendUint(dst, uint64(c.Pos.LSN), 10)
	dst = append(dst, `,"commit_lsn":`...)
	dst = strconv.AppendUint(dst, uint64(c.Pos.CommitLSN), 10)
	dst = append(dst, `,"txId":`...)
	dst = strconv.AppendUint(dst, uint64(c.TxID), 10)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, c.CommitTime.UnixMilli(), 10)
	dst = append(dst, `,"snapshot":`...)
	dst = strconv.AppendBool(dst, c.Op == OpRead)
	dst = append(dst, `},"key":[`...)
	for i, k := range t.Key {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, t.Columns[k].Name)
	}
	dst = append(dst, `],"columns":[`...)
	for i, col := range t.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendString(dst, col.Name)
		dst = append(dst, `,"type":`...)
		dst = appendString(dst, col.Type.Name)
		dst = append(dst, `,"kind":"`...)
		dst = append(dst, col.Type.Kind.String()...)
		dst = append(dst, '"')
		if col.Type.Kind == KindArray {
			dst = append(dst, `,"elem":"`...)
			dst = append(dst, col.Type.Elem.String()...)
			dst = append(dst, '"')
		}
		if col.Type.Base != "" {
			dst = append(dst, `,"base":`...)
			dst = appendString(dst, col.Type.Base)
		}
		if col.Num != 0 {
			dst = append(dst, `,"num":`...)
			dst = strconv.AppendInt(dst, int64(col.Num), 10)
		}
		dst = append(dst, `,"nullable":`...)
		dst = strconv.AppendBool(dst, col.Nullable)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	first := true
	for i, v := range c.After {
		if v.Kind != KindUnchanged {
			continue
		}
		if first {
			dst = append(dst, `,"unchanged":[`...)
			first = false
		} else {
			dst = append(dst, ',')
		}
		dst = appendString(dst, t.Columns[i].Name)
	}
	if !first {
		dst = append(dst, ']')
	}
	dst = appendJSONNulls(dst, t, c.Before, c.After)
	return append(dst, '}')
}

// appendJSONNulls appends "json_null" when a row holds a JSON null.
func appendJSONNulls(dst []byte, t *Table, before, after []Value) []byte {
	isNull := func(v Value) bool { return v.Kind == KindJSON && v.Text == "null" }
	if !slices.ContainsFunc(before, isNull) && !slices.ContainsFunc(after, isNull) {
		return dst
	}
	dst = append(dst, `,"json_null":{`...)
	for j, side := range [][]Value{before, after} {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, []string{`"before":[`, `"after":[`}[j]...)
		first := true
		for i, v := range side {
			if !isNull(v) {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendString(dst, t.Columns[i].Name)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

func appendRow(dst []byte, t *Table, row []Value) []byte {
	if row == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	first := true
	for i, v := range row {
		if v.Kind == KindUnchanged {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendString(dst, t.Columns[i].Name)
		dst = append(dst, ':')
		dst = AppendValueJSON(dst, v)
	}
	return append(dst, '}')
}

// AppendValueJSON appends the record form of one value: integers as numbers,
// finite floats as numbers (NaN and infinities as strings), numeric as a
// string of its exact digits, bytes as base64, json embedded, arrays as arrays,
// everything else as a string.
func AppendValueJSON(dst []byte, v Value) []byte {
	switch v.Kind {
	case KindNull, KindUnchanged:
		return append(dst, "null"...)
	case KindBool, KindInt:
		return append(dst, v.Text...)
	case KindFloat:
		switch v.Text {
		case "NaN", "Infinity", "-Infinity":
			return appendString(dst, v.Text)
		}
		return append(dst, v.Text...)
	case KindBytes:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, []byte(v.Text))
		return append(dst, '"')
	case KindJSON:
		return append(dst, v.Text...)
	case KindArray:
		dst = append(dst, '[')
		for i, e := range v.Elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendValueJSON(dst, e)
		}
		return append(dst, ']')
	}
	return appendString(dst, v.Text)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 is replaced by U+FFFD
// as encoding/json does; Postgres text is valid in its server encoding and the
// source converts it to UTF-8 before it gets here.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Record is a decoded change record: the Change (with a Table built from the
// record's own key and columns) and its metadata.
type Record struct {
	Change Change
	Meta   RecordMeta
}

// ErrBadRecord is wrapped by every DecodeRecord error: the bytes are not a
// change record. Stream readers set such records aside rather than stop.
var ErrBadRecord = errors.New("not a valid change record")

type wireRecord struct {
	Before    map[string]json.RawMessage `json:"before"`
	After     map[string]json.RawMessage `json:"after"`
	Op        string                     `json:"op"`
	TsMs      *int64                     `json:"ts_ms"`
	Source    *wireSource                `json:"source"`
	Key       []string                   `json:"key"`
	Columns   []wireColumn               `json:"columns"`
	Unchanged []string                   `json:"unchanged"`
	JSONNull  struct {
		Before []string `json:"before"`
		After  []string `json:"after"`
	} `json:"json_null"`
}

type wireSource struct {
	Name      string  `json:"name"`
	DB        string  `json:"db"`
	Schema    string  `json:"schema"`
	Table     string  `json:"table"`
	LSN       *uint64 `json:"lsn"`
	CommitLSN *uint64 `json:"commit_lsn"`
	TxID      uint32  `json:"txId"`
	TsMs      int64   `json:"ts_ms"`
}

type wireColumn struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Kind     string `json:"kind"`
	Elem     string `json:"elem"`
	Base     string `json:"base"`
	Num      int    `json:"num"`
	Nullable bool   `json:"nullable"`
}

// DecodeRecord parses a change record. Every error wraps ErrBadRecord and
// says what is wrong. The Table of the returned change is new for each call;
// callers that keep many changes may intern it (see Table.SameShape).
func DecodeRecord(data []byte) (*Record, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrBadRecord)
	}
	var w wireRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	bad := func(format string, args ...any) (*Record, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrBadRecord}, args...)...)
	}
	op, err := ParseOp(w.Op)
	if err != nil {
		return bad("%v", err)
	}
	if w.Source == nil || w.Source.Table == "" || w.Source.Schema == "" {
		return bad("missing source.schema or source.table")
	}
	if w.Source.LSN == nil || w.Source.CommitLSN == nil {
		return bad("missing source.lsn or source.commit_lsn")
	}
	if len(w.Columns) == 0 {
		return bad("missing columns")
	}
	t := &Table{Schema: w.Source.Schema, Name: w.Source.Table, Version: 1}
	for _, wc := range w.Columns {
		k, err := ParseKind(wc.Kind)
		if err != nil {
			return bad("column %q: %v", wc.Name, err)
		}
		col := Column{Name: wc.Name, Nullable: wc.Nullable, Num: wc.Num, Type: Type{Name: wc.Type, Kind: k, Base: wc.Base}}
		if k == KindArray {
			if col.Type.Elem, err = ParseKind(wc.Elem); err != nil {
				return bad("column %q: %v", wc.Name, err)
			}
		}
		t.Columns = append(t.Columns, col)
	}
	for _, name := range w.Key {
		i := t.Column(name)
		if i < 0 {
			return bad("key column %q is not among the columns", name)
		}
		t.Columns[i].Key = true
		t.Key = append(t.Key, i)
	}
	// No key columns: a keyless table (a multiset), whose rows are named
	// by all their values.
	r := &Record{Change: Change{
		Op:         op,
		Table:      t,
		Pos:        Position{CommitLSN: LSN(*w.Source.CommitLSN), LSN: LSN(*w.Source.LSN)},
		TxID:       w.Source.TxID,
		CommitTime: time.UnixMilli(w.Source.TsMs).UTC(),
	}, Meta: RecordMeta{Pipeline: w.Source.Name, Database: w.Source.DB}}
	if w.TsMs != nil {
		r.Meta.Emitted = time.UnixMilli(*w.TsMs).UTC()
	}
	if w.Before != nil {
		if r.Change.Before, err = decodeRow(t, w.Before, nil, w.JSONNull.Before); err != nil {
			return bad("before: %v", err)
		}
	}
	if w.After != nil {
		if r.Change.After, err = decodeRow(t, w.After, w.Unchanged, w.JSONNull.After); err != nil {
			return bad("after: %v", err)
		}
	}
	switch op {
	case OpRead, OpInsert, OpUpdate:
		if r.Change.After == nil {
			return bad("op %q without after", w.Op)
		}
	case OpDelete:
		if r.Change.Before == nil {
			return bad("op \"d\" without before")
		}
	}
	return r, nil
}

func decodeRow(t *Table, obj map[string]json.RawMessage, unchanged, jsonNull []string) ([]Value, error) {
	row := make([]Value, len(t.Columns))
	for name := range obj {
		if t.Column(name) < 0 {
			return nil, fmt.Errorf("column %q is not among the columns", name)
		}
	}
	for _, name := range unchanged {
		i := t.Column(name)
		if i < 0 {
			return nil, fmt.Errorf("unchanged column %q is not among the columns", name)
		}
		row[i] = Unchanged
	}
	for i, col := range t.Columns {
		raw, ok := obj[col.Name]
		if !ok {
			continue // absent: NULL, or unchanged as set above
		}
		v, err := decodeValue(raw, col.Type.Kind, col.Type.Elem)
		if err != nil {
			return nil, fmt.Errorf("column %q: %v", col.Name, err)
		}
		row[i] = v
	}
	for _, name := range jsonNull {
		i := t.Column(name)
		if i < 0 || t.Columns[i].Type.Kind != KindJSON || !row[i].IsNull() {
			return nil, fmt.Errorf("json_null column %q is not a json column holding null", name)
		}
		row[i] = V(KindJSON, "null")
	}
	return row, nil
}

func decodeValue(raw json.RawMessage, k, elem Kind) (Value, error) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return Null, nil
	}
	switch k {
	case KindJSON:
		return V(KindJSON, string(raw)), nil
	case KindArray:
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return Value{}, fmt.Errorf("want an array: %v", err)
		}
		out := Value{Kind: KindArray, Elems: make([]Value, len(elems))}
		for i, e := range elems {
			e = bytes.TrimSpace(e)
			ek := elem
			if len(e) > 0 && e[0] == '[' && elem != KindJSON {
				ek = KindArray // a further dimension
			}
			v, err := decodeValue(e, ek, elem)
			if err != nil {
				return Value{}, fmt.Errorf("element %d: %v", i, err)
			}
			out.Elems[i] = v
		}
		return out, nil
	case KindBool:
		switch string(raw) {
		case "true", "false":
			return V(k, string(raw)), nil
		}
		return Value{}, fmt.Errorf("want true or false, got %s", raw)
	case KindInt:
		if _, err := strconv.ParseInt(string(raw), 10, 64); err != nil {
			return Value{}, fmt.Errorf("want an integer, got %s", raw)
		}
		return V(k, string(raw)), nil
	case KindFloat:
		if raw[0] != '"' {
			if _, err := strconv.ParseFloat(string(raw), 64); err != nil {
				return Value{}, fmt.Errorf("want a number, got %s", raw)
			}
			return V(k, string(raw)), nil
		}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return Value{}, fmt.Errorf("want a string: %v", err)
	}
	if k == KindFloat && s != "NaN" && s != "Infinity" && s != "-Infinity" {
		return Value{}, fmt.Errorf("want a number, NaN, Infinity or -Infinity, got %s", raw)
	}
	if k == KindBytes {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return Value{}, fmt.Errorf("want base64: %v", err)
		}
		return V(k, string(b)), nil
	}
	return V(k, s), nil
}
