// Command sluice keeps Postgres tables mirrored in an analytical warehouse
// (DuckDB, Postgres, Redshift), in real time, optionally through Amazon
// Kinesis. `sluice quickstart` shows it end to end on a laptop.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit status (verify's 1 for "differs").
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(os.Stderr, "sluice:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(2)
	}
}

func newRoot() *cobra.Command {
	var logLevel string
	var logJSON bool
	root := &cobra.Command{
		Use:   "sluice",
		Short: "Mirror Postgres tables into an analytical warehouse in real time",
		Long: `sluice keeps Postgres tables mirrored in DuckDB, Postgres or Redshift, in real
time, through logical replication: an initial consistent snapshot, then every
change, applied exactly once. Start with: sluice quickstart`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			if cmd.Name() == "quickstart" && !cmd.Flags().Changed("log-level") {
				lvl = slog.LevelWarn // its progress line says what the log would
			}
			opts := &slog.HandlerOptions{Level: lvl}
			var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
			if logJSON {
				h = slog.NewJSONHandler(os.Stderr, opts)
			}
			slog.SetDefault(slog.New(h))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&logJSON, "log-json", false, "log as JSON lines")
	root.AddCommand(newRunCmd(), newStatusCmd(), newVerifyCmd(), newTeardownCmd(), newQuickstartCmd(),
		newQueryCmd(), newValidateCmd(), newConfigCmd())
	root.AddCommand(extraCommands()...)
	return root
}
