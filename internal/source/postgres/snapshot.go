package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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

// chunk is one COPY of a table: the heap pages [from, to) by ctid of rel
// (the table, or one leaf partition of a partitioned table), to < 0 meaning
// "to the end". Page ranges rather than key ranges work for every table
// (with or without a usable key), need no sort, and are read by TID range
// scans; the last chunk is open-ended because a table can only have grown
// past the size measured, never holding rows our snapshot sees there. A
// whole chunk reads rel entirely (a partitioned table read through its
// root, when its partitions cannot be read one by one).
type chunk struct {
	meta     *tableMeta
	rel      string // quoted relation to read
	whole    bool
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
	return s.snapshot(ctx, metas, nil, emit)
}

// snapshot copies the tables of metas in one exported snapshot. With reset
// set (a re-snapshot while streaming), each table's schema is read again
// inside the snapshot and reset is emitted, with those schemas in its Reset,
// before any row; the new schemas then replace the old ones.
func (s *Source) snapshot(ctx context.Context, metas []*tableMeta, reset *change.Batch, emit pipeline.Emit) error {
	metas = slices.Clone(metas)
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
	s.log.Info("snapshot started", "tables", len(metas), "position", point.String(), "workers", s.cfg.SnapshotWorkers)

	// Plan the chunks inside the snapshot, then start the workers; the
	// exporting connection stays idle until every worker has imported it.
	plan, err := s.connect(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	chunks, err := s.planSnapshot(ctx, plan, res.SnapshotName, metas, reset != nil)
	plan.Close(context.Background())
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	// From here on the stream drops these tables' changes committed before
	// the snapshot: it holds them.
	for _, m := range metas {
		m.snapAt.Store(uint64(point))
	}
	if reset != nil {
		for _, m := range metas {
			reset.Reset = append(reset.Reset, m.table)
		}
		if err := emit(ctx, reset); err != nil {
			return err
		}
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
	if reset != nil {
		s.mu.Lock()
		for _, m := range metas {
			s.tables[m.table.ID()] = m
		}
		s.mu.Unlock()
	}
	s.log.Info("snapshot done", "tables", len(metas), "position", point.String())
	return nil
}

func slotLimitHint(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "53400" {
		return ": all replication slots are in use (a snapshot needs one more, temporarily): drop unused slots (SELECT slot_name FROM pg_replication_slots WHERE NOT active) or raise max_replication_slots and restart the server"
	}
	return ""
}

// planSnapshot imports the snapshot and cuts the tables into chunks. With
// reload, it first reads each table's schema again inside the snapshot
// (replacing metas' entries with new ones) together with its catalog state.
func (s *Source) planSnapshot(ctx context.Context, conn *pgx.Conn, snapshot string, metas []*tableMeta, reload bool) ([]chunk, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("plan chunks: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+change.QuoteLiteral(snapshot)); err != nil {
		return nil, fmt.Errorf("plan chunks: import snapshot: %w", err)
	}
	cats := map[uint32]*catalogState{}
	if reload {
		for i, m := range metas {
			nm, err := s.loadTable(ctx, conn, m.table.ID(), false)
			if err != nil {
				return nil, &permanent{fmt.Errorf("read the schema of %s again: %w", m.table.ID(), err)}
			}
			nm.table.Version = m.table.Version + 1
			metas[i] = nm
		}
		if err := readCatalogs(ctx, tx, metas); err != nil {
			return nil, err
		}
	}
	var roots []uint32
	for _, m := range metas {
		if m.partitioned {
			roots = append(roots, m.relid)
		}
	}
	if len(roots) > 0 {
		// The partitions as the snapshot sees them.
		if cats, err = readCatalog(ctx, tx, roots); err != nil {
			return nil, err
		}
	}
	var chunks []chunk
	for _, m := range metas {
		left := new(atomic.Int32)
		var mine []chunk
		switch {
		case !m.partitioned:
			if mine, err = s.pageChunks(ctx, tx, m, m.relid, m.table.ID().Quoted(), left); err != nil {
				return nil, err
			}
		default:
			leaves := cats[m.relid].sortedFiles()
			byLeaf := len(leaves) > 0
			for _, f := range leaves {
				byLeaf = byLeaf && f.canSelect && f.kind == "r"
			}
			if !byLeaf {
				// No partitions, or some that cannot be read one by one
				// (no SELECT on them, foreign tables): through the root.
				mine = []chunk{{meta: m, rel: m.table.ID().Quoted(), whole: true, left: left}}
				break
			}
			for _, f := range leaves {
				cs, err := s.pageChunks(ctx, tx, m, f.oid, f.name, left)
				if err != nil {
					return nil, err
				}
				mine = append(mine, cs...)
			}
		}
		left.Store(int32(len(mine)))
		chunks = append(chunks, mine...)
	}
	return chunks, nil
}

// pageChunks cuts one relation holding rows into ctid page ranges.
func (s *Source) pageChunks(ctx context.Context, tx pgx.Tx, m *tableMeta, oid uint32, rel string, left *atomic.Int32) ([]chunk, error) {
	var pages int64
	var relpages int64
	var reltuples float64
	err := tx.QueryRow(ctx, `SELECT pg_relation_size($1::oid) / current_setting('block_size')::bigint, c.relpages::bigint, c.reltuples::float8
		FROM pg_catalog.pg_class c WHERE c.oid = $1::oid`, oid).Scan(&pages, &relpages, &reltuples)
	if err != nil {
		return nil, fmt.Errorf("plan chunks of %s: %w", rel, err)
	}
	perPage := 100.0 // a guess for tables never analyzed
	if relpages > 0 && reltuples > 0 {
		perPage = max(reltuples/float64(relpages), 1)
	}
	step := max(int64(float64(s.cfg.ChunkRows)/perPage), 1)
	var mine []chunk
	for from := int64(0); ; from += step {
		c := chunk{meta: m, rel: rel, from: from, to: from + step, left: left}
		if c.to >= pages {
			c.to = -1
			mine = append(mine, c)
			break
		}
		mine = append(mine, c)
	}
	return mine, nil
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
	// vals is where rows' values are cut from, many rows per allocation.
	vals []change.Value
}

// rowsPerSlab is how many rows' values one allocation holds.
const rowsPerSlab = 256

// newBatch is an empty batch with room for a whole batch of rows.
func (w *snapWorker) newBatch() *change.Batch {
	return &change.Batch{Changes: make([]change.Change, 0, w.s.cfg.BatchChanges)}
}

func (w *snapWorker) copyChunk(ctx context.Context, c chunk) error {
	t := c.meta.table
	names := make([]string, len(t.Columns))
	for i, col := range t.Columns {
		names[i] = col.Name
	}
	where := fmt.Sprintf(" WHERE ctid >= '(%d,0)'::tid", c.from)
	if c.to >= 0 {
		where += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", c.to)
	}
	if c.whole {
		where = ""
	}
	// A partitioned table cannot be copied directly, only through a query.
	sql := "COPY (SELECT " + quoteIdents(names) + " FROM " + c.rel + where + ") TO STDOUT"
	if len(names) == 0 {
		sql = "COPY (SELECT FROM " + c.rel + where + ") TO STDOUT"
	}
	w.batch = w.newBatch()
	w.bytes = 0
	lw := &lineWriter{line: func(line string) error { return w.row(ctx, c.meta, line) }}
	if _, err := w.conn.PgConn().CopyTo(ctx, lw, sql); err != nil {
		return fmt.Errorf("copy %s (%s pages %d..%d): %w", t.ID(), c.rel, c.from, c.to, err)
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
	n := len(m.types)
	if len(w.vals) < n {
		w.vals = make([]change.Value, n*rowsPerSlab)
	}
	after := w.vals[:n:n]
	w.vals = w.vals[n:]
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
		w.batch = w.newBatch()
		w.bytes = 0
	}
	return nil
}
