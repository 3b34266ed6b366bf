package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/query"
	"github.com/sluice-dev/sluice/internal/verify"
	"github.com/sluice-dev/sluice/internal/warehouse"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
	whpg "github.com/sluice-dev/sluice/internal/warehouse/postgres"
)

// warehouseImpl is what every warehouse target offers.
type warehouseImpl interface {
	pipeline.Target
	Checksums(ctx context.Context, t *change.Table, buckets int) ([]warehouse.Bucket, error)
	BucketKeys(ctx context.Context, t *change.Table, buckets, id, limit int) ([]warehouse.RowHash, error)
	Close() error
}

// target adapts a warehouse to the pipeline, verify and query.
type target struct {
	warehouseImpl
	query func(ctx context.Context, sql string) (*query.Result, error)
}

var _ verify.Side = (*target)(nil)

// DuckDB lets one process write a file. A status, verify or query that
// opened it read-only while sluice was stopped holds its lock for a moment:
// a writer waits lockTries × lockWait for it.
const (
	lockTries = 60
	lockWait  = 500 * time.Millisecond
)

func openTarget(ctx context.Context, c *config.Config, log *slog.Logger) (*target, error) {
	return openWarehouse(ctx, c, log, false)
}

// openTargetReadOnly opens the target for status, verify and query when no
// sluice runs on it.
func openTargetReadOnly(ctx context.Context, c *config.Config, log *slog.Logger) (*target, error) {
	return openWarehouse(ctx, c, log, true)
}

func openWarehouse(ctx context.Context, c *config.Config, log *slog.Logger, readOnly bool) (*target, error) {
	kind, where, err := c.Target.Kind()
	if err != nil {
		return nil, err
	}
	switch kind {
	case config.TargetDuckDB:
		if readOnly {
			if _, err := os.Stat(where); errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no mirror at %s yet: start it with sluice run (or check the target path)", where)
			}
		}
		t, err := duckdb.Open(ctx, where, duckdb.Options{Schema: c.Target.Schema, ReadOnly: readOnly, Logger: log})
		for wait := 0; err != nil && !readOnly && duckdb.IsLocked(err) && wait < lockTries; wait++ {
			log.Info("DuckDB file is locked by another process; retrying", "file", where)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(lockWait):
			}
			t, err = duckdb.Open(ctx, where, duckdb.Options{Schema: c.Target.Schema, Logger: log})
		}
		if err != nil {
			if duckdb.IsLocked(err) {
				return nil, fmt.Errorf("%w\n(another process holds the DuckDB file; if it is sluice, its admin address is in %s)", err, c.AdminFile())
			}
			return nil, err
		}
		return &target{warehouseImpl: t, query: func(ctx context.Context, q string) (*query.Result, error) {
			return query.DuckDB(ctx, t.DB(), q)
		}}, nil
	case config.TargetPostgres:
		t, err := whpg.Open(ctx, where, whpg.Options{Schema: c.Target.Schema, Logger: log, ReadOnly: readOnly})
		if err != nil {
			return nil, err
		}
		return &target{warehouseImpl: t, query: func(ctx context.Context, q string) (*query.Result, error) {
			return query.Postgres(ctx, where, q)
		}}, nil
	case config.TargetRedshift:
		// sluice writes nothing into Redshift itself (it reads the stream):
		// plan, setup, merge, status and verify reach it in redshift.go.
		return nil, fmt.Errorf("sluice does not open a Redshift target for this command: query Redshift with its own client (psql, the query editor); sluice status, verify and merge read it")
	}
	return nil, fmt.Errorf("target kind %s is not supported", kind)
}

// Query runs one read-only statement.
func (w *target) Query(ctx context.Context, q string) (*query.Result, error) {
	if w.query == nil {
		return nil, fmt.Errorf("this target takes no queries")
	}
	return w.query(ctx, q)
}

// Checksums adapts the warehouse's buckets to verify's.
func (w *target) Checksums(ctx context.Context, t *change.Table, buckets int) ([]verify.Bucket, error) {
	bs, err := w.warehouseImpl.Checksums(ctx, t, buckets)
	if err != nil {
		return nil, err
	}
	return toVerifyBuckets(bs), nil
}

// BucketRows adapts the warehouse's row hashes to verify's.
func (w *target) BucketRows(ctx context.Context, t *change.Table, buckets, bucket, limit int) ([]verify.KeyRow, error) {
	rs, err := w.warehouseImpl.BucketKeys(ctx, t, buckets, bucket, limit)
	if err != nil {
		return nil, err
	}
	return toKeyRows(rs), nil
}

func toVerifyBuckets(bs []warehouse.Bucket) []verify.Bucket {
	out := make([]verify.Bucket, len(bs))
	for i, b := range bs {
		out[i] = verify.Bucket{ID: b.ID, Rows: b.Rows, Sum: b.Sum}
	}
	return out
}

func toKeyRows(rs []warehouse.RowHash) []verify.KeyRow {
	out := make([]verify.KeyRow, len(rs))
	for i, r := range rs {
		out[i] = verify.KeyRow{Key: "(" + strings.Join(r.Key, ", ") + ")", Hash: r.Hash}
	}
	return out
}

// sourceSide computes verify's figures on the source, inside the snapshot.
type sourceSide struct{ tx pgx.Tx }

func (s sourceSide) Checksums(ctx context.Context, t *change.Table, buckets int) ([]verify.Bucket, error) {
	bs, err := whpg.Checksums(ctx, s.tx, t, buckets)
	if err != nil {
		return nil, err
	}
	return toVerifyBuckets(bs), nil
}

func (s sourceSide) BucketRows(ctx context.Context, t *change.Table, buckets, bucket, limit int) ([]verify.KeyRow, error) {
	rs, err := whpg.BucketKeys(ctx, s.tx, t, buckets, bucket, limit)
	if err != nil {
		return nil, err
	}
	return toKeyRows(rs), nil
}
