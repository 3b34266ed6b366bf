package app

import (
	"context"
	"fmt"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/query"
)

// Query runs one read-only statement against the target: through the
// running sluice when there is one (DuckDB lets one process open a file
// for writing), else on the target opened read-only.
func Query(ctx context.Context, c *config.Config, sql string) (*query.Result, error) {
	if cl, err := admin.Dial(ctx, c.AdminFile()); err == nil {
		res, err := cl.Query(ctx, sql)
		if err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		return res, nil
	}
	tgt, err := openTargetReadOnly(ctx, c, discardLog())
	if err != nil {
		return nil, err
	}
	defer tgt.Close()
	res, err := tgt.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return res, nil
}
