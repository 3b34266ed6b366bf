package postgres

import (
	"errors"
	"fmt"

	"github.com/sluice-dev/sluice/internal/change"
)

// The row messages (insert, update, delete) are decoded here rather than by
// pglogrepl: they are the hot path, and reading the tuple straight out of
// the message, with every value a substring of one string per message,
// costs one allocation per row instead of two per column.

var errShort = errors.New("pgoutput message too short")

// decodeTuple reads a TupleData at msg[p:] into a row aligned with the
// relation's columns. It returns the offset after the tuple.
func decodeTuple(msg string, p int, types []*typeInfo) ([]change.Value, int, error) {
	if p+2 > len(msg) {
		return nil, 0, errShort
	}
	n := int(msg[p])<<8 | int(msg[p+1])
	p += 2
	row := make([]change.Value, max(n, len(types)))
	for i := 0; i < n; i++ {
		if p >= len(msg) {
			return nil, 0, errShort
		}
		kind := msg[p]
		p++
		switch kind {
		case 'n':
		case 'u':
			row[i] = change.Unchanged
		case 't':
			if p+4 > len(msg) {
				return nil, 0, errShort
			}
			l32, _ := be32(msg, p)
			l := int(l32)
			p += 4
			if l < 0 || p+l > len(msg) {
				return nil, 0, errShort
			}
			if i >= len(types) {
				return nil, 0, fmt.Errorf("tuple has %d columns, relation %d", n, len(types))
			}
			v, err := types[i].decode(msg[p : p+l])
			if err != nil {
				return nil, 0, err
			}
			row[i] = v
			p += l
		default:
			return nil, 0, fmt.Errorf("tuple column %d: unexpected format %q (binary was not requested)", i, kind)
		}
	}
	return row[:len(types)], p, nil
}

func be32(msg string, p int) (uint32, bool) {
	if p+4 > len(msg) {
		return 0, false
	}
	return uint32(msg[p])<<24 | uint32(msg[p+1])<<16 | uint32(msg[p+2])<<8 | uint32(msg[p+3]), true
}

// rowMessage is a decoded insert, update or delete.
type rowMessage struct {
	relid  uint32
	op     change.Op
	before []change.Value
	after  []change.Value
}

// decodeRow decodes an 'I', 'U' or 'D' message. The relation's column types
// come from lookup; ok is false when the relation is not mirrored.
func decodeRow(msg string, lookup func(relid uint32) []*typeInfo) (r rowMessage, ok bool, err error) {
	relid, okLen := be32(msg, 1)
	if !okLen || len(msg) < 6 {
		return r, false, errShort
	}
	r.relid = relid
	types := lookup(relid)
	if types == nil {
		return r, false, nil
	}
	p := 5
	switch msg[0] {
	case 'I':
		if msg[p] != 'N' {
			return r, false, fmt.Errorf("insert: unexpected tuple type %q", msg[p])
		}
		r.op = change.OpInsert
		r.after, _, err = decodeTuple(msg, p+1, types)
	case 'U':
		r.op = change.OpUpdate
		if msg[p] == 'K' || msg[p] == 'O' {
			if r.before, p, err = decodeTuple(msg, p+1, types); err != nil {
				return r, false, err
			}
			if p >= len(msg) {
				return r, false, errShort
			}
		}
		if msg[p] != 'N' {
			return r, false, fmt.Errorf("update: unexpected tuple type %q", msg[p])
		}
		full := msg[5] == 'O'
		if r.after, _, err = decodeTuple(msg, p+1, types); err == nil && full {
			fillUnchanged(r.after, r.before)
		}
	case 'D':
		if msg[p] != 'K' && msg[p] != 'O' {
			return r, false, fmt.Errorf("delete: unexpected tuple type %q", msg[p])
		}
		r.op = change.OpDelete
		r.before, _, err = decodeTuple(msg, p+1, types)
	default:
		return r, false, fmt.Errorf("not a row message: %q", msg[0])
	}
	if err != nil {
		return r, false, err
	}
	return r, true, nil
}

// fillUnchanged gives an update's unchanged TOASTed values their old value
// when the old row came whole (REPLICA IDENTITY FULL: Postgres flattens it,
// TOASTed values included). The new row is then complete, which a keyless
// table needs: it names its rows by every value.
func fillUnchanged(after, before []change.Value) {
	for i, v := range after {
		if v.Kind == change.KindUnchanged && i < len(before) && before[i].Kind != change.KindUnchanged {
			after[i] = before[i]
		}
	}
}
