package main

import (
	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/config"
)

// extraCommands are the Redshift commands (plan, setup).
func extraCommands() []*cobra.Command { return nil }

// extraTeardown removes what sluice created in Redshift.
func extraTeardown(cmd *cobra.Command, c *config.Config) error { return nil }
