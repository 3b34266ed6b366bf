package duckdb

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

var _ warehouse.DirectLoader = (*session)(nil)

// LoadDirect implements warehouse.DirectLoader: rows of new keys are
// appended straight into the target table with typed values, which skips
// the staging table, the casts and a copy of every row. Only tables whose
// every column converts exactly in Go qualify (no intervals, times, JSON,
// arrays, wide decimals), and only values that do (no infinities, no BC
// dates); anything else returns ErrNoDirect before a row is written.
func (s *session) LoadDirect(ctx context.Context, target change.TableID, tbl *change.Table, rows []warehouse.Row) error {
	conv := make([]func(string) (driver.Value, bool), len(tbl.Columns))
	names := make([]string, len(tbl.Columns))
	for i, c := range tbl.Columns {
		if conv[i] = directConverter(warehouse.TypeOf(c)); conv[i] == nil {
			return warehouse.ErrNoDirect
		}
		names[i] = c.Name
	}
	// Convert everything first: a value that does not convert sends the
	// whole segment to staging with nothing appended.
	vals := make([]driver.Value, len(rows)*len(conv))
	for j, r := range rows {
		out := vals[j*len(conv) : (j+1)*len(conv)]
		for i, f := range conv {
			if i >= len(r.Values) {
				continue
			}
			v := r.Values[i]
			switch v.Kind {
			case change.KindNull:
				continue
			case change.KindUnchanged, change.KindArray:
				return warehouse.ErrNoDirect
			}
			x, ok := f(v.Text)
			if !ok {
				return warehouse.ErrNoDirect
			}
			out[i] = x
		}
	}
	return s.conn.Raw(func(dc any) error {
		conn, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("unexpected DuckDB driver connection %T", dc)
		}
		app, err := duckdb.NewAppenderWithColumns(conn, "", target.Schema, target.Name, names)
		if err != nil {
			return fmt.Errorf("open appender on %s: %w", target, err)
		}
		n := len(conv)
		for j := range rows {
			if j%4096 == 0 && ctx.Err() != nil {
				app.Close()
				return ctx.Err()
			}
			if err := app.AppendRow(vals[j*n : (j+1)*n]...); err != nil {
				app.Close()
				return fmt.Errorf("append row: %w", err)
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("flush appender into %s: %w", target, err)
		}
		if s.direct != nil {
			s.direct.Add(int64(len(rows)))
		}
		return nil
	})
}

// directConverter returns the conversion of a value's text into what the
// Appender takes for the column's DuckDB type, or nil when the family is
// left to staging.
func directConverter(ct warehouse.ColType) func(string) (driver.Value, bool) {
	if ct.Array {
		return nil
	}
	switch ct.Family {
	case warehouse.FamBool:
		return func(s string) (driver.Value, bool) { return s == "true", s == "true" || s == "false" }
	case warehouse.FamInt16, warehouse.FamInt32, warehouse.FamInt64:
		return func(s string) (driver.Value, bool) {
			n, err := strconv.ParseInt(s, 10, 64)
			return n, err == nil
		}
	case warehouse.FamFloat32:
		return func(s string) (driver.Value, bool) {
			f, err := strconv.ParseFloat(s, 32)
			return float32(f), err == nil
		}
	case warehouse.FamFloat64:
		return func(s string) (driver.Value, bool) {
			f, err := strconv.ParseFloat(s, 64)
			return f, err == nil
		}
	case warehouse.FamText, warehouse.FamChar, warehouse.FamNumeric:
		return func(s string) (driver.Value, bool) { return s, true }
	case warehouse.FamBytes:
		return func(s string) (driver.Value, bool) { return []byte(s), true }
	case warehouse.FamDecimal:
		if ct.Precision > 18 {
			return nil // stored as HUGEINT: left to the cast
		}
		scale := ct.Scale
		return func(s string) (driver.Value, bool) { return unscaled(s, scale) }
	case warehouse.FamDate:
		return func(s string) (driver.Value, bool) {
			t, err := time.Parse("2006-01-02", s)
			return t, err == nil
		}
	case warehouse.FamTimestamp:
		return func(s string) (driver.Value, bool) {
			t, err := time.Parse("2006-01-02T15:04:05.999999999", s)
			return t, err == nil
		}
	case warehouse.FamTimestampTZ:
		return func(s string) (driver.Value, bool) {
			t, err := time.Parse("2006-01-02T15:04:05.999999999Z07:00", s)
			return t, err == nil
		}
	case warehouse.FamUUID:
		return func(s string) (driver.Value, bool) {
			var u duckdb.UUID
			h := strings.ReplaceAll(s, "-", "")
			if len(h) != 32 {
				return nil, false
			}
			if _, err := hex.Decode(u[:], []byte(h)); err != nil {
				return nil, false
			}
			return u, true
		}
	}
	return nil
}

// unscaled turns the digits "-12.30" of a DECIMAL(p, scale) with p <= 18
// into the integer DuckDB stores, -1230 for scale 2.
func unscaled(s string, scale int) (driver.Value, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > scale || whole == "" && frac == "" {
		return nil, false
	}
	digits := whole + frac + strings.Repeat("0", scale-len(frac))
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return nil, false
	}
	if neg {
		n = -n
	}
	return n, true
}
