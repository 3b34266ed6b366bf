package main

import (
	"fmt"
	"strings"

	"github.com/sluice-dev/sluice/internal/config"
	"github.com/spf13/cobra"
)

// configFlags are the flags every command shares: a config file, or the
// simple case spelled out on the command line. Flags override the file.
type configFlags struct {
	file     string
	source   string
	tables   string
	target   string
	pipeline string
	stateDir string
}

func (f *configFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "config", "c", "", "YAML config file (see `sluice config`)")
	fl.StringVar(&f.source, "source", "", "source database URL, postgres://user:password@host:port/db")
	fl.StringVar(&f.tables, "tables", "", "comma-separated tables to mirror, e.g. public.a,public.b")
	fl.StringVar(&f.target, "target", "", "target: duckdb:PATH or postgres://...")
	fl.StringVar(&f.pipeline, "pipeline", "", "pipeline name (names the slot and publication); default sluice")
	fl.StringVar(&f.stateDir, "state-dir", "", "directory for local state; default .sluice")
}

// load builds the config from the file and the flags, and validates it.
func (f *configFlags) load() (*config.Config, error) {
	c := config.Default()
	if f.file != "" {
		var err error
		if c, err = config.Load(f.file); err != nil {
			return nil, err
		}
	}
	if f.source != "" {
		c.Source.URL = f.source
	}
	if f.tables != "" {
		c.Tables = nil
		for _, t := range strings.Split(f.tables, ",") {
			if t = strings.TrimSpace(t); t != "" {
				c.Tables = append(c.Tables, config.TableSpec{Name: t})
			}
		}
	}
	if f.target != "" {
		c.Target.URL = f.target
	}
	if f.pipeline != "" {
		c.Pipeline = f.pipeline
	}
	if f.stateDir != "" {
		c.StateDir = f.stateDir
	}
	if f.file == "" && f.source == "" && f.tables == "" && f.target == "" {
		return nil, fmt.Errorf("no configuration: pass --config FILE, or --source URL --tables LIST --target TARGET")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func newValidateCmd() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration without connecting to anything",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "configuration is valid: pipeline %s, %d table(s), target %s\n",
				c.Pipeline, len(c.Tables), config.Redact(c.Target.URL))
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the configuration reference (every key, its default and meaning)",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), config.Reference())
		},
	}
}
