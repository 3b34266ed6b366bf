package redshift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/internal/change"
)

// PendingSQL counts the landed records of a table that its next merge will
// read: how far the mirror is behind the stream, in records.
func PendingSQL(p *Plan, tp *TablePlan) string {
	return "SELECT COUNT(*)\n" + pendingSource(p, tp)
}

// pendingSource is the FROM and WHERE of the landed records of a table
// after its watermarks: its parsed records, and the unparsed ones that may
// be its (their partition key names the table, or is a hash that names no
// table) unless listed as skipped.
func pendingSource(p *Plan, tp *TablePlan) string {
	d := p.Config.Dialect
	data := `v."data"`
	name := d.Literal(tp.Target.Quoted())
	prefix := partitionPrefix(tp.Source)
	pos := p.pos()
	lane, seq, key := q(pos.lane), q(pos.seq), pos.key(d)
	return "FROM " + p.Landing.Quoted() + " AS v\n" +
		"LEFT JOIN " + p.Watermarks.Quoted() + " AS w\n" +
		`  ON w."table_name" = ` + name + " AND w." + lane + " = v." + lane + "\n" +
		"LEFT JOIN " + p.Skipped.Quoted() + " AS k\n" +
		`  ON k."table_name" = ` + name + " AND k." + lane + " = v." + lane + " AND k." + seq + " = v." + seq + "\n" +
		"WHERE ((" + d.Text(data, "source", "schema") + " = " + d.Literal(tp.Source.Schema) + "\n" +
		"    AND " + d.Text(data, "source", "table") + " = " + d.Literal(tp.Source.Name) + ")\n" +
		`    OR (v."unparsed_data" IS NOT NULL AND k.` + lane + " IS NULL\n" +
		"      AND (SUBSTRING(" + key + ", 1, " + strconv.Itoa(utf8.RuneCountInString(prefix)) + ") = " + d.Literal(prefix) +
		" OR SUBSTRING(" + key + ", 1, 7) = 'sha256:')))\n" +
		"  AND (w." + seq + " IS NULL OR " + pos.after(d, "v."+seq, "w."+seq) + ")"
}

// partitionPrefix is how the Kinesis sink's partition keys of a table begin
// (stream/kinesis appendPartitionKey): schema.table: with a name holding
// '.', ':' or '"' quoted. Keys over 256 bytes are replaced by "sha256:" and
// a digest, which names no table.
func partitionPrefix(t *change.Table) string {
	name := func(s string) string {
		if strings.ContainsAny(s, `.:"`) {
			return change.QuoteIdent(s)
		}
		return s
	}
	return name(t.Schema) + "." + name(t.Name) + ":"
}

// UnparsedSQL lists the landed, unmerged records that Redshift could not
// parse and that may be the table's: shard, sequence number, partition key
// (Kafka: partition, offset, key).
func UnparsedSQL(p *Plan, tp *TablePlan) string {
	pos, d := p.pos(), p.Config.Dialect
	return "SELECT v." + q(pos.lane) + ", v." + q(pos.seq) + ", " + pos.key(d) + "\n" + pendingSource(p, tp) +
		"\n  AND v.\"unparsed_data\" IS NOT NULL\nORDER BY v." + q(pos.lane) + ", " + pos.desc(d, "v."+q(pos.seq)) + "\nLIMIT 20"
}

// ErrUnparseable is returned by Merge when a record Redshift could not parse
// may belong to a table: its change would be lost if the merge went on.
var ErrUnparseable = errors.New("a record could not be parsed by Redshift")

// ErrShapeChanged is returned by Merge when records of a table carry a
// schema change sluice does not apply to the mirror itself (a changed key
// or column type; schema.go).
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

// MergeRun is one run of the schedule, as a status display shows it.
type MergeRun struct {
	Start time.Time
	Took  time.Duration
	Err   error // nil: every table merged
}

// ScheduleOptions configure Schedule.
type ScheduleOptions struct {
	Every  time.Duration // between the starts of two runs
	Logger *slog.Logger  // default: discard
	// Ran, when set, is told of each run that was not cut short by ctx,
	// before the next one starts. It runs on the schedule's goroutine, so
	// while it runs the connection is free (sluice run counts the pending
	// records then).
	Ran func(ctx context.Context, r MergeRun)
}

// Schedule runs Merge now and then every opt.Every until ctx ends, and
// returns ctx's error. A failed run is logged and retried at the next tick:
// the merge is all-or-nothing per table, so a failure leaves the mirror
// and its watermarks as they were.
func Schedule(ctx context.Context, conn Conn, p *Plan, opt ScheduleOptions) error {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(opt.Every)
	defer t.Stop()
	log.Info("redshift merge schedule started", "every", opt.Every, "tables", len(p.Tables))
	for {
		start := time.Now()
		err := Merge(ctx, conn, p)
		if ctx.Err() != nil {
			// A run cut short says nothing about the mirror.
			return ctx.Err()
		}
		took := time.Since(start)
		if err != nil {
			log.Error("redshift merge failed; retrying at the next interval", "err", err, "interval", opt.Every)
		} else {
			log.Debug("redshift merge done", "took", took)
		}
		if opt.Ran != nil {
			opt.Ran(ctx, MergeRun{Start: start, Took: took, Err: err})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
