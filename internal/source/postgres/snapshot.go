package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/pipeline"
)

// chunk is one COPY of a table: the heap pages [from, to) by ctid, to < 0
// meaning "to the end". Page ranges rather than key ranges work for every
// table (with or without a usable key), need no sort, and are read by TID
// range scans; the last chunk is open-ended because a table can only have
// grown past the size measured, never holding rows our snapshot sees there.
type chunk struct {
	meta     *tableMeta
	from, to int64
	left     *atomic.Int32 // chunks of this table not yet emitted
}

// Snapshot copies the tables consistently with the replication slot. A
// temporary slot exports a snapshot at its consistent point; the slot
// created by Prepare already exists, so streaming starts at or before that
// point and the target skips the changes the snapshot already holds.
func (s *Source) Snapshot(ctx context.Context, tables []*change.Table, emit pipeline.Emit) error {
	if err := s.usable(); err != nil {
		return err
	}
	if len(tables) == 0 {
		return nil
	}
	metas := make([]*tableMeta, len(tables))
	for i, t := range tables {
		m := s.meta(t.ID())
		if m == nil {
			return fmt.Errorf("snapshot %s: the table was not prepared: list it in the source's tables and call Prepare first", t.ID())
		}
		metas[i] = m
	}
	repl, err := s.connectReplication(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	replOpen := true
	closeRepl := func() {
		if replOpen {
			replOpen = false
			_ = repl.Close(context.Background()) // drops the temporary slot
		}
	}
	defer closeRepl()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := s.cfg.Slot
	if len(name) > maxIdentLen-14 {
		name = name[:maxIdentLen-14]
	}
	name += "_snap_" + hex.EncodeToString(rnd[:])
	res, err := pglogrepl.ParseCreateReplicationSlot(repl.Exec(ctx, "CREATE_REPLICATION_SLOT "+name+" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"))
	if err != nil {
		if hint := slotLimitHint(err); hint != "" {
			return fmt.Errorf("snapshot: create temporary slot %s: %w%s: %w", name, err, hint, ErrNoSlot)
		}
		return fmt.Errorf("snapshot: create temporary slot %s: %w", name, err)
	}
	point, err := change.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	taken := time.Now().UTC()
	pos := change.Position{CommitLSN: point}
	s.log.Info("snapshot started", "tables", len(tables), "position", point.String(), "workers", s.cfg.SnapshotWorkers)

	// Plan the chunks inside the snapshot, then start the workers; the
	// exporting connection stays idle until every worker has imported it.
	plan, err := s.connect(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	chunks, err := s.planChunks(ctx, plan, res.SnapshotName, metas)
	plan.Close(context.Background())
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	workers := min(s.cfg.SnapshotWorkers, len(chunks))
	queue := make(chan chunk, len(chunks))
	for _, c := range chunks {
		queue <- c
	}
	close(queue)

	g, gctx := errgroup.WithContext(ctx)
	var imported sync.WaitGroup
	imported.Add(workers)
	var emitMu sync.Mutex
	serialEmit := func(ctx context.Context, b *change.Batch) error {
		// Batches of one table must reach the pipeline whole and before the
		// one that marks the table done, so emits are serialized.
		emitMu.Lock()
		defer emitMu.Unlock()
		return emit(ctx, b)
	}
	for w := 0; w < workers; w++ {
		g.Go(func() error {
			done := sync.OnceFunc(imported.Done)
			defer done()
			conn, err := s.connect(gctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(gctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
				return fmt.Errorf("begin snapshot transaction: %w", err)
			}
			if _, err := conn.Exec(gctx, "SET TRANSACTION SNAPSHOT "+change.QuoteLiteral(res.SnapshotName)); err != nil {
				return fmt.Errorf("import snapshot: %w", err)
			}
			done()
			w := &snapWorker{s: s, conn: conn, pos: pos, taken: taken, emit: serialEmit}
			for c := range queue {
				if err := w.copyChunk(gctx, c); err != nil {
					return err
				}
			}
			return nil
		})
	}
	imported.Wait()
	closeRepl()
	if err := g.Wait(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	s.log.Info("snapshot done", "tables", len(tables), "position", point.String())
	return nil
}

func slotLimitHint(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "53400" {
		return ": all replication slots are in use (a snapshot needs one more, temporarily): drop unused slots (SELECT slot_name FROM pg_replication_slots WHERE NOT active) or raise max_replication_slots and restart the server"
	}
	return ""
}

func (s *Source) planChunks(ctx context.Context, conn *pgx.Conn, snapshot string, metas []*tableMeta) ([]chunk, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("plan chunks: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+change.QuoteLiteral(snapshot)); err != nil {
		return nil, fmt.Errorf("plan chunks: import snapshot: %w", err)
	}
	var chunks []chunk
	for _, m := range metas {
		var pages int64
		var relpages int64
		var reltuples float64
		err := tx.QueryRow(ctx, `SELECT pg_relation_size($1::oid) / current_setting('block_size')::bigint, c.relpages::bigint, c.reltuples::float8
			FROM pg_catalog.pg_class c WHERE c.oid = $1::oid`, m.relid).Scan(&pages, &relpages, &reltuples)
		if err != nil {
			return nil, fmt.Errorf("plan chunks of %s: %w", m.table.ID(), err)
		}
		perPage := 100.0 // a guess for tables never analyzed
		if relpages > 0 && reltuples > 0 {
			perPage = max(reltuples/float64(relpages), 1)
		}
		step := max(int64(float64(s.cfg.ChunkRows)/perPage), 1)
		left := new(atomic.Int32)
		var mine []chunk
		for from := int64(0); ; from += step {
			c := chunk{meta: m, from: from, to: from + step, left: left}
			if c.to >= pages {
				c.to = -1
				mine = append(mine, c)
				break
			}
			mine = append(mine, c)
		}
		left.Store(int32(len(mine)))
		chunks = append(chunks, mine...)
	}
	return chunks, nil
}

type snapWorker struct {
	s      *Source
	conn   *pgx.Conn
	pos    change.Position
	taken  time.Time
	emit   pipeline.Emit
	batch  *change.Batch
	bytes  int
	fields []string
	nulls  []bool
}

func (w *snapWorker) copyChunk(ctx context.Context, c chunk) error {
	t := c.meta.table
	names := make([]string, len(t.Columns))
	for i, col := range t.Columns {
		names[i] = col.Name
	}
	where := fmt.Sprintf("ctid >= '(%d,0)'::tid", c.from)
	if c.to >= 0 {
		where += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", c.to)
	}
	sql := "COPY (SELECT " + quoteIdents(names) + " FROM " + t.ID().Quoted() + " WHERE " + where + ") TO STDOUT"
	if len(names) == 0 {
		sql = "COPY (SELECT FROM " + t.ID().Quoted() + " WHERE " + where + ") TO STDOUT"
	}
	w.batch = &change.Batch{}
	w.bytes = 0
	lw := &lineWriter{line: func(line string) error { return w.row(ctx, c.meta, line) }}
	if _, err := w.conn.PgConn().CopyTo(ctx, lw, sql); err != nil {
		return fmt.Errorf("copy %s pages %d..%d: %w", t.ID(), c.from, c.to, err)
	}
	if err := lw.finish(); err != nil {
		return fmt.Errorf("copy %s: %w", t.ID(), err)
	}
	if c.left.Add(-1) == 0 {
		w.batch.Snapshotted = append(w.batch.Snapshotted, change.SnapshotDone{Table: t, Pos: w.pos})
	}
	if len(w.batch.Changes) > 0 || len(w.batch.Snapshotted) > 0 {
		if err := w.emit(ctx, w.batch); err != nil {
			return err
		}
	}
	w.batch = nil
	return nil
}

func (w *snapWorker) row(ctx context.Context, m *tableMeta, line string) error {
	var err error
	w.fields, w.nulls, err = splitCopyLine(line, w.fields, w.nulls)
	if err != nil {
		return fmt.Errorf("table %s: %w", m.table.ID(), err)
	}
	if len(w.fields) != len(m.types) && !(len(m.types) == 0 && len(w.fields) == 1) {
		return fmt.Errorf("table %s: copy row has %d fields, want %d", m.table.ID(), len(w.fields), len(m.types))
	}
	after := make([]change.Value, len(m.types))
	for i, ti := range m.types {
		if w.nulls[i] {
			continue
		}
		if after[i], err = ti.decode(w.fields[i]); err != nil {
			return fmt.Errorf("table %s column %s: %w", m.table.ID(), m.table.Columns[i].Name, err)
		}
	}
	w.batch.Changes = append(w.batch.Changes, change.Change{
		Op: change.OpRead, Table: m.table, After: after, Pos: w.pos, CommitTime: w.taken,
	})
	w.bytes += w.batch.Changes[len(w.batch.Changes)-1].Size()
	if len(w.batch.Changes) >= w.s.cfg.BatchChanges || w.bytes >= w.s.cfg.BatchBytes {
		if err := w.emit(ctx, w.batch); err != nil {
			return err
		}
		w.batch = &change.Batch{Changes: make([]change.Change, 0, len(w.batch.Changes))}
		w.bytes = 0
	}
	return nil
}
