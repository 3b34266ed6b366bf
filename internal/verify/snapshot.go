package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-dev/sluice/internal/change"
)

// SourceSnapshot is a read-only transaction on the source that sees exactly
// the transactions committed before At.
type SourceSnapshot struct {
	At   change.LSN
	Tx   pgx.Tx
	conn *pgx.Conn
	repl *pgconn.PgConn
}

// OpenSourceSnapshot creates a temporary logical replication slot with an
// exported snapshot and imports it into a new transaction. The slot's
// consistent point is the position the running pipeline is then held at, so
// both sides are read at the same point of the source's history. The slot is
// temporary: Postgres drops it when Close ends the connection.
//
// TRUNCATE (and other table rewrites) are not MVCC-safe: a snapshot taken
// before one sees the table empty afterwards. So each table is locked in
// ACCESS SHARE mode (holding back further rewrites until Close) and checked
// for a rewrite between the snapshot and the lock; then ErrRewritten is
// returned and the caller takes a new snapshot.
func OpenSourceSnapshot(ctx context.Context, url string, tables []change.TableID) (*SourceSnapshot, error) {
	rc, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("source URL is not a valid Postgres URL")
	}
	rc.RuntimeParams["replication"] = "database"
	rc.RuntimeParams["application_name"] = "sluice verify"
	repl, err := pgconn.ConnectConfig(ctx, rc)
	if err != nil {
		return nil, fmt.Errorf("open replication connection to the source: %w", err)
	}
	slot := "sluice_verify_" + strconv.Itoa(os.Getpid()) + "_" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication,
	})
	if err != nil {
		repl.Close(ctx)
		return nil, fmt.Errorf("create a temporary replication slot for a consistent snapshot (needs one free slot): %w", err)
	}
	at, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		repl.Close(ctx)
		return nil, fmt.Errorf("parse consistent point %q: %w", res.ConsistentPoint, err)
	}
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		repl.Close(ctx)
		return nil, fmt.Errorf("source URL is not a valid Postgres URL")
	}
	cc.RuntimeParams["application_name"] = "sluice verify"
	cc.RuntimeParams["TimeZone"] = "UTC"
	cc.RuntimeParams["extra_float_digits"] = "3"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		repl.Close(ctx)
		return nil, fmt.Errorf("connect to the source: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		_, err = tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+change.QuoteLiteral(res.SnapshotName))
	}
	if err != nil {
		conn.Close(ctx)
		repl.Close(ctx)
		return nil, fmt.Errorf("import the source snapshot: %w", err)
	}
	snap := &SourceSnapshot{At: change.LSN(at), Tx: tx, conn: conn, repl: repl}
	for _, id := range tables {
		if _, err := tx.Exec(ctx, "LOCK TABLE "+id.Quoted()+" IN ACCESS SHARE MODE"); err != nil {
			snap.Close(ctx)
			return nil, fmt.Errorf("lock source table %s for verify: %w", id, err)
		}
		// pg_class read through the snapshot gives the file the snapshot
		// saw; pg_relation_filenode the current one (the lock made the
		// relation cache current).
		var rewritten bool
		// A partitioned root has no storage of its own: check its leaves
		// (a plain table is its own only leaf).
		err := tx.QueryRow(ctx, `SELECT coalesce(bool_or(c.relfilenode <> pg_relation_filenode(c.oid)), false)
			FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf`,
			id.Quoted()).Scan(&rewritten)
		if err != nil {
			snap.Close(ctx)
			return nil, fmt.Errorf("check source table %s for rewrites: %w", id, err)
		}
		if rewritten {
			snap.Close(ctx)
			return nil, fmt.Errorf("%w: %s", ErrRewritten, id)
		}
	}
	return snap, nil
}

// ErrRewritten means a table was truncated or rewritten after the snapshot
// was taken, so the snapshot no longer sees its rows; take a new one.
var ErrRewritten = errors.New("a table was truncated or rewritten while the snapshot was taken")

// Close ends the transaction and drops the temporary slot.
func (s *SourceSnapshot) Close(ctx context.Context) {
	_ = s.Tx.Rollback(ctx)
	s.conn.Close(ctx)
	s.repl.Close(ctx)
}
