package warehouse

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// OpenTx is a transaction a Runner keeps open across Apply calls.
type OpenTx[S Session] struct {
	Session  S
	Commit   func(ctx context.Context) error
	Rollback func()
}

// DefaultCarryRows bounds the snapshot rows one carried transaction holds.
const DefaultCarryRows = 500_000

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
	// Begin, when set, opens a transaction that Apply may keep open over
	// several batches of snapshot rows (see Apply).
	Begin func(ctx context.Context) (*OpenTx[S], error)
	// CarryRows is how many snapshot rows may wait in one open transaction
	// (default DefaultCarryRows).
	CarryRows int

	mu    sync.Mutex
	fresh map[change.TableID]bool
	carry *OpenTx[S] // the open transaction holding carried snapshot rows
	rows  int        // rows in carry
	// keys holds a hash of every carried row's table and key, so that a
	// batch handed again (a retry of one whose commit was reported failed
	// but happened) is seen before it is appended over its own rows.
	keys map[uint64]struct{}
	seed maphash.Seed
}

// Reset drops and recreates the table from the schema and forgets its
// state, in one transaction.
func (r *Runner[S]) Reset(ctx context.Context, tbl *change.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.commitCarried(ctx); err != nil {
		return err
	}
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
// state (and o.Marks), durable on return, with one exception that nothing
// depends on: a batch of nothing but snapshot rows of fresh tables (no
// marker, no ack) may be carried, left uncommitted in a transaction that the
// next such batches join, so that a snapshot commits once per CarryRows
// rows instead of once per batch (a commit of appended rows costs as much
// as appending them again in DuckDB). Carried rows are committed before
// anything else is applied or reset, so they are durable before the marker
// that completes their snapshot; lost (a crash, Close), they lose nothing:
// their tables' state still says "not snapshotted", so the next run resets
// them and snapshots them again, as after a crash. Within a run they cannot
// be handed again, so a failure while rows are carried is Fatal (the run
// stops and the next one starts the snapshot over).
func (r *Runner[S]) Apply(ctx context.Context, b *change.Batch, o ApplyOptions) error {
	if len(b.Changes) == 0 && len(b.Snapshotted) == 0 && len(o.Marks) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	o.Fresh = func(id change.TableID) bool { return r.fresh[id] }
	if r.carriable(b, o) {
		hashes := r.hashKeys(b)
		if r.carry != nil && r.carried(hashes) {
			// A key already waits in the transaction (a redelivery): commit
			// what waits, then apply the batch the usual way, which handles
			// keys that are there already.
			if err := r.commitCarried(ctx); err != nil {
				return err
			}
			hashes = nil // and not carried again
		} else if r.carry != nil {
			r.remember(hashes)
			if _, err := r.Applier.Apply(ctx, r.carry.Session, b, o); err != nil {
				r.dropCarried()
				return r.lost(err)
			}
			r.rows += len(b.Changes)
			if r.rows >= r.carryRows() {
				return r.commitCarried(ctx)
			}
			return nil
		}
		if r.carry == nil && len(hashes) > 0 {
			tx, err := r.Begin(ctx)
			if err != nil {
				return fmt.Errorf("apply batch to %s: %w", r.Where, err)
			}
			if _, err := r.Applier.Apply(ctx, tx.Session, b, o); err == nil {
				r.carry, r.rows = tx, len(b.Changes)
				r.remember(hashes)
				return nil
			}
			// Nothing was carried before this batch: apply it the usual
			// way, which retries a constraint violation without the shortcut.
			tx.Rollback()
		}
	}
	if err := r.commitCarried(ctx); err != nil {
		return err
	}
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

func (r *Runner[S]) carryRows() int {
	if r.CarryRows > 0 {
		return r.CarryRows
	}
	return DefaultCarryRows
}

// carriable reports whether b may be left uncommitted (see Apply).
func (r *Runner[S]) carriable(b *change.Batch, o ApplyOptions) bool {
	if r.Begin == nil || o.Mode != ModeReplication || o.NoShortcut || len(o.Marks) > 0 ||
		b.Ack != 0 || len(b.Snapshotted) > 0 || len(b.Reset) > 0 || len(b.Changes) == 0 {
		return false
	}
	for i := range b.Changes {
		if c := &b.Changes[i]; c.Op != change.OpRead || !r.fresh[c.Table.ID()] {
			return false
		}
	}
	return true
}

// hashKeys hashes the table and key of every row of a batch of reads.
func (r *Runner[S]) hashKeys(b *change.Batch) []uint64 {
	if r.keys == nil {
		r.keys = map[uint64]struct{}{}
		r.seed = maphash.MakeSeed()
	}
	out := make([]uint64, len(b.Changes))
	var h maphash.Hash
	h.SetSeed(r.seed)
	for i := range b.Changes {
		c := &b.Changes[i]
		h.Reset()
		h.WriteString(c.Table.Schema)
		h.WriteByte(0)
		h.WriteString(c.Table.Name)
		for _, k := range c.Table.Identity() {
			h.WriteByte(0)
			if k < len(c.After) {
				writeValue(&h, c.After[k])
			}
		}
		out[i] = h.Sum64()
	}
	return out
}

func writeValue(h *maphash.Hash, v change.Value) {
	h.WriteByte(byte(v.Kind))
	h.WriteString(v.Text)
	for _, e := range v.Elems {
		h.WriteByte(1)
		writeValue(h, e)
	}
}

// carried reports whether a hash is among the carried rows' (a collision
// only commits early).
func (r *Runner[S]) carried(hashes []uint64) bool {
	for _, x := range hashes {
		if _, ok := r.keys[x]; ok {
			return true
		}
	}
	return false
}

func (r *Runner[S]) remember(hashes []uint64) {
	for _, x := range hashes {
		r.keys[x] = struct{}{}
	}
}

// commitCarried commits the carried rows, if any.
func (r *Runner[S]) commitCarried(ctx context.Context) error {
	if r.carry == nil {
		return nil
	}
	tx := r.carry
	r.carry, r.rows = nil, 0
	clear(r.keys)
	if err := tx.Commit(ctx); err != nil {
		tx.Rollback()
		r.forgetFresh()
		return r.lost(err)
	}
	return nil
}

// dropCarried rolls the carried rows back.
func (r *Runner[S]) dropCarried() {
	if r.carry != nil {
		r.carry.Rollback()
		r.carry, r.rows = nil, 0
		clear(r.keys)
		r.forgetFresh()
	}
}

// forgetFresh makes every table ineligible for the shortcut: after carried
// rows were lost, this process must not append more to any of them.
func (r *Runner[S]) forgetFresh() { clear(r.fresh) }

// lost is the error for a failure that lost carried snapshot rows.
func (r *Runner[S]) lost(err error) error {
	return &pipeline.TargetError{Class: pipeline.Fatal, Fix: "run again: the snapshot starts over",
		Err: fmt.Errorf("apply snapshot rows to %s: %w (rows of earlier batches waiting in the same transaction are lost: the snapshot starts over on the next run)", r.Where, err)}
}

// Carrying reports how many snapshot rows wait uncommitted.
func (r *Runner[S]) Carrying() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rows
}

// Close rolls back carried rows that no marker has committed yet: their
// tables are snapshotted again by the next run.
func (r *Runner[S]) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.carry != nil {
		r.carry.Rollback()
		r.carry, r.rows = nil, 0
		clear(r.keys)
	}
}
