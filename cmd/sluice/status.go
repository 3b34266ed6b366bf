package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/app"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

func newStatusCmd() *cobra.Command {
	var f configFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the slot position, retained WAL, lag and per-table progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load()
			if err != nil {
				return err
			}
			rep, err := app.Status(cmd.Context(), c)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printStatus(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, r *app.StatusReport) {
	state := "not running"
	if r.Running {
		state = "running"
		if r.Stats != nil {
			state += ", " + string(r.Stats.Phase)
		} else if r.Consumer != nil {
			state += ", " + string(r.Consumer.Phase)
		}
	}
	fmt.Fprintf(w, "pipeline %s: %s\ntarget   %s\n", r.Pipeline, state, r.Target)
	if s := r.Slot; s != nil {
		fmt.Fprintf(w, "slot     %s (active %v): confirmed %s, restart %s, server at %s\n", s.Name, s.Active, s.ConfirmedLSN, s.RestartLSN, s.CurrentLSN)
		fmt.Fprintf(w, "         retained WAL %s, lag %s\n", humanBytes(s.RetainedBytes), humanBytes(s.LagBytes))
	} else if r.SlotError != "" {
		fmt.Fprintf(w, "slot     unavailable: %s\n", r.SlotError)
	}
	if st := r.Stats; st != nil {
		printStats(w, "", st, r.Slot)
	} else if len(r.Tables) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TABLE\tSNAPSHOT\tAPPLIED POSITION")
		for _, name := range sortedKeys(r.Tables) {
			t := r.Tables[name]
			fmt.Fprintf(tw, "%s\t%s\t%s\n", name, done(t.Snapshotted), t.Applied)
		}
		tw.Flush()
	}
	if st := r.Consumer; st != nil {
		printStats(w, "stream consumer: ", st, nil)
	}
	if r.Stream != nil {
		b, _ := json.MarshalIndent(r.Stream, "", "  ")
		fmt.Fprintf(w, "stream   %s\n", b)
	}
}

// printStats shows a pipeline's figures, its tables and its health.
func printStats(w io.Writer, who string, st *pipeline.Stats, slot *app.SlotStatus) {
	confirmed := ""
	if st.ConfirmedBatch > 0 {
		confirmed = fmt.Sprintf(", confirmed batch %d", st.ConfirmedBatch)
	}
	fmt.Fprintf(w, "%sapplied  %d changes in %d batches, %.0f changes/s, lag %.1fs, queue %d batches / %s%s\n",
		who, st.Applied, st.Batches, st.ChangesPerSecond, st.LagSeconds, st.QueueBatches, humanBytes(int64(st.QueueBytes)), confirmed)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tSNAPSHOT\tSNAPSHOT ROWS\tCHANGES\tAPPLIED POSITION\tLAST COMMIT")
	for _, name := range sortedKeys(st.Tables) {
		t := st.Tables[name]
		last := "-"
		if !t.LastCommit.IsZero() {
			last = t.LastCommit.UTC().Format(time.RFC3339)
		}
		snap := done(t.Snapshotted)
		if t.Stopped != "" {
			snap = "STOPPED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", name, snap, t.SnapshotRows, t.Changes, t.AppliedLSN, last)
	}
	tw.Flush()
	for _, name := range sortedKeys(st.Tables) {
		if why := st.Tables[name].Stopped; why != "" {
			fmt.Fprintf(w, "view %s STOPPED (the mirror and the other views go on; change the view to rebuild it): %s\n", name, why)
		}
	}
	printHealth(w, who, pipeline.Health{Stall: st.Stall, Failures: st.ApplyFailures}, slot)
}

// printHealth shows a stall (the refused batch, why, and the fix) and the
// failure counts.
func printHealth(w io.Writer, who string, h pipeline.Health, slot *app.SlotStatus) {
	if s := h.Stall; s != nil {
		fmt.Fprintf(w, "%sSTALLED since %s (%d attempts): the target refuses the next batch (%s)\n",
			who, s.Since.UTC().Format(time.RFC3339), s.Attempts, s.Class)
		for _, kv := range [][2]string{{"table", s.Table}, {"target", s.TargetTable}, {"column", s.Column}, {"constraint", s.Constraint},
			{"fix", s.Fix}, {"error", s.Error}} {
			if kv[1] != "" {
				fmt.Fprintf(w, "  %-11s%s\n", kv[0], kv[1])
			}
		}
		if !s.NextRetry.IsZero() {
			fmt.Fprintf(w, "  %-11sin %s, and again with backoff until the target takes it (no restart needed)\n", "retry", time.Until(s.NextRetry).Round(time.Second))
		}
		held := "nothing past the last committed batch is confirmed to the source: nothing is lost"
		if s.First != "" {
			held = "nothing from position " + s.First + " on is confirmed to the source: nothing is lost"
		}
		if slot != nil {
			held += " (slot confirmed at " + slot.ConfirmedLSN + ")"
		}
		fmt.Fprintf(w, "  %-11s%s\n", "held", held)
	}
	if len(h.Failures) > 0 {
		parts := make([]string, len(h.Failures))
		for i, f := range h.Failures {
			t := f.Table
			if t == "" {
				t = "(no table named)"
			}
			parts[i] = fmt.Sprintf("%s %s %d", t, f.Class, f.Count)
		}
		fmt.Fprintf(w, "%sapply failures since start: %s\n", who, strings.Join(parts, ", "))
	}
}

func done(b bool) string {
	if b {
		return "done"
	}
	return "pending"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// humanBytes is the one byte formatting, shared with verify's lag note.
var humanBytes = app.HumanBytes
