package redshift

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Conn is what this package needs of a connection to the warehouse. Two
// implementations: PgConn (the Postgres wire protocol Redshift speaks, via
// pgx) and DataAPI (the Redshift Data API over HTTPS).
type Conn interface {
	// Exec runs one statement on its own (outside any transaction block).
	Exec(ctx context.Context, sql string) error
	// ExecTx runs the statements in order in ONE transaction: all or none.
	ExecTx(ctx context.Context, stmts []string) error
	// Query runs one statement and returns its rows as text, nil for NULL.
	Query(ctx context.Context, sql string) ([][]*string, error)
}

// PgConn runs statements over one pgx connection (the Postgres wire
// protocol Redshift speaks). Every statement is sent without parameters in
// the simple protocol, which Redshift and connection proxies accept. A
// PgConn is not safe for concurrent use: one merge at a time.
type PgConn struct {
	conn *pgx.Conn
}

// NewPgConn wraps conn, first running the dialect's session statements on
// it (for Redshift: case-sensitive identifiers, so SUPER navigation finds
// mixed-case JSON keys and quoted names mean what they say).
func NewPgConn(ctx context.Context, conn *pgx.Conn, d Dialect) (*PgConn, error) {
	for _, s := range d.Session() {
		if _, err := conn.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
			return nil, fmt.Errorf("prepare session (%s): %w", s, err)
		}
	}
	return &PgConn{conn: conn}, nil
}

var _ Conn = (*PgConn)(nil)

// Exec runs one statement outside a transaction block.
func (c *PgConn) Exec(ctx context.Context, sql string) error {
	conn := c.conn
	if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		return &StatementError{SQL: sql, Err: err}
	}
	return nil
}

// ExecTx runs stmts in one transaction.
func (c *PgConn) ExecTx(ctx context.Context, stmts []string) (err error) {
	conn := c.conn
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	for i, s := range stmts {
		if _, err := tx.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
			return &StatementError{SQL: s, Index: i, Err: err}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Query runs one statement and returns its rows as text.
//
// It goes to the protocol level (pgconn) on purpose: pgx's own Query in the
// simple protocol refuses to run unless the server reports
// standard_conforming_strings=on and client_encoding=UTF8, and Redshift
// reports its encoding as UNICODE and sends no standard_conforming_strings.
// The statement has no parameters, so nothing needs pgx's client-side
// quoting, which is what those checks guard.
func (c *PgConn) Query(ctx context.Context, sql string) ([][]*string, error) {
	results, err := c.conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, &StatementError{SQL: sql, Err: err}
	}
	if len(results) == 0 {
		return nil, nil
	}
	last := results[len(results)-1]
	out := make([][]*string, len(last.Rows))
	for r, raw := range last.Rows { // simple protocol: text format
		row := make([]*string, len(raw))
		for i, b := range raw {
			if b != nil {
				s := string(b)
				row[i] = &s
			}
		}
		out[r] = row
	}
	return out, nil
}

// StatementError is a failed statement: which one, and why.
type StatementError struct {
	SQL   string
	Index int // position in the transaction
	Err   error
}

func (e *StatementError) Error() string {
	s := e.SQL
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return fmt.Sprintf("statement %d (%s): %v", e.Index+1, s, e.Err)
}

func (e *StatementError) Unwrap() error { return e.Err }
