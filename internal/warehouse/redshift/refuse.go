package redshift

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// What Redshift's JSON_PARSE refuses, by default (json_parse_truncate_strings
// and json_parse_dedup_attributes off):
// https://docs.aws.amazon.com/redshift/latest/dg/super-configurations.html,
// https://docs.aws.amazon.com/redshift/latest/dg/limitations-super.html
//
//   - a string (value or key) longer than 65,535 bytes: text over 64 KB,
//     bytea over 49,149 bytes (its base64 form), long strings inside json;
//   - an object with the same key twice (a json value; jsonb has none).
//
// The streaming view keeps such a record without its parsed form (see
// dialect.go), and the merge of its table stops on it; refusing it at the
// producer instead sets it aside in the dead-letter file, or stops the
// pipeline before the slot moves past it, so that it never blocks the
// merge.
const maxJSONString = 65535

// RefuseRecord says why Redshift's JSON_PARSE would refuse a change record,
// or "" when it would not. It is the producer's check for a stream Redshift
// reads (stream/kinesis SinkConfig.Refuse).
func RefuseRecord(c *change.Change, rec []byte) string {
	if why := blankKey(c); why != "" {
		return why
	}
	if len(rec) <= maxJSONString && (c == nil || c.Table == nil || !mayRepeatKeys(c.Table)) {
		return "" // no string can be longer than the record, no key repeats
	}
	why := jsonParseRefuses(rec)
	if why == "" {
		return ""
	}
	return "Redshift's JSON_PARSE refuses it (" + why + ")"
}

// mayRepeatKeys: only json values (not jsonb) can repeat a key.
func mayRepeatKeys(t *change.Table) bool {
	for _, col := range t.Columns {
		name := strings.ToLower(col.Type.Name)
		if col.Type.Base != "" {
			name = strings.ToLower(col.Type.Base)
		}
		if (col.Type.Kind == change.KindJSON || (col.Type.Kind == change.KindArray && col.Type.Elem == change.KindJSON)) && !strings.HasPrefix(name, "jsonb") {
			return true
		}
	}
	return false
}

// jsonParseRefuses scans rec: a string over 65,535 bytes (decoded), or a
// key repeated in an object.
func jsonParseRefuses(rec []byte) string {
	type frame struct {
		obj       bool
		expectKey bool
		keys      map[string]bool
		key       string // the last key, to name where a problem is
	}
	dec := json.NewDecoder(bytes.NewReader(rec))
	dec.UseNumber()
	var stack []*frame
	where := func() string {
		var parts []string
		for _, f := range stack {
			if f.obj && f.key != "" {
				parts = append(parts, f.key)
			}
		}
		return strings.Join(parts, ".")
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return ""
		}
		if err != nil {
			return "not valid JSON: " + err.Error()
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.obj {
					top.expectKey = true // this value is read whole before the next key
				}
				stack = append(stack, &frame{obj: v == '{', expectKey: v == '{', keys: map[string]bool{}})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if len(v) > maxJSONString {
				return fmt.Sprintf("a string of %d bytes at %q, over the %d bytes a SUPER string holds", len(v), where(), maxJSONString)
			}
			if top != nil && top.obj && top.expectKey {
				if top.keys[v] {
					return fmt.Sprintf("the key %q twice in one object at %q", v, where())
				}
				top.keys[v], top.key, top.expectKey = true, v, false
				continue
			}
		}
		if top != nil && top.obj {
			top.expectKey = true
		}
	}
}

// blankKey refuses a text key value ending in a blank: Redshift ignores
// trailing blanks when it compares VARCHAR values, so keys 'a' and 'a '
// would be one row in the mirror
// (https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html#r_Character_types-significance-of-trailing-blanks).
// character(n) keys are padded alike at the source, which compares them
// without trailing blanks too: they cannot collapse and pass.
func blankKey(c *change.Change) string {
	if c == nil || c.Table == nil {
		return ""
	}
	for _, row := range [][]change.Value{c.Before, c.After} {
		if row == nil {
			continue
		}
		for _, k := range c.Table.Key {
			col := c.Table.Columns[k]
			if k >= len(row) || row[k].Kind != change.KindText || !strings.HasSuffix(row[k].Text, " ") || isBpchar(col.Type) {
				continue
			}
			return fmt.Sprintf("its key column %q ends in a blank, and Redshift compares VARCHAR values ignoring trailing blanks, so it would be one row with the key without them", col.Name)
		}
	}
	return ""
}

func isBpchar(t change.Type) bool {
	name := strings.ToLower(t.Name)
	if t.Base != "" {
		name = strings.ToLower(t.Base)
	}
	return strings.HasPrefix(name, "character(") || name == "character" || name == "bpchar" || strings.HasPrefix(name, "char(")
}
