package main

import (
	"encoding/json"
	"errors"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/app"
	"github.com/sluice-dev/sluice/internal/verify"
)

func newVerifyCmd() *cobra.Command {
	var f configFlags
	var asJSON bool
	var opt verify.Options
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare every mirrored table with its source: row counts and checksums",
		Long: `verify compares each table in the source and the target by buckets of the key
space: row count and an order-independent checksum over every column, each
computed inside its own database. While sluice runs, both sides are read at the
same source position (a temporary slot's snapshot; the running pipeline is
held at that point for the moment of the comparison). Exit status 0 only when
every table matches, 1 when one differs, 2 on error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load()
			if err != nil {
				return err
			}
			rep, err := app.Verify(cmd.Context(), c, opt)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				rep.Print(cmd.OutOrStdout())
			}
			if !rep.Match {
				return &exitError{code: 1, err: errors.New("")}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&opt.Buckets, "buckets", 64, "parts of each table's key space compared separately")
	cmd.Flags().IntVar(&opt.KeyLimit, "keys", 10, "most mismatching keys listed per kind")
	return cmd
}
