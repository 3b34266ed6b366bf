package app

import (
	"context"
	"fmt"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/source/postgres"
)

// TeardownSource drops the replication slot and the publication this
// pipeline created (not ones named in the config that existed before) and
// returns what it removed, also when it then failed. It refuses while a
// sluice runs for the pipeline.
func TeardownSource(ctx context.Context, c *config.Config) ([]string, error) {
	if _, err := admin.Dial(ctx, c.AdminFile()); err == nil {
		return nil, fmt.Errorf("sluice is running for pipeline %s: stop it first (Ctrl-C or SIGTERM), then run teardown", c.Pipeline)
	}
	ids, keys, err := c.TableIDs()
	if err != nil {
		return nil, err
	}
	return postgres.Teardown(ctx, postgres.Config{URL: c.Source.URL, Pipeline: c.Pipeline, Slot: c.Source.Slot,
		Publication: c.Source.Publication, Tables: ids, Keys: keys, Logger: discardLog()})
}
