package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/app"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

func newRunCmd() *cobra.Command {
	var f configFlags
	var retryMax time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Mirror the tables: snapshot what the target lacks, then stream every change",
		Long: `run snapshots every table the target does not hold yet, then streams changes
until stopped. SIGINT or SIGTERM stops it gracefully: the batch in flight is
finished, everything else stays in the replication slot for the next run.

A batch the target refuses (a constraint the source does not have, a value
the column cannot hold, a lost connection, a full disk) does not stop it: it
stalls on that batch, confirms nothing past it, shows why in sluice status
and /metrics, and tries again with backoff (1s doubling to --retry-max), so
fixing the target resumes it with no restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load()
			if err != nil {
				return err
			}
			return app.Run(cmd.Context(), c, app.Options{Retry: pipeline.Backoff{Max: retryMax}})
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&retryMax, "retry-max", 5*time.Minute, "longest wait between attempts at a batch the target refused")
	return cmd
}
