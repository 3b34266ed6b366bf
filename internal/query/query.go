package query

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// MaxRows bounds a result: a query result is for people to read.
const MaxRows = 10_000

// Result is a query result in plain JSON values.
type Result struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
}

// DuckDB runs q on db in a transaction that is always rolled back, so a
// statement that tries to write changes nothing. DuckDB has no read-only
// transactions (the driver refuses them), hence the rollback. The mirrored
// tables keep their source schema names, so every schema that exists is on
// the search path, public first.
func DuckDB(ctx context.Context, db *sql.DB, q string) (*Result, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to DuckDB: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return nil, fmt.Errorf("begin the query's transaction: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck
	// The search path lists only schemas that exist.
	var schemas []string
	if rows, err := conn.QueryContext(ctx, "SELECT DISTINCT schema_name FROM information_schema.schemata WHERE catalog_name = current_database() AND schema_name NOT IN ('information_schema', 'pg_catalog') ORDER BY schema_name = 'public' DESC"); err == nil {
		for rows.Next() {
			var s string
			if rows.Scan(&s) == nil {
				schemas = append(schemas, s)
			}
		}
		rows.Close()
	}
	if len(schemas) > 0 {
		if _, err := conn.ExecContext(ctx, "SET search_path = "+change.QuoteLiteral(strings.Join(schemas, ","))); err != nil {
			return nil, fmt.Errorf("set the search path: %w", err)
		}
	}
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err // the statement's own error is the message a person needs
	}
	return collect(rows)
}

func collect(rows *sql.Rows) (*Result, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	res := &Result{Columns: cols, Rows: [][]any{}}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		if !res.add(vals) {
			break
		}
	}
	return res, rows.Err()
}

// Postgres runs q in a read-only transaction on a connection of its own to
// the Postgres at url.
func Postgres(ctx context.Context, url, q string) (*Result, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect to the target: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin the query's read-only transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	rows, err := tx.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &Result{Rows: [][]any{}}
	for _, f := range rows.FieldDescriptions() {
		res.Columns = append(res.Columns, f.Name)
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		if !res.add(vals) {
			break
		}
	}
	return res, rows.Err()
}

// add appends a row, its values made JSON-friendly, and reports whether
// there is room for more (MaxRows).
func (r *Result) add(vals []any) bool {
	for i, v := range vals {
		vals[i] = plain(v)
	}
	r.Rows = append(r.Rows, vals)
	return len(r.Rows) < MaxRows
}

// plain turns driver values into JSON-friendly ones.
func plain(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case nil, string, bool, int64, int32, int16, int8, int, uint64, uint32, float64, float32:
		return x
	case map[string]any, []any:
		// DuckDB hands JSON (and lists, structs) over decoded: show JSON text,
		// not Go's map syntax.
		if b, err := json.Marshal(x); err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}
