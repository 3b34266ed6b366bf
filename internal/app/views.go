package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/view"
	"github.com/sluice-dev/sluice/internal/warehouse/duckdb"
)

// openViews opens the view engine over the source's tables when the
// configuration has views; its state file lives in state_dir. Without
// views the transform is the identity (nil) and close does nothing.
func openViews(ctx context.Context, c *config.Config, tables []*change.Table, log *slog.Logger) (*view.Engine, pipeline.Transform, func(), error) {
	if len(c.Views) == 0 {
		return nil, nil, func() {}, nil
	}
	specs := viewSpecs(c)
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("create state_dir for the views' state: %w", err)
	}
	evs, err := eventStreams(c)
	if err != nil {
		return nil, nil, nil, err
	}
	e, err := view.Open(ctx, viewStatePath(c), specs, tables, log, evs...)
	if err != nil {
		return nil, nil, nil, err
	}
	ids, _, _ := c.TableIDs()
	var mirrored []change.TableID
	for i, ts := range c.Tables {
		if ts.Mirrored() {
			mirrored = append(mirrored, ids[i])
		}
	}
	return e, view.NewTransform(e, mirrored), func() { e.Close() }, nil
}

// targetTables are the tables the pipeline's target holds, given the
// source's: the mirrored ones and the views' output tables. The views are
// compiled in a scratch in-memory engine for their output schemas, so the
// state file of a running sluice is not touched.
func targetTables(ctx context.Context, c *config.Config, source []*change.Table) ([]*change.Table, error) {
	if len(c.Views) == 0 {
		return source, nil
	}
	evs, err := eventStreams(c)
	if err != nil {
		return nil, err
	}
	e, err := view.Open(ctx, "", viewSpecs(c), source, discardLog(), evs...)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	mirrored := map[change.TableID]bool{}
	ids, _, _ := c.TableIDs()
	for i, ts := range c.Tables {
		mirrored[ids[i]] = ts.Mirrored()
	}
	var out []*change.Table
	for _, t := range source {
		if mirrored[t.ID()] {
			out = append(out, t)
		}
	}
	return append(out, e.Outputs()...), nil
}

func viewSpecs(c *config.Config) []view.Spec {
	specs := make([]view.Spec, len(c.Views))
	for i, v := range c.Views {
		specs[i] = view.Spec{Name: v.Name, Key: v.Key, SQL: v.SQL}
	}
	return specs
}

// viewStatePath is the view engine's state file.
func viewStatePath(c *config.Config) string {
	return filepath.Join(c.StateDir, c.Pipeline+".views.duckdb")
}

// viewOracle is verify's source side for views: each view's SQL evaluated in
// full over the source's rows at the comparison point, loaded into an
// in-memory DuckDB so its checksums come from the same code as a target's.
type viewOracle struct {
	*target
	outputs []*change.Table
	// overEvents are the views that read event streams: their rows come
	// from a stream, not from the source, so they are not compared.
	overEvents []change.TableID
}

// openViewOracle reads the views' inputs inside the source snapshot tx and
// evaluates every view over them. The inputs are held in memory.
func openViewOracle(ctx context.Context, c *config.Config, tables []*change.Table, tx pgx.Tx) (*viewOracle, error) {
	evs, err := eventStreams(c)
	if err != nil {
		return nil, err
	}
	e, err := view.Open(ctx, "", viewSpecs(c), tables, discardLog(), evs...)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	src, err := openSource(c, discardLog())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var inputs []view.InputRows
	events := map[change.TableID]bool{}
	for _, es := range evs {
		events[es.Table.ID()] = true
	}
	for _, id := range e.Inputs() {
		if events[id] {
			continue
		}
		t, rows, err := src.ReadRows(ctx, tx, id)
		if err != nil {
			return nil, fmt.Errorf("read %s for the views: %w", id, err)
		}
		inputs = append(inputs, view.InputRows{Table: t, Rows: rows})
	}
	mem, err := duckdb.Open(ctx, ":memory:", duckdb.Options{Schema: c.Target.Schema})
	if err != nil {
		return nil, err
	}
	o := &viewOracle{target: &target{warehouseImpl: mem}}
	for _, t := range e.Outputs() {
		if e.ReadsEvents(t.ID()) {
			o.overEvents = append(o.overEvents, t.ID())
		} else {
			o.outputs = append(o.outputs, t)
		}
	}
	at := change.Position{CommitLSN: 1}
	for _, t := range o.outputs {
		rows, err := e.Evaluate(ctx, t.ID().String(), inputs)
		if err != nil {
			mem.Close()
			return nil, err
		}
		b := &change.Batch{Snapshotted: []change.SnapshotDone{{Table: t, Pos: at}}}
		for _, r := range rows {
			b.Changes = append(b.Changes, change.Change{Op: change.OpRead, Table: t, After: r, Pos: at})
		}
		if err := mem.Reset(ctx, t); err != nil {
			mem.Close()
			return nil, err
		}
		if err := mem.Apply(ctx, b); err != nil {
			mem.Close()
			return nil, fmt.Errorf("load the output of view %s: %w", t.ID(), err)
		}
	}
	return o, nil
}
