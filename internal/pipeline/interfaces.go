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
	// (A BatchAcker is handed its own tokens instead.)
	Confirm(lsn change.LSN)
}

// BatchAcker is a Source whose Batch.Ack is not a source position but a
// token of its own, larger for each batch it emits (a stream reader: its
// records come from several shards, in no one LSN order, and its
// checkpoints travel in Batch.Marks). The pipeline merges and confirms
// tokens as it does positions: Confirm(t) says the target committed every
// batch up to the one acked t. It does not show them as positions
// (Stats.ConfirmedBatch instead of Stats.ConfirmedLSN), and Pause refuses
// (ErrNoPositions): a hold needs changes in commit order.
type BatchAcker interface {
	Source
	// AcksBatches marks the source's Acks as tokens; it does nothing.
	AcksBatches()
}

// Fencer is a Source whose batches a target may refuse for good because
// another reader applied some of their records meanwhile: the refusal is
// an ErrFenced (warehouse.FenceError, for a mark's Below). Instead of
// retrying such a batch, the pipeline hands it, with the error, to Fenced
// and applies the batch Fenced returns in its place (those records left
// out, the same Ack; it may be fenced again), or, for nil, drops it,
// confirming nothing of it. b may be several emitted batches merged, every
// one after the last confirmed up to b.Ack; it is the source's batch, before
// the transform, which is handed the replacement as a batch handed again.
// A source whose batches are never fenced need not implement it; a fenced
// batch of one that does not is retried like any refused batch.
type Fencer interface {
	Fenced(b *change.Batch, err error) *change.Batch
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

// Transform rewrites batches between source and target: the seam for SQL
// views (internal/view), which turn source changes into changes of the
// tables they define. The default, Identity, mirrors the tables as they are.
//
// Its contract:
//   - Start declares what the target receives: the output tables (created,
//     reset and verified like mirrored tables), the ones the target must
//     reset before the run, and the source tables to snapshot for them.
//   - Transform is handed the source's batches in order. They may end inside
//     a transaction; a transform that needs whole transactions keeps the
//     unfinished one and emits its output with the batch that completes it.
//     Output changes carry positions derived from the source transaction
//     that caused them, so "a later position wins" holds downstream.
//   - It is idempotent by position: a batch handed again (a retry, or a
//     replay after a crash, which starts at the slot's confirmed position)
//     yields the same output for what it had already seen.
//   - Confirm says the target durably holds every output of the source
//     transactions that end at or before lsn: what replays no longer need
//     may go.
type Transform interface {
	Start(ctx context.Context, source []*change.Table, state map[change.TableID]change.TableState) (TransformPlan, error)
	Transform(ctx context.Context, b *change.Batch) (*change.Batch, error)
	Confirm(lsn change.LSN)
}

// Pager is a Transform whose output for one batch may come in parts (a
// view's whole output, which must not be held in memory at once). After
// applying a transformed batch, while Pending, the pipeline applies each
// batch Next returns, before it hands the transform the next source batch
// (nor transforms one ahead). Those batches confirm nothing to the source.
type Pager interface {
	Pending() bool
	Next(ctx context.Context) (*change.Batch, error)
}

// TransformPlan is what a Transform's Start decides.
type TransformPlan struct {
	Outputs  []*change.Table // every table the target receives
	Reset    []*change.Table // outputs whose snapshot starts over: the target resets them first
	Snapshot []*change.Table // source tables the source snapshots for them
}

// Identity is the default Transform: mirror tables as they are.
type Identity struct{}

// Start mirrors every source table and snapshots those the target does not
// hold completely.
func (Identity) Start(_ context.Context, source []*change.Table, state map[change.TableID]change.TableState) (TransformPlan, error) {
	pl := TransformPlan{Outputs: source}
	for _, t := range source {
		if !state[t.ID()].Snapshotted {
			pl.Reset = append(pl.Reset, t)
			pl.Snapshot = append(pl.Snapshot, t)
		}
	}
	return pl, nil
}

// Transform returns b unchanged.
func (Identity) Transform(_ context.Context, b *change.Batch) (*change.Batch, error) { return b, nil }

// Confirm does nothing: Identity keeps nothing.
func (Identity) Confirm(change.LSN) {}
