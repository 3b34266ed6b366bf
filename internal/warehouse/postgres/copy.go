package postgres

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// appendCopyRow appends one staged row in COPY's text format: op, unchanged
// mask, then the columns, tab-separated, \N for NULL.
func appendCopyRow(b []byte, t *change.Table, r warehouse.Row) ([]byte, error) {
	op := r.Op
	if op == 0 {
		op = 'u'
		if r.Delete {
			op = 'd'
		}
	}
	if r.Delete {
		b = append(b, op, '\t', '\\', 'N')
		for i := range t.Columns {
			b = append(b, '\t')
			if (!t.Columns[i].Key && !t.Keyless()) || i >= len(r.Values) {
				b = append(b, `\N`...)
				continue
			}
			var err error
			if b, err = appendCopyValue(b, t, i, r.Values[i]); err != nil {
				return b, err
			}
		}
		return append(b, '\n'), nil
	}
	b = append(b, op, '\t')
	if m, ok := warehouse.UnchangedMask(r.Values); ok {
		b = append(b, m...)
	} else {
		b = append(b, `\N`...)
	}
	for i := range t.Columns {
		b = append(b, '\t')
		if i >= len(r.Values) {
			b = append(b, `\N`...)
			continue
		}
		var err error
		if b, err = appendCopyValue(b, t, i, r.Values[i]); err != nil {
			return b, err
		}
	}
	return append(b, '\n'), nil
}

// appendCopyValues appends one row of the target table's own columns.
func appendCopyValues(b []byte, t *change.Table, r warehouse.Row) ([]byte, error) {
	for i := range t.Columns {
		if i > 0 {
			b = append(b, '\t')
		}
		if i >= len(r.Values) {
			b = append(b, `\N`...)
			continue
		}
		var err error
		if b, err = appendCopyValue(b, t, i, r.Values[i]); err != nil {
			return b, err
		}
	}
	return append(b, '\n'), nil
}

func appendCopyValue(b []byte, t *change.Table, col int, v change.Value) ([]byte, error) {
	switch v.Kind {
	case change.KindNull, change.KindUnchanged:
		return append(b, `\N`...), nil
	case change.KindBytes:
		// bytea input \x<hex>, its backslash escaped for COPY.
		b = append(b, `\\x`...)
		return hex.AppendEncode(b, []byte(v.Text)), nil
	case change.KindArray:
		lit, err := appendArrayLiteral(nil, t, col, v)
		if err != nil {
			return b, err
		}
		return appendCopyEscaped(b, string(lit)), nil
	}
	return appendCopyEscaped(b, v.Text), nil
}

// appendArrayLiteral appends a Postgres array literal: {e1,"e 2",NULL,{...}}.
func appendArrayLiteral(b []byte, t *change.Table, col int, v change.Value) ([]byte, error) {
	// Every built-in type separates array elements with a comma but box,
	// whose values hold commas themselves.
	delim := byte(',')
	if ty := t.Columns[col].Type; ty.Base == "box" || strings.HasPrefix(ty.Name, "box[") {
		delim = ';'
	}
	b = append(b, '{')
	for i, e := range v.Elems {
		if i > 0 {
			b = append(b, delim)
		}
		switch e.Kind {
		case change.KindNull:
			b = append(b, "NULL"...)
		case change.KindUnchanged:
			return b, fmt.Errorf("column %q of %s: an unchanged marker inside an array", t.Columns[col].Name, t.ID())
		case change.KindArray:
			var err error
			if b, err = appendArrayLiteral(b, t, col, e); err != nil {
				return b, err
			}
		case change.KindBytes:
			b = append(b, `"\\x`...)
			b = hex.AppendEncode(b, []byte(e.Text))
			b = append(b, '"')
		default:
			b = append(b, '"')
			for j := 0; j < len(e.Text); j++ {
				if c := e.Text[j]; c == '"' || c == '\\' {
					b = append(b, '\\')
				}
				b = append(b, e.Text[j])
			}
			b = append(b, '"')
		}
	}
	return append(b, '}'), nil
}

// appendCopyEscaped escapes a value for COPY's text format.
func appendCopyEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc byte
		switch s[i] {
		case '\\':
			esc = '\\'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\t':
			esc = 't'
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, '\\', esc)
		start = i + 1
	}
	return append(b, s[start:]...)
}
