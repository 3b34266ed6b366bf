package main

import (
	"context"
	"log/slog"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// describeTables reads the configured tables' schemas from the source
// without creating anything.
func describeTables(ctx context.Context, c *config.Config) ([]*change.Table, error) {
	src, err := openSource(c, discardLog())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return src.Describe(ctx)
}
