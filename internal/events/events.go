// Package events turns records of an append-only stream of JSON events (a
// Kafka topic, a Kinesis stream) into changes of a table that SQL views
// read beside the mirrored tables (internal/view).
//
// Each event is one JSON object; its fields are the stream's declared
// columns, each of a built-in Postgres type. The table has two more
// columns that sluice fills: event_id, the key — the record's shard (or
// partition) and sequence number (or offset), "shard/sequence", unique in
// the stream and the same each time the record is read — and event_time,
// when the stream received the record. A field that is missing or null is
// NULL; a field not declared is ignored; a value of the wrong JSON type, or
// a record that is not a JSON object, is an error naming the field (the
// reader writes the record to its reject file).
package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// The columns sluice adds to every event table.
const (
	IDColumn   = "event_id"
	TimeColumn = "event_time"
)

// DefaultSchema is the schema of an event table named without one.
const DefaultSchema = "events"

// Column is one declared field of the events.
type Column struct {
	Name string
	Type string // a built-in Postgres type name: bigint, text, numeric(12,2), timestamptz, jsonb, ...
}

// types are the Postgres types an event field may have, by the names users
// write, with the name and value shape sluice's tables use for them.
var types = map[string]change.Type{
	"smallint": {Name: "smallint", Kind: change.KindInt}, "int2": {Name: "smallint", Kind: change.KindInt},
	"integer": {Name: "integer", Kind: change.KindInt}, "int": {Name: "integer", Kind: change.KindInt}, "int4": {Name: "integer", Kind: change.KindInt},
	"bigint": {Name: "bigint", Kind: change.KindInt}, "int8": {Name: "bigint", Kind: change.KindInt},
	"real": {Name: "real", Kind: change.KindFloat}, "float4": {Name: "real", Kind: change.KindFloat},
	"double precision": {Name: "double precision", Kind: change.KindFloat}, "float8": {Name: "double precision", Kind: change.KindFloat},
	"numeric": {Name: "numeric", Kind: change.KindNumeric}, "decimal": {Name: "numeric", Kind: change.KindNumeric},
	"boolean": {Name: "boolean", Kind: change.KindBool}, "bool": {Name: "boolean", Kind: change.KindBool},
	"text": {Name: "text", Kind: change.KindText}, "varchar": {Name: "text", Kind: change.KindText}, "character varying": {Name: "text", Kind: change.KindText},
	"uuid":                        {Name: "uuid", Kind: change.KindText},
	"date":                        {Name: "date", Kind: change.KindDate},
	"timestamp":                   {Name: "timestamp without time zone", Kind: change.KindTimestamp},
	"timestamp without time zone": {Name: "timestamp without time zone", Kind: change.KindTimestamp},
	"timestamptz":                 {Name: "timestamp with time zone", Kind: change.KindTimestampTZ},
	"timestamp with time zone":    {Name: "timestamp with time zone", Kind: change.KindTimestampTZ},
	"json":                        {Name: "jsonb", Kind: change.KindJSON}, "jsonb": {Name: "jsonb", Kind: change.KindJSON},
}

// typeNames lists the accepted type names, for errors.
const typeNames = "smallint, integer, bigint, real, double precision, numeric or numeric(p,s), boolean, text, varchar, uuid, date, timestamp, timestamptz, json, jsonb"

// parseType resolves a declared type name.
func parseType(name string) (change.Type, error) {
	n := strings.ToLower(strings.Join(strings.Fields(name), " "))
	if base, mods, ok := strings.Cut(n, "("); ok && (base == "numeric" || base == "decimal") {
		p, s, _ := strings.Cut(strings.TrimSuffix(mods, ")"), ",")
		pi, err1 := strconv.Atoi(strings.TrimSpace(p))
		si, err2 := strconv.Atoi(strings.TrimSpace(s))
		if s == "" {
			si, err2 = 0, nil
		}
		if !strings.HasSuffix(mods, ")") || err1 != nil || err2 != nil || pi < 1 || pi > 1000 || si < 0 || si > pi {
			return change.Type{}, fmt.Errorf("type %q: want numeric(precision, scale) with 1 <= precision <= 1000 and 0 <= scale <= precision", name)
		}
		return change.Type{Name: fmt.Sprintf("numeric(%d,%d)", pi, si), Kind: change.KindNumeric}, nil
	}
	t, ok := types[n]
	if !ok {
		return change.Type{}, fmt.Errorf("type %q is not one an event field can have: use one of %s", name, typeNames)
	}
	return t, nil
}

// Table builds the table views read a stream's events as: event_id (the
// key), event_time, then the declared columns. name is "schema.name" or
// "name" (schema events).
func Table(name string, cols []Column) (*change.Table, error) {
	if !strings.Contains(name, ".") {
		name = DefaultSchema + "." + name
	}
	id, err := change.ParseTableID(name)
	if err != nil {
		return nil, fmt.Errorf("event stream %q: %w", name, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("event stream %s: declare its fields under columns ({name, type} each)", id)
	}
	t := &change.Table{Schema: id.Schema, Name: id.Name, Key: []int{0}, Version: 1, Columns: []change.Column{
		{Name: IDColumn, Type: change.Type{Name: "text", Kind: change.KindText}, Key: true, Num: 1},
		{Name: TimeColumn, Type: change.Type{Name: "timestamp with time zone", Kind: change.KindTimestampTZ}, Nullable: true, Num: 2},
	}}
	seen := map[string]bool{IDColumn: true, TimeColumn: true}
	for _, c := range cols {
		if c.Name == "" {
			return nil, fmt.Errorf("event stream %s: a column without a name", id)
		}
		if seen[strings.ToLower(c.Name)] {
			if c.Name == IDColumn || c.Name == TimeColumn {
				return nil, fmt.Errorf("event stream %s: column %s is sluice's own (the record's id and arrival time): name the field otherwise", id, c.Name)
			}
			return nil, fmt.Errorf("event stream %s: column %s is declared twice", id, c.Name)
		}
		seen[strings.ToLower(c.Name)] = true
		typ, err := parseType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("event stream %s, column %s: %w", id, c.Name, err)
		}
		t.Columns = append(t.Columns, change.Column{Name: c.Name, Type: typ, Nullable: true, Num: len(t.Columns) + 1})
	}
	return t, nil
}

// ID is an event's key: its shard (or partition) and sequence number (or
// offset) in the stream.
func ID(shard, seq string) string { return shard + "/" + seq }

// SplitID is the inverse of ID.
func SplitID(id string) (shard, seq string, ok bool) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return "", "", false
	}
	return id[:i], id[i+1:], true
}

// Decode turns one record into an insert into t (a table made by Table).
func Decode(t *change.Table, data []byte, shard, seq string, at time.Time) (change.Change, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		if err == nil {
			err = fmt.Errorf("null")
		}
		return change.Change{}, fmt.Errorf("event of %s is not a JSON object: %v", t.ID(), err)
	}
	row := make([]change.Value, len(t.Columns))
	row[0] = change.V(change.KindText, ID(shard, seq))
	if !at.IsZero() {
		row[1] = change.V(change.KindTimestampTZ, FormatTimestamp(at))
	}
	for i := 2; i < len(t.Columns); i++ {
		c := &t.Columns[i]
		x, ok := obj[c.Name]
		if !ok || x == nil {
			continue
		}
		v, err := value(c.Type, x)
		if err != nil {
			return change.Change{}, fmt.Errorf("event of %s, field %s: %w", t.ID(), c.Name, err)
		}
		row[i] = v
	}
	return change.Change{Op: change.OpInsert, Table: t, After: row, CommitTime: at}, nil
}

// FormatTimestamp writes a time as a timestamptz value: ISO-8601 in UTC with
// "+00:00", as the Postgres source does.
func FormatTimestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.999999") + "+00:00"
}

var (
	minInt = map[string]int64{"smallint": -1 << 15, "integer": -1 << 31, "bigint": -1 << 63}
	maxInt = map[string]int64{"smallint": 1<<15 - 1, "integer": 1<<31 - 1, "bigint": 1<<63 - 1}
)

// value converts one JSON field to a value of type typ.
func value(typ change.Type, x any) (change.Value, error) {
	want := func(what string) error { return fmt.Errorf("want %s for %s, got %s", what, typ.Name, jsonType(x)) }
	switch typ.Kind {
	case change.KindInt:
		n, ok := x.(json.Number)
		if !ok {
			return change.Value{}, want("a JSON integer")
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || i < minInt[typ.Name] || i > maxInt[typ.Name] {
			return change.Value{}, fmt.Errorf("%s is not a %s", n, typ.Name)
		}
		return change.V(change.KindInt, strconv.FormatInt(i, 10)), nil
	case change.KindFloat:
		n, ok := x.(json.Number)
		if !ok {
			return change.Value{}, want("a JSON number")
		}
		if _, err := strconv.ParseFloat(n.String(), 64); err != nil {
			return change.Value{}, fmt.Errorf("%s is not a %s", n, typ.Name)
		}
		return change.V(change.KindFloat, n.String()), nil
	case change.KindNumeric:
		var s string
		switch v := x.(type) {
		case json.Number:
			s = v.String()
		case string: // exact decimals are often sent as strings
			s = v
		default:
			return change.Value{}, want("a JSON number or a string of digits")
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok || strings.ContainsAny(s, "/") {
			return change.Value{}, fmt.Errorf("%q is not a number", s)
		}
		return change.V(change.KindNumeric, numericText(s, r)), nil
	case change.KindBool:
		b, ok := x.(bool)
		if !ok {
			return change.Value{}, want("true or false")
		}
		return change.V(change.KindBool, strconv.FormatBool(b)), nil
	case change.KindText:
		s, ok := x.(string)
		if !ok {
			return change.Value{}, want("a JSON string")
		}
		return change.V(change.KindText, s), nil
	case change.KindDate:
		s, ok := x.(string)
		if !ok {
			return change.Value{}, want("a string YYYY-MM-DD")
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return change.Value{}, fmt.Errorf("%q is not a date YYYY-MM-DD", s)
		}
		return change.V(change.KindDate, s), nil
	case change.KindTimestamp:
		s, ok := x.(string)
		if !ok {
			return change.Value{}, want("a string 2006-01-02T15:04:05[.ffffff]")
		}
		t, err := time.Parse("2006-01-02T15:04:05.999999999", strings.Replace(s, " ", "T", 1))
		if err != nil {
			return change.Value{}, fmt.Errorf("%q is not a timestamp without time zone (2006-01-02T15:04:05[.ffffff])", s)
		}
		return change.V(change.KindTimestamp, t.Format("2006-01-02T15:04:05.999999")), nil
	case change.KindTimestampTZ:
		switch v := x.(type) {
		case string:
			t, err := time.Parse(time.RFC3339Nano, strings.Replace(v, " ", "T", 1))
			if err != nil {
				return change.Value{}, fmt.Errorf("%q is not an RFC 3339 timestamp with an offset (2006-01-02T15:04:05Z)", v)
			}
			return change.V(change.KindTimestampTZ, FormatTimestamp(t)), nil
		case json.Number: // seconds since the epoch
			f, err := strconv.ParseFloat(v.String(), 64)
			if err != nil {
				return change.Value{}, fmt.Errorf("%s is not seconds since the epoch", v)
			}
			sec := int64(f)
			return change.V(change.KindTimestampTZ, FormatTimestamp(time.Unix(sec, int64((f-float64(sec))*1e9)))), nil
		}
		return change.Value{}, want("an RFC 3339 string or seconds since the epoch")
	case change.KindJSON:
		b, err := json.Marshal(x)
		if err != nil {
			return change.Value{}, err
		}
		return change.V(change.KindJSON, string(b)), nil
	}
	return change.Value{}, fmt.Errorf("type %s is not supported", typ.Name)
}

// numericText is s as Postgres writes a numeric: plain digits, no exponent.
func numericText(s string, r *big.Rat) string {
	if !strings.ContainsAny(s, "eE") {
		s = strings.TrimPrefix(s, "+")
		return s
	}
	// The digits after the point that the exponent form implies.
	mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
	e, _ := strconv.Atoi(exp)
	frac := 0
	if _, f, ok := strings.Cut(mant, "."); ok {
		frac = len(f)
	}
	return r.FloatString(max(frac-e, 0))
}

func jsonType(x any) string {
	switch x.(type) {
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "null"
}
