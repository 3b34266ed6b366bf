package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/admin"
	"github.com/sluice-dev/sluice/internal/source/postgres"
)

func newTeardownCmd() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "teardown",
		Short: "Remove the replication slot and publication that sluice created, and nothing else",
		Long: `teardown drops the replication slot and the publication this pipeline created,
so the source stops retaining WAL for it. A slot or publication that existed
before sluice (named in the config) is left alone. The mirror in the target is
kept. Stop sluice first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if _, err := admin.Dial(ctx, c.AdminFile()); err == nil {
				return fmt.Errorf("sluice is running for pipeline %s: stop it first (Ctrl-C or SIGTERM), then run teardown", c.Pipeline)
			}
			ids, keys, err := c.TableIDs()
			if err != nil {
				return err
			}
			removed, err := postgres.Teardown(ctx, postgres.Config{URL: c.Source.URL, Pipeline: c.Pipeline, Slot: c.Source.Slot,
				Publication: c.Source.Publication, Tables: ids, Keys: keys, Logger: discardLog()})
			for _, r := range removed {
				fmt.Fprintln(cmd.OutOrStdout(), "removed", r)
			}
			if err != nil {
				return err
			}
			if len(removed) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to remove: sluice created no slot or publication for this pipeline")
			}
			return extraTeardown(cmd, c)
		},
	}
	f.register(cmd)
	return cmd
}
