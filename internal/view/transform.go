package view

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// Transform is the pipeline's transform for a set of views beside the
// mirrored tables: the target receives the mirrored tables' changes as they
// are and the views' output changes, in one batch per source batch.
type Transform struct {
	e        *Engine
	mirrored map[change.TableID]bool
	// reread are mirrored tables that the source snapshots again for the
	// views only: the target holds them already, so their snapshot rows
	// and markers are not for it.
	reread map[change.TableID]bool
	// done are the view tables whose snapshot the target holds: a view's
	// whole output emitted again (a re-snapshot of an input) reaches them
	// as upserts, since a target skips snapshot rows of a table it holds.
	done map[change.TableID]bool
}

var (
	_ pipeline.Transform = (*Transform)(nil)
	_ pipeline.Pager     = (*Transform)(nil)
)

// NewTransform wraps an engine; mirrored lists the source tables that are
// mirrored themselves (a table with mirror: false only feeds views).
func NewTransform(e *Engine, mirrored []change.TableID) *Transform {
	t := &Transform{e: e, mirrored: map[change.TableID]bool{}, reread: map[change.TableID]bool{}, done: map[change.TableID]bool{}}
	for _, id := range mirrored {
		t.mirrored[id] = true
	}
	return t
}

// Start implements pipeline.Transform: the outputs are the mirrored tables
// and the views' tables; a mirrored table the target lacks is reset and
// snapshotted, a view being rebuilt (new, changed, or whose target table
// lost its snapshot) is reset, and every input the engine lacks is
// snapshotted.
func (t *Transform) Start(ctx context.Context, source []*change.Table, state map[change.TableID]change.TableState) (pipeline.TransformPlan, error) {
	var pl pipeline.TransformPlan
	snap := map[change.TableID]bool{}
	for _, s := range source {
		if !t.mirrored[s.ID()] {
			continue
		}
		pl.Outputs = append(pl.Outputs, s)
		if !state[s.ID()].Snapshotted {
			pl.Reset = append(pl.Reset, s)
			snap[s.ID()] = true
		}
	}
	outputs := t.e.Outputs()
	rebuilding := map[change.TableID]bool{}
	for _, id := range t.e.Rebuilding() {
		rebuilding[id] = true
	}
	stopped := t.e.Stopped()
	for _, o := range outputs {
		id := o.ID()
		pl.Outputs = append(pl.Outputs, o)
		if _, ok := stopped[id]; ok {
			// Its table keeps what it holds; nothing comes for it until
			// the view is changed (a rebuild).
			continue
		}
		if !state[id].Snapshotted && !rebuilding[id] {
			// The engine emitted the view's output, the target never
			// committed it (or lost it): emit it again.
			if err := t.e.Resnapshot(ctx, id); err != nil {
				return pl, err
			}
			rebuilding[id] = true
		}
		if rebuilding[id] {
			pl.Reset = append(pl.Reset, o)
		} else {
			t.done[id] = true
			t.e.Resend(id, state[id].Applied)
		}
	}
	for _, id := range t.e.Unsnapshotted() {
		snap[id] = true
	}
	for _, s := range source {
		id := s.ID()
		if !snap[id] {
			continue
		}
		pl.Snapshot = append(pl.Snapshot, s)
		if t.mirrored[id] && state[id].Snapshotted {
			t.reread[id] = true
		}
	}
	return pl, nil
}

// Transform implements pipeline.Transform.
func (t *Transform) Transform(ctx context.Context, b *change.Batch) (*change.Batch, error) {
	views, err := t.e.Apply(ctx, b)
	if err != nil {
		var re *RestartError
		if errors.As(err, &re) || t.e.broken != nil {
			// The engine lost part of a transaction: only a new run,
			// which the source starts at its confirmed position, has it.
			te := &pipeline.TargetError{Class: pipeline.Fatal, Err: fmt.Errorf("views: %w", err),
				Fix: "start sluice again: the views' state is opened again and the source sends the transaction again"}
			if re != nil {
				te.Table = re.View
			}
			return nil, te
		}
		return nil, fmt.Errorf("views: %w", err)
	}
	out := &change.Batch{Ack: b.Ack}
	for _, r := range b.Reset {
		// A table only feeding views has nothing in the target to reset;
		// the engine rebuilds the views over it from its snapshot rows.
		if t.mirrored[r.ID()] {
			out.Reset = append(out.Reset, r)
		}
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		id := c.Table.ID()
		if !t.mirrored[id] || (c.Op == change.OpRead && t.reread[id]) {
			continue
		}
		out.Changes = append(out.Changes, *c)
	}
	for _, s := range b.Snapshotted {
		id := s.Table.ID()
		switch {
		case t.reread[id]:
			delete(t.reread, id) // its snapshot for the views is complete
		case t.mirrored[id]:
			out.Snapshotted = append(out.Snapshotted, s)
		}
	}
	t.add(out, views)
	return out, nil
}

// add appends the views' output to out.
func (t *Transform) add(out, views *change.Batch) {
	for _, c := range views.Changes {
		if c.Op == change.OpRead && t.done[c.Table.ID()] {
			c.Op = change.OpUpdate // an upsert of the key
		}
		out.Changes = append(out.Changes, c)
	}
	for _, s := range views.Snapshotted {
		if !t.done[s.Table.ID()] {
			out.Snapshotted = append(out.Snapshotted, s)
			t.done[s.Table.ID()] = true
		}
	}
}

// Pending implements pipeline.Pager: a view's whole output is being
// emitted over several batches.
func (t *Transform) Pending() bool { return t.e.Pending() }

// Next implements pipeline.Pager: the next part of a view's whole output.
func (t *Transform) Next(ctx context.Context) (*change.Batch, error) {
	views, err := t.e.NextPage(ctx)
	if err != nil {
		return nil, &pipeline.TargetError{Class: pipeline.Fatal, Err: fmt.Errorf("views: %w", err),
			Fix: "start sluice again: the view's whole output is emitted again"}
	}
	out := &change.Batch{}
	t.add(out, views)
	return out, nil
}

// Stopped reports the views that stopped (see Engine.Stopped), by their
// output table, for the pipeline's status.
func (t *Transform) Stopped() map[change.TableID]string { return t.e.Stopped() }

// Confirm implements pipeline.Transform.
func (t *Transform) Confirm(lsn change.LSN) { t.e.Confirm(lsn) }
