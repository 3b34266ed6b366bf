package warehouse

import (
	"context"
	"fmt"
	"sync"

	"github.com/sluice-dev/sluice/internal/change"
)

// Runner is the part of a warehouse target that does not depend on its
// database: one writer at a time, the tables that Reset emptied and that
// have had only snapshot reads since ("fresh": their reads append without a
// merge), and the retry of a batch whose shortcut for new keys met a key
// that was there already (a redelivery).
type Runner[S Session] struct {
	Applier *Applier
	// Tx runs fn in one transaction of the target and commits on success.
	Tx func(ctx context.Context, fn func(S) error) error
	// IsConstraint reports a unique-key violation.
	IsConstraint func(error) bool
	// Where names the target in errors, e.g. "DuckDB /data/mirror.duckdb".
	Where string

	mu    sync.Mutex
	fresh map[change.TableID]bool
}

// Reset drops and recreates the table from the schema and forgets its
// state, in one transaction.
func (r *Runner[S]) Reset(ctx context.Context, tbl *change.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fresh == nil {
		r.fresh = map[change.TableID]bool{}
	}
	err := r.Tx(ctx, func(s S) error { return r.Applier.Reset(ctx, s, tbl) })
	if err != nil {
		delete(r.fresh, tbl.ID())
		return fmt.Errorf("reset %s in %s: %w", tbl.ID(), r.Where, err)
	}
	r.fresh[tbl.ID()] = true
	return nil
}

// Apply merges the batch in one transaction together with each table's new
// state (and o.Marks), durable on return.
func (r *Runner[S]) Apply(ctx context.Context, b *change.Batch, o ApplyOptions) error {
	if len(b.Changes) == 0 && len(b.Snapshotted) == 0 && len(o.Marks) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	o.Fresh = func(id change.TableID) bool { return r.fresh[id] }
	var res Result
	apply := func(s S) (err error) {
		res, err = r.Applier.Apply(ctx, s, b, o)
		return err
	}
	err := r.Tx(ctx, apply)
	if err != nil && r.IsConstraint(err) {
		// A key staged as new (first inserted in the batch, or a snapshot
		// read into a fresh table) was there already: a redelivery.
		// Nothing was committed; merge every key in full instead.
		clear(r.fresh)
		o.Fresh, o.NoShortcut = nil, true
		err = r.Tx(ctx, apply)
	}
	if err != nil {
		return fmt.Errorf("apply batch to %s: %w", r.Where, err)
	}
	for _, id := range res.Merged {
		delete(r.fresh, id)
	}
	return nil
}
