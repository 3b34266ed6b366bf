package verify

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is a whole verify run.
type Report struct {
	Match  bool     `json:"match"`
	At     string   `json:"consistent_at,omitempty"` // the source position both sides were read at
	Note   string   `json:"note,omitempty"`          // e.g. the lag tolerated when no consistent point could be had
	Tables []Result `json:"tables"`
}

// Print writes the report as a readable table.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tSOURCE ROWS\tTARGET ROWS\tRESULT")
	for _, t := range r.Tables {
		res := "match"
		switch {
		case t.Stopped != "":
			res = "VIEW STOPPED, not compared: " + t.Stopped
		case t.Skipped != "":
			res = "not compared: " + t.Skipped
		case t.Error != "":
			res = "error: " + t.Error
		case !t.Match:
			res = fmt.Sprintf("DIFFERS in %d of %d buckets", len(t.Differing), t.Buckets)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t.Table, t.SourceRows, t.TargetRows, res)
	}
	tw.Flush()
	for _, t := range r.Tables {
		for _, k := range []struct {
			what string
			keys []string
		}{{"missing in target", t.Missing}, {"extra in target", t.Extra}, {"different values", t.Different}} {
			if len(k.keys) > 0 {
				fmt.Fprintf(w, "  %s: %s: %s\n", t.Table, k.what, strings.Join(k.keys, ", "))
			}
		}
	}
	if r.At != "" {
		fmt.Fprintf(w, "compared at source position %s (source snapshot and target held at the same point)\n", r.At)
	}
	if r.Note != "" {
		fmt.Fprintln(w, r.Note)
	}
	if r.Match {
		fmt.Fprintln(w, "verify: every table matches")
	} else {
		fmt.Fprintln(w, "verify: MISMATCH")
	}
}
