package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// typeInfo is what the decoder needs to know of a column type: the Kind its
// values take and, for arrays, the element type and delimiter.
type typeInfo struct {
	oid   uint32
	kind  change.Kind
	elem  *typeInfo // arrays only
	delim byte      // arrays only: ',' for almost everything, ';' for box
	base  string    // domains: the base type's name; arrays: the element type's name
}

// Built-in type OIDs whose values are not plain strings in the record.
var builtinKinds = map[uint32]change.Kind{
	16:   change.KindBool,        // bool
	20:   change.KindInt,         // int8
	21:   change.KindInt,         // int2
	23:   change.KindInt,         // int4
	26:   change.KindInt,         // oid
	700:  change.KindFloat,       // float4
	701:  change.KindFloat,       // float8
	1700: change.KindNumeric,     // numeric
	17:   change.KindBytes,       // bytea
	1082: change.KindDate,        // date
	1083: change.KindTime,        // time
	1266: change.KindTime,        // timetz
	1114: change.KindTimestamp,   // timestamp
	1184: change.KindTimestampTZ, // timestamptz
	114:  change.KindJSON,        // json
	3802: change.KindJSON,        // jsonb
}

// typeCache resolves type OIDs once per process. OIDs of a database do not
// change meaning while it exists, so entries never expire.
type typeCache struct {
	mu    sync.Mutex
	types map[uint32]*typeInfo
}

func newTypeCache() *typeCache { return &typeCache{types: map[uint32]*typeInfo{}} }

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (c *typeCache) resolve(ctx context.Context, q querier, oid uint32) (*typeInfo, error) {
	c.mu.Lock()
	ti := c.types[oid]
	c.mu.Unlock()
	if ti != nil {
		return ti, nil
	}
	ti, err := c.lookup(ctx, q, oid, 0)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.types[oid] = ti
	c.mu.Unlock()
	return ti, nil
}

func (c *typeCache) lookup(ctx context.Context, q querier, oid uint32, depth int) (*typeInfo, error) {
	if depth > 16 {
		return nil, fmt.Errorf("resolve type %d: domains nest too deep", oid)
	}
	if k, ok := builtinKinds[oid]; ok {
		return &typeInfo{oid: oid, kind: k}, nil
	}
	var (
		typtype            string
		basetype, elem     uint32
		delim              string
		category           string
		typlen             int16
		isArrayHandler     bool
		baseName, elemName string
	)
	err := q.QueryRow(ctx, `SELECT t.typtype::text, t.typbasetype, t.typelem, t.typdelim::text, t.typcategory::text, t.typlen,
		t.typsubscript = 'array_subscript_handler'::regproc,
		CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, NULL) ELSE '' END,
		CASE WHEN t.typelem <> 0 THEN format_type(t.typelem, NULL) ELSE '' END
		FROM pg_catalog.pg_type t WHERE t.oid = $1`, oid).
		Scan(&typtype, &basetype, &elem, &delim, &category, &typlen, &isArrayHandler, &baseName, &elemName)
	if err != nil {
		return nil, fmt.Errorf("look up type %d: %w", oid, err)
	}
	switch {
	case typtype == "d":
		b, err := c.lookup(ctx, q, basetype, depth+1)
		if err != nil {
			return nil, err
		}
		// A domain takes its base type's shape; the record names the base.
		d := *b
		d.oid = oid
		d.base = baseName
		return &d, nil
	case category == "A" && elem != 0 && typlen == -1 && isArrayHandler && oid != 22 && oid != 30:
		// int2vector (22) and oidvector (30) look like arrays but print space-separated.
		e, err := c.lookup(ctx, q, elem, depth+1)
		if err != nil {
			return nil, err
		}
		var ed string
		if err := q.QueryRow(ctx, `SELECT typdelim::text FROM pg_catalog.pg_type WHERE oid = $1`, elem).Scan(&ed); err != nil {
			return nil, fmt.Errorf("look up type %d: %w", elem, err)
		}
		d := byte(',')
		if len(ed) == 1 {
			d = ed[0]
		}
		return &typeInfo{oid: oid, kind: change.KindArray, elem: e, delim: d, base: elemName}, nil
	}
	// Enums, ranges, network, geometric, extension types...: Postgres' own text.
	return &typeInfo{oid: oid, kind: change.KindText}, nil
}

// changeType builds the change.Type for a column.
func (ti *typeInfo) changeType(name string) change.Type {
	t := change.Type{OID: ti.oid, Name: name, Kind: ti.kind, Base: ti.base}
	if ti.kind == change.KindArray {
		t.Elem = ti.elem.kind
	}
	return t
}

// decode turns Postgres' text form of a value into a change.Value. The
// string is kept (not copied) where the text is already the record form.
func (ti *typeInfo) decode(s string) (change.Value, error) {
	switch ti.kind {
	case change.KindBool:
		switch s {
		case "t":
			return change.V(change.KindBool, "true"), nil
		case "f":
			return change.V(change.KindBool, "false"), nil
		}
		return change.Value{}, fmt.Errorf("bool %q: want t or f", s)
	case change.KindBytes:
		if !strings.HasPrefix(s, `\x`) {
			return change.Value{}, fmt.Errorf("bytea %.20q: want the hex form (bytea_output = hex)", s)
		}
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return change.Value{}, fmt.Errorf("bytea: %w", err)
		}
		return change.V(change.KindBytes, string(b)), nil
	case change.KindTimestamp, change.KindTimestampTZ:
		return change.V(ti.kind, isoTimestamp(s, ti.kind == change.KindTimestampTZ)), nil
	case change.KindTime:
		return change.V(ti.kind, normOffset(s, 0)), nil
	case change.KindArray:
		return parseArray(s, ti.elem, ti.delim)
	}
	return change.V(ti.kind, s), nil
}

// isoTimestamp turns "2024-01-02 03:04:05.1+00" into "2024-01-02T03:04:05.1+00:00".
// Infinity stays as it is; " BC" stays at the end.
func isoTimestamp(s string, tz bool) string {
	if len(s) < 11 || s[0] == 'i' || s[0] == '-' && s[1] == 'i' {
		return s
	}
	sp := strings.IndexByte(s, ' ')
	if sp < 0 {
		return s
	}
	out := s[:sp] + "T" + s[sp+1:]
	if tz {
		out = normOffset(out, sp+1)
	}
	return out
}

// normOffset rewrites a trailing "+HH" zone offset (after from) as "+HH:MM".
func normOffset(s string, from int) string {
	bc := ""
	if strings.HasSuffix(s, " BC") {
		s, bc = s[:len(s)-3], " BC"
	}
	i := strings.LastIndexAny(s, "+-")
	if i <= from || i < 0 {
		return s + bc
	}
	if len(s)-i == 3 { // "+HH"
		return s + ":00" + bc
	}
	return s + bc
}
