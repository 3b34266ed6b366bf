package pipeline

import (
	"context"

	"github.com/sluice-dev/sluice/internal/change"
)

// Emit hands a batch downstream. It blocks while the downstream is full and
// returns an error only when the pipeline is stopping. The callee takes
// ownership of the batch.
type Emit func(ctx context.Context, b *change.Batch) error

// Source is what the pipeline needs of a change source (source/postgres).
type Source interface {
	// Snapshot reads the tables consistently and emits their rows as op=r
	// changes. For each table, the batch holding its last row lists it in
	// Snapshotted. The source's streaming position must stay at or before
	// every snapshot position so no change after a snapshot is missed.
	Snapshot(ctx context.Context, tables []*change.Table, emit Emit) error
	// Stream emits changes from the slot's confirmed position onward until
	// ctx ends or an unrecoverable error occurs; transient disconnects are
	// retried with backoff inside.
	Stream(ctx context.Context, emit Emit) error
	// Confirm reports that everything up to lsn is durable downstream; the
	// source may confirm it to Postgres. Positions only move forward.
	Confirm(lsn change.LSN)
}

// Target is what the pipeline needs of a place changes land in: a warehouse
// (warehouse/duckdb, warehouse/postgres) or a stream (stream/kinesis).
type Target interface {
	// State reports each mirrored table's snapshot state and applied position.
	State(ctx context.Context) (map[change.TableID]change.TableState, error)
	// Reset prepares a table for a (re)snapshot: creates it from the schema,
	// or empties it, and forgets its state, in one transaction.
	Reset(ctx context.Context, t *change.Table) error
	// Apply makes the batch durable. Warehouses merge it in one transaction
	// together with each table's new state, skipping changes at or before a
	// table's applied position, so replaying a batch changes nothing.
	Apply(ctx context.Context, b *change.Batch) error
}

// Transform rewrites a batch between source and target. It is the seam for
// SQL pipelines (cleanse, enrich, join); the default is Identity.
type Transform interface {
	Transform(ctx context.Context, b *change.Batch) (*change.Batch, error)
}

// Identity is the default Transform: mirror tables as they are.
type Identity struct{}

// Transform returns b unchanged.
func (Identity) Transform(_ context.Context, b *change.Batch) (*change.Batch, error) { return b, nil }
