package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/quickstart"
)

func newQuickstartCmd() *cobra.Command {
	var (
		duration time.Duration
		dir      string
		rows     int
		rate     int
	)
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "See sluice work: a throwaway Postgres, a live workload, a DuckDB mirror, verified",
		Long: `quickstart starts a throwaway Postgres (the server binaries of the Debian
postgresql package are enough), creates the tutorial's customers table and an
orders table, drives inserts, updates and deletes, and mirrors both into a DuckDB
file together with two SQL views over them (a join that enriches each order with
its customer, and an aggregate per customer) while it shows snapshot progress
and lag. At the end (after --duration, or Ctrl-C) it
runs verify and tells you where the file is and a query to try.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := quickstart.Run(cmd.Context(), cmd.OutOrStdout(), quickstart.Options{Duration: duration, Dir: dir, Rows: rows, Rate: rate})
			if errors.Is(err, quickstart.ErrDiffers) {
				return &exitError{code: 1, err: err}
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 0, "how long to run the workload (0: until Ctrl-C)")
	cmd.Flags().StringVar(&dir, "dir", "sluice-quickstart", "directory for the DuckDB mirror and state")
	cmd.Flags().IntVar(&rows, "rows", 100_000, "customers in the table before mirroring starts")
	cmd.Flags().IntVar(&rate, "rate", 500, "changes per second the workload makes")
	return cmd
}
