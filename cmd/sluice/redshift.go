package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/app"
	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/warehouse/redshift"
)

// The Redshift commands: sluice never writes rows into Redshift (it reads
// the stream itself); these create its objects (setup), show them (plan)
// and merge what landed (merge). The application's part is in
// internal/app/redshift.go; this file parses flags and prints.

// extraCommands are the Redshift commands (plan, setup, merge).
func extraCommands() []*cobra.Command {
	return []*cobra.Command{newPlanCmd(), newSetupCmd(), newMergeCmd()}
}

// extraTeardown removes what sluice created in Redshift (only what setup
// recorded; the mirrored tables stay).
func extraTeardown(cmd *cobra.Command, c *config.Config) error {
	if !c.IsRedshift() {
		return nil
	}
	removed, err := app.TeardownRedshift(cmd.Context(), c)
	if err != nil {
		return err
	}
	for _, id := range removed {
		fmt.Fprintln(cmd.OutOrStdout(), "removed redshift", id)
	}
	if len(removed) == 0 {
		fmt.Fprintln(cmd.OutOrStdout(), "nothing to remove in Redshift: sluice created nothing there for this pipeline")
	} else {
		fmt.Fprintln(cmd.OutOrStdout(), "the mirrored tables in Redshift are kept")
	}
	return nil
}

func newPlanCmd() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what setup creates in Redshift: IAM policies, external schema, streaming view, tables, merge",
		Long: `plan describes the source tables and prints everything a Redshift target
needs: the IAM role's trust policy and a permission policy scoped to the one
stream or topic, the external schema, the streaming materialized view, each mirrored
table's DDL and its incremental merge. When Redshift is reachable, objects
that already exist are marked = and left out of the SQL; otherwise every
object is shown as to be created. plan changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load()
			if err != nil {
				return err
			}
			if !c.IsRedshift() {
				return fmt.Errorf("plan describes a Redshift target; this pipeline's target is %s (its tables are created by sluice run)", config.Redact(c.Target.URL))
			}
			ctx := cmd.Context()
			p, err := app.RedshiftPlan(ctx, c, nil)
			if err != nil {
				return err
			}
			if err := app.InspectRedshift(ctx, c, p); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Could not inspect Redshift (%v).\nShowing every object as to be created; run plan again once Redshift is reachable to see what exists.\n\n", err)
				for i := range p.Objects {
					p.Objects[i].State = redshift.Missing
				}
			}
			printPlan(cmd.OutOrStdout(), c, p)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func printPlan(w io.Writer, c *config.Config, p *redshift.Plan) {
	fmt.Fprint(w, p.String())
	for _, tp := range p.Tables {
		fmt.Fprintf(w, "\n-- Merge of %s into %s, every %s, in one transaction:\n%s;\n",
			tp.Source.ID(), tp.Target.Quoted(), c.Redshift.MergeInterval, strings.Join(tp.Merge, ";\n\n"))
	}
}

func newSetupCmd() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Create in Redshift what the plan shows as missing (idempotent)",
		Long: `setup creates the objects a Redshift target needs and does not have yet (see
sluice plan): the external schema over the Kinesis stream or Kafka topic, the streaming
materialized view, sluice's bookkeeping tables and the mirrored tables. It
records what it created, so teardown removes exactly that. Running it again
creates nothing. The IAM role must exist and be associated with the cluster
or workgroup first (plan prints its policies).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadRedshift(&f, "setup prepares a Redshift target", "sluice run creates its tables")
			if err != nil {
				return err
			}
			p, err := app.SetupRedshift(cmd.Context(), c)
			if err != nil {
				return err
			}
			created, existed := 0, 0
			for _, o := range p.Objects {
				switch o.State {
				case redshift.Missing:
					fmt.Fprintf(cmd.OutOrStdout(), "created %s %s\n", o.Kind, o.ID())
					created++
				case redshift.Exists:
					existed++
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Redshift is set up for pipeline %s: %d created, %d already existed.\n", c.Pipeline, created, existed)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newMergeCmd() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "merge",
		Short: "Merge the records that landed in Redshift into the mirrored tables, once",
		Long: `merge runs one incremental merge of every table, as sluice run does every
redshift.merge_interval: the records that landed since the last merge are
applied in one transaction per table with their watermarks, so running it
again with nothing new changes nothing. For a merge run by an outside
scheduler instead of sluice run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadRedshift(&f, "merge is for a Redshift target", "sluice run applies its changes")
			if err != nil {
				return err
			}
			pending, took, err := app.MergeRedshift(cmd.Context(), c)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "merged in %s:\n", took.Round(time.Millisecond))
			for _, id := range sortedTableIDs(pending) {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s: %d records\n", id, pending[id])
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// loadRedshift loads the config of a command that works on Redshift only.
func loadRedshift(f *configFlags, what, otherwise string) (*config.Config, error) {
	c, err := f.load()
	if err != nil {
		return nil, err
	}
	if !c.IsRedshift() {
		return nil, fmt.Errorf("%s; this pipeline's target is %s (%s)", what, config.Redact(c.Target.URL), otherwise)
	}
	return c, nil
}

func sortedTableIDs[V any](m map[change.TableID]V) []change.TableID {
	out := make([]change.TableID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
