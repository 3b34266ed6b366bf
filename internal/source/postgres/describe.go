package postgres

import (
	"context"
	"errors"

	"github.com/sluice-dev/sluice/internal/change"
)

// Describe returns the configured tables' current schemas without creating
// or changing anything on the server (verify and status use it).
func (s *Source) Describe(ctx context.Context) ([]*change.Table, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var (
		out  []*change.Table
		errs []error
	)
	for _, id := range s.cfg.Tables {
		m, err := s.loadTable(ctx, conn, id, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, m.table)
	}
	return out, errors.Join(errs...)
}
