package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/app"
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
			removed, err := app.TeardownSource(cmd.Context(), c)
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
