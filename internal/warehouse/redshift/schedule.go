package redshift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// PendingSQL counts the landed records of a table that its next merge will
// read: how far the mirror is behind the stream, in records.
func PendingSQL(p *Plan, tp *TablePlan) string {
	d := p.Config.Dialect
	data := `v."data"`
	return "SELECT COUNT(*)\nFROM " + p.Landing.Quoted() + " AS v\n" +
		"LEFT JOIN " + p.Watermarks.Quoted() + " AS w\n" +
		`  ON w."table_name" = ` + d.Literal(tp.Target.Quoted()) + ` AND w."shard_id" = v."shard_id"` + "\n" +
		"WHERE " + d.Text(data, "source", "schema") + " = " + d.Literal(tp.Source.Schema) + "\n" +
		"  AND " + d.Text(data, "source", "table") + " = " + d.Literal(tp.Source.Name) + "\n" +
		`  AND (w."sequence_number" IS NULL OR ` + d.SeqAfter(`v."sequence_number"`, `w."sequence_number"`) + ")"
}

// ShapeCheckSQL counts the landed, unmerged records of a table whose columns
// are not the mirror's.
func ShapeCheckSQL(p *Plan, tp *TablePlan) string {
	return strings.Replace(PendingSQL(p, tp), "WHERE ", "WHERE NOT "+shapeOK(p.Config.Dialect, `v."data"`, tp)+"\n  AND ", 1)
}

// ErrShapeChanged is returned by Merge when records of a table carry other
// columns than its mirror has: a schema change at the source.
var ErrShapeChanged = errors.New("schema changed at the source")

// Pending returns, per source table, the number of landed records not merged yet.
func Pending(ctx context.Context, conn Conn, p *Plan) (map[change.TableID]int64, error) {
	out := make(map[change.TableID]int64, len(p.Tables))
	for _, tp := range p.Tables {
		rows, err := conn.Query(ctx, PendingSQL(p, tp))
		if err != nil {
			return nil, fmt.Errorf("count pending records of %s: %w", tp.Source.ID(), err)
		}
		if len(rows) != 1 || len(rows[0]) != 1 {
			return nil, fmt.Errorf("count pending records of %s: want one value, got %d rows", tp.Source.ID(), len(rows))
		}
		n, err := strconv.ParseInt(deref(rows[0][0]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("count pending records of %s: %w", tp.Source.ID(), err)
		}
		out[tp.Source.ID()] = n
	}
	return out, nil
}

// Schedule runs Merge every interval until ctx ends. A failed run is logged
// and retried at the next tick: the merge is all-or-nothing, so a failure
// leaves the mirror and its watermarks as they were.
func Schedule(ctx context.Context, conn Conn, p *Plan, every time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		if err := Merge(ctx, conn, p); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Error("redshift merge failed; retrying at the next interval", "err", err, "interval", every)
		} else {
			log.Debug("redshift merge done", "took", time.Since(start))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
