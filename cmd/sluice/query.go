package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/app"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/query"
)

func newQueryCmd() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "query SQL",
		Short: "Run a read-only SQL query against the mirror, even while sluice runs",
		Long: `query runs one read-only statement against the target. While sluice runs on a
DuckDB file (which only one process may open for writing), the query goes
through the running process; otherwise the target is opened read-only.`,
		Example: `  sluice query --target duckdb:mirror.duckdb "SELECT count(*) FROM customers"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.loadTargetOnly()
			if err != nil {
				return err
			}
			res, err := app.Query(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			printResult(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// loadTargetOnly is load for commands that need only the target (query).
func (f *configFlags) loadTargetOnly() (*config.Config, error) {
	if f.file != "" || f.source != "" {
		return f.load()
	}
	c := config.Default()
	c.Target.URL = f.target
	if f.pipeline != "" {
		c.Pipeline = f.pipeline
	}
	if f.stateDir != "" {
		c.StateDir = f.stateDir
	}
	if _, _, err := c.Target.Kind(); err != nil {
		return nil, err
	}
	return c, nil
}

func printResult(w io.Writer, r *query.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(r.Columns, "\t"))
	for _, row := range r.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			if v == nil {
				cells[i] = "NULL"
			} else {
				cells[i] = fmt.Sprint(v)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	fmt.Fprintf(w, "(%d rows)\n", len(r.Rows))
}
