package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Checksums computes, inside Postgres, per bucket of t's key space, the row
// count and an order-independent checksum over every column of table t
// (t.ID() names it). It runs on any connection, so sluice verify uses it on
// the source as well as on a Postgres target; the canonical forms (see
// warehouse/sqlgen.go) make the result comparable with a DuckDB mirror.
func Checksums(ctx context.Context, q Querier, t *change.Table, buckets int) ([]warehouse.Bucket, error) {
	if buckets < 1 {
		return nil, fmt.Errorf("checksum %s: buckets must be at least 1", t.ID())
	}
	rows, err := q.Query(ctx, warehouse.ChecksumSQL(Dialect{}, t.ID(), t, buckets), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, fmt.Errorf("checksum %s: %w", t.ID(), err)
	}
	var got []warehouse.Bucket
	var b warehouse.Bucket
	_, err = pgx.ForEachRow(rows, []any{&b.ID, &b.Rows, &b.Sum}, func() error { got = append(got, b); return nil })
	if err != nil {
		return nil, fmt.Errorf("checksum %s: %w", t.ID(), err)
	}
	return warehouse.FillBuckets(got, buckets), nil
}

// BucketKeys returns the rows of one bucket of table t (key in canonical
// text and row hash), at most limit, in an order every dialect shares.
func BucketKeys(ctx context.Context, q Querier, t *change.Table, buckets, id, limit int) ([]warehouse.RowHash, error) {
	rows, err := q.Query(ctx, warehouse.BucketKeysSQL(Dialect{}, t.ID(), t, buckets, id, limit), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, fmt.Errorf("list bucket %d of %s: %w", id, t.ID(), err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (warehouse.RowHash, error) {
		raw := r.RawValues()
		h := warehouse.RowHash{Hash: string(raw[len(raw)-1])}
		for _, v := range raw[:len(raw)-1] {
			h.Key = append(h.Key, string(v))
		}
		return h, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list bucket %d of %s: %w", id, t.ID(), err)
	}
	return out, nil
}
