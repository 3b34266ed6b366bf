package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-dev/sluice/internal/change"
)

// Config says which database and tables to read and how to batch them.
type Config struct {
	URL             string // postgres:// URL of the source database; the replication connection is derived from it
	Pipeline        string // pipeline name; the slot and publication default to "sluice_<pipeline>"
	Slot            string // optional slot name override
	Publication     string // optional publication name override
	Tables          []change.TableID
	Keys            map[change.TableID][]string // user-declared keys for tables without a primary key
	SnapshotWorkers int                         // parallel COPY workers (default 4)
	ChunkRows       int                         // rows per snapshot chunk (default 100_000)
	BatchChanges    int                         // max changes per batch (default 10_000)
	BatchBytes      int                         // max bytes (change.Change.Size) per batch (default 16 MiB)
	FlushInterval   time.Duration               // emit a partial batch after this long (default 200ms)
	StatusInterval  time.Duration               // standby status update period (default 10s)
	// CheckInterval is how often the stream compares the mirrored tables
	// with the catalog, for changes that send no row changes (a partition
	// attached, a table rewritten); the slot is confirmed only up to the
	// last check (default 2s).
	CheckInterval time.Duration
	Logger        *slog.Logger
}

const (
	defaultWorkers        = 4
	defaultChunkRows      = 100_000
	defaultBatchChanges   = 10_000
	defaultBatchBytes     = 16 << 20
	defaultFlushInterval  = 200 * time.Millisecond
	defaultStatusInterval = 10 * time.Second
	defaultCheckInterval  = 2 * time.Second
	maxIdentLen           = 63 // NAMEDATALEN-1: longer slot names are refused by the server
)

func (c *Config) setDefaults() {
	if c.Slot == "" {
		c.Slot = "sluice_" + c.Pipeline
	}
	if c.Publication == "" {
		c.Publication = "sluice_" + c.Pipeline
	}
	if c.SnapshotWorkers <= 0 {
		c.SnapshotWorkers = defaultWorkers
	}
	if c.ChunkRows <= 0 {
		c.ChunkRows = defaultChunkRows
	}
	if c.BatchChanges <= 0 {
		c.BatchChanges = defaultBatchChanges
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = defaultBatchBytes
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = defaultFlushInterval
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = defaultStatusInterval
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = defaultCheckInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate(noPipeline bool) error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("source URL is empty: set it to the source database, e.g. postgres://user@host:5432/db"))
	} else if _, err := pgconn.ParseConfig(c.URL); err != nil {
		// The parse error may echo the URL with its password: keep only our words.
		errs = append(errs, errors.New("source URL is not a valid Postgres connection URL: use the form postgres://user:password@host:5432/db"))
	}
	if noPipeline {
		errs = append(errs, errors.New("pipeline name is empty: set it (it names the slot and publication sluice_<pipeline>)"))
	}
	if err := checkSlotName(c.Slot); err != nil {
		errs = append(errs, err)
	}
	if len(c.Publication) > maxIdentLen {
		errs = append(errs, fmt.Errorf("publication name %q is longer than %d bytes: choose a shorter pipeline or publication name", c.Publication, maxIdentLen))
	}
	if len(c.Tables) == 0 {
		errs = append(errs, errors.New("no tables to mirror: list at least one table"))
	}
	seen := map[change.TableID]bool{}
	for _, id := range c.Tables {
		if id.Name == "" || id.Schema == "" {
			errs = append(errs, fmt.Errorf("table %q: want schema and name", id))
		}
		if seen[id] {
			errs = append(errs, fmt.Errorf("table %s is listed twice: list it once", id))
		}
		seen[id] = true
	}
	for id, cols := range c.Keys {
		if !seen[id] {
			errs = append(errs, fmt.Errorf("key declared for table %s, which is not among the tables: add the table or remove the key", id))
		}
		if len(cols) == 0 {
			errs = append(errs, fmt.Errorf("key declared for table %s is empty: name its key columns", id))
		}
	}
	return errors.Join(errs...)
}

// checkSlotName applies the server's rule (lower-case letters, digits and
// underscores) up front, since slot names cannot be quoted in the
// replication protocol.
func checkSlotName(name string) error {
	if name == "" || len(name) > maxIdentLen {
		return fmt.Errorf("replication slot name %q must be 1 to %d characters: choose a shorter pipeline or slot name", name, maxIdentLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("replication slot name %q may hold only lower-case letters, digits and underscores: choose another pipeline or slot name", name)
		}
	}
	return nil
}

// sessionParams makes every connection print values in the forms the
// decoder expects, whatever the server's or role's defaults: UTF-8 text, UTC
// timestamps in ISO form, round-tripping floats, hex bytea.
var sessionParams = map[string]string{
	"client_encoding":    "UTF8",
	"TimeZone":           "UTC",
	"DateStyle":          "ISO, YMD",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

func (c *Config) connConfig() (*pgx.ConnConfig, error) {
	cc, err := pgx.ParseConfig(c.URL)
	if err != nil {
		return nil, errors.New("parse source URL: not a valid Postgres connection URL")
	}
	for k, v := range sessionParams {
		cc.RuntimeParams[k] = v
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "sluice"
	}
	return cc, nil
}

func (c *Config) replConfig() (*pgconn.Config, error) {
	pc, err := pgconn.ParseConfig(c.URL)
	if err != nil {
		return nil, errors.New("parse source URL: not a valid Postgres connection URL")
	}
	for k, v := range sessionParams {
		pc.RuntimeParams[k] = v
	}
	pc.RuntimeParams["replication"] = "database"
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = "sluice"
	}
	return pc, nil
}

// quoteIdents quotes and joins names for SQL.
func quoteIdents(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = change.QuoteIdent(n)
	}
	return strings.Join(q, ", ")
}
