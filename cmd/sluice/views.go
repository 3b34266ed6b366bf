package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/pipeline"
	"github.com/sluice-dev/sluice/internal/view"
)

// openViews opens the view engine over the source's tables when the
// configuration has views; its state file lives in state_dir. Without
// views the transform is the identity (nil) and close does nothing.
func openViews(ctx context.Context, c *config.Config, tables []*change.Table, log *slog.Logger) (*view.Engine, pipeline.Transform, func(), error) {
	if len(c.Views) == 0 {
		return nil, nil, func() {}, nil
	}
	specs := make([]view.Spec, len(c.Views))
	for i, v := range c.Views {
		specs[i] = view.Spec{Name: v.Name, Key: v.Key, SQL: v.SQL}
	}
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("create state_dir for the views' state: %w", err)
	}
	e, err := view.Open(ctx, viewStatePath(c), specs, tables, log)
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

// viewStatePath is the view engine's state file.
func viewStatePath(c *config.Config) string {
	return filepath.Join(c.StateDir, c.Pipeline+".views.duckdb")
}
