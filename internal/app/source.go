package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/config"
	"github.com/sluice-dev/sluice/internal/source/postgres"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openSource makes the Postgres source the config describes (it connects
// when used).
func openSource(c *config.Config, log *slog.Logger) (*postgres.Source, error) {
	ids, keys, err := c.TableIDs()
	if err != nil {
		return nil, err
	}
	lim := limitsOf(c)
	return postgres.New(postgres.Config{
		URL:             c.Source.URL,
		Pipeline:        c.Pipeline,
		Slot:            c.Source.Slot,
		Publication:     c.Source.Publication,
		Tables:          ids,
		Keys:            keys,
		SnapshotWorkers: c.Snapshot.Workers,
		ChunkRows:       c.Snapshot.ChunkRows,
		BatchChanges:    lim.batchChanges,
		BatchBytes:      lim.batchBytes,
		FlushInterval:   c.Batch.Interval,
		StatusInterval:  c.Source.StatusInterval,
		Logger:          log,
	})
}

// DescribeTables reads the configured tables' schemas from the source
// without creating anything.
func DescribeTables(ctx context.Context, c *config.Config) ([]*change.Table, error) {
	src, err := openSource(c, discardLog())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return src.Describe(ctx)
}

// slotStatuser is what the retained-WAL watch needs of the source.
type slotStatuser interface {
	Status(ctx context.Context) (postgres.Status, error)
}

// walWatchEvery is how often the retained-WAL watch reads the slot.
const walWatchEvery = time.Minute

// watchWAL makes retained WAL visible: an error in the log every minute
// while the slot holds more than limit, until ctx ends.
func watchWAL(ctx context.Context, src slotStatuser, limit config.Bytes, log *slog.Logger) {
	t := time.NewTicker(walWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := src.Status(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("read slot status", "err", err)
			}
			continue
		}
		if st.RetainedBytes > int64(limit) {
			log.Error("replication slot retains more WAL than source.max_retained_wal: the target is falling behind or sluice was stopped; catch up, or run `sluice teardown` if this mirror is abandoned",
				"slot", st.Slot, "retained_bytes", st.RetainedBytes, "limit", limit.String())
		}
	}
}
