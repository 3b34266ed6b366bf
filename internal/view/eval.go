package view

import (
	"context"
	"database/sql/driver"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/change"
)

// evaluate runs every live view that reads a touched input over the
// transaction just received, appending their output changes to out and to
// the output log.
func (e *Engine) evaluate(ctx context.Context, touched []*input, out *change.Batch) error {
	rid := change.QuoteIdent(ridCol)
	for _, in := range touched {
		if err := e.exec(ctx, "INSERT INTO "+in.delta+" SELECT * FROM "+in.old+" UNION ALL SELECT * FROM "+in.quoted+" WHERE "+rid+" >= ?", e.txRid); err != nil {
			return err
		}
	}
	seq := e.seqBase
	var logRows [][]driver.Value
	at, _ := e.curTime.at.(time.Time)
	for _, v := range e.views {
		if !v.live || v.stopped != "" {
			continue
		}
		var js []int
		for j, o := range v.occ {
			if o.in.touched {
				js = append(js, j)
			}
		}
		if len(js) == 0 {
			continue
		}
		changes, err := e.evalView(ctx, v, js)
		if err != nil {
			if _, ok := err.(*RuntimeError); ok {
				return err
			}
			msg, _, _ := duckPlace(err)
			return &RuntimeError{View: v.spec.Name, Pos: change.Position{CommitLSN: e.cur}, From: e.first, Key: e.touchedKeys(ctx, touched), Msg: msg}
		}
		for i := range changes {
			seq++
			c := &changes[i]
			c.Pos = change.Position{CommitLSN: e.cur, LSN: change.LSN(seq)}
			c.TxID, c.CommitTime = e.curTime.txid, at
			out.Changes = append(out.Changes, *c)
			logRows = append(logRows, []driver.Value{uint64(e.cur), seq, v.slug(), uint8(c.Op), c.TxID, at,
				blob(c.Before), blob(c.After)})
		}
	}
	if e.curEvents {
		e.eventSeq = seq - eventSeqBase
	}
	return e.appendRows(ctx, "", "_sluice", "outlog", logRows)
}

func (v *compiled) quotedCols(prefix string, idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, prefix+change.QuoteIdent(v.cols[i].name))
	}
	return strings.Join(s, ", ")
}

// evalView recomputes the output rows of one view that the transaction may
// have changed and returns the difference against the stored output.
func (e *Engine) evalView(ctx context.Context, v *compiled, js []int) ([]change.Change, error) {
	var parts []string
	for _, j := range js {
		parts = append(parts, v.affSQL[j])
	}
	union := strings.Join(parts, " UNION ALL ")
	out := v.outTable()
	outName := change.QuoteIdent("out." + v.slug())
	var qs []string
	var delOut, before string
	affTable := v.tmp("aff")
	if v.mode == modeGroups {
		affTable = v.tmp("affrid")
	}
	if err := e.exec(ctx, "DELETE FROM "+affTable); err != nil {
		return nil, err
	}
	n, err := e.execN(ctx, "INSERT INTO "+affTable+" SELECT DISTINCT * FROM ("+union+")")
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil // the transaction reaches no row of this view
	}
	if v.mode == modeRows {
		cond := "(" + v.quotedCols("", v.lkey) + ") IN (SELECT * FROM " + v.tmp("aff") + ")"
		before = "SELECT * FROM " + out + " WHERE " + cond
		delOut = "DELETE FROM " + out + " WHERE " + cond
	} else {
		rid := change.QuoteIdent(ridCol)
		var ks, match []string
		for i, n := range v.keyNames() {
			ks = append(ks, fmt.Sprintf(`"k%d"`, i))
			match = append(match, fmt.Sprintf(`a."k%d" IS NOT DISTINCT FROM %s.%s`, i, outName, change.QuoteIdent(n)))
		}
		k := strings.Join(ks, ", ")
		inAff := rid + " IN (SELECT " + rid + " FROM " + v.tmp("affrid") + ")"
		qs = append(qs,
			"DELETE FROM "+v.tmp("newlin"),
			"INSERT INTO "+v.tmp("newlin")+" "+v.lineageSQL,
			"DELETE FROM "+v.tmp("affk"),
			"INSERT INTO "+v.tmp("affk")+" SELECT DISTINCT * FROM (SELECT "+k+" FROM "+v.linTable()+" WHERE "+inAff+" UNION ALL SELECT "+k+" FROM "+v.tmp("newlin")+")",
			"DELETE FROM "+v.linTable()+" WHERE "+inAff,
			"INSERT INTO "+v.linTable()+" SELECT * FROM "+v.tmp("newlin"))
		before = "SELECT * FROM " + out + " WHERE EXISTS (SELECT 1 FROM " + v.tmp("affk") + " a WHERE " + strings.Join(match, " AND ") + ")"
		delOut = "DELETE FROM " + out + " USING " + v.tmp("affk") + " a WHERE " + strings.Join(match, " AND ")
	}
	qs = append(qs,
		"DELETE FROM "+v.tmp("after"),
		"INSERT INTO "+v.tmp("after")+" "+v.restrictSQL)
	for _, q := range qs {
		if err := e.exec(ctx, q); err != nil {
			return nil, err
		}
	}
	if err := e.checkUnique(ctx, v); err != nil {
		return nil, err
	}
	changes, err := e.diff(ctx, v, before)
	if err != nil {
		return nil, err
	}
	if len(changes) > 0 {
		if err := e.exec(ctx, delOut); err != nil {
			return nil, err
		}
		if err := e.exec(ctx, "INSERT INTO "+out+" SELECT * FROM "+v.tmp("after")); err != nil {
			return nil, err
		}
	}
	return changes, nil
}

// checkUnique stops a view whose declared key is not unique in its new rows.
func (e *Engine) checkUnique(ctx context.Context, v *compiled) error {
	if len(v.spec.Key) == 0 {
		return nil
	}
	var render []string
	for _, k := range v.key {
		render = append(render, v.cols[k].render(change.QuoteIdent(v.cols[k].name)))
	}
	q := "SELECT " + strings.Join(render, ", ") + ", count(*) FROM " + v.tmp("after") + " GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
	rows, err := e.conn.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() {
		vals := make([]any, len(render)+1)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		var parts []string
		for i, k := range v.key {
			parts = append(parts, v.cols[k].name+"="+value(v.cols[k].typ.Kind, vals[i]).String())
		}
		return &RuntimeError{View: v.spec.Name, Pos: change.Position{CommitLSN: e.cur}, From: e.first, Key: "(" + strings.Join(parts, ", ") + ")",
			Msg: fmt.Sprintf("the declared key (%s) is not unique: %v output rows have this key; declare a key that is unique, or derive it", strings.Join(v.keyNames(), ", "), vals[len(vals)-1])}
	}
	return rows.Err()
}

// diff compares the view's before and after working tables on the key.
func (e *Engine) diff(ctx context.Context, v *compiled, before string) ([]change.Change, error) {
	sel := []string{`b."_sluice_x" IS NOT NULL`, `a."_sluice_x" IS NOT NULL`}
	var differ, order, on []string
	for _, c := range v.cols {
		sel = append(sel, c.render("b."+change.QuoteIdent(c.name)))
	}
	for _, c := range v.cols {
		q := change.QuoteIdent(c.name)
		sel = append(sel, c.render("a."+q))
		differ = append(differ, "b."+q+" IS DISTINCT FROM a."+q)
	}
	for _, n := range v.keyNames() {
		q := change.QuoteIdent(n)
		on = append(on, "b."+q+" IS NOT DISTINCT FROM a."+q)
		order = append(order, "coalesce(a."+q+", b."+q+") NULLS FIRST")
	}
	q := "SELECT " + strings.Join(sel, ", ") + ` FROM (SELECT *, true AS "_sluice_x" FROM (` + before + `)) b FULL OUTER JOIN (SELECT *, true AS "_sluice_x" FROM ` +
		v.tmp("after") + ") a ON " + strings.Join(on, " AND ") + ` WHERE b."_sluice_x" IS NULL OR a."_sluice_x" IS NULL OR ` + strings.Join(differ, " OR ") +
		" ORDER BY " + strings.Join(order, ", ")
	rows, err := e.conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	n := len(v.cols)
	vals := make([]any, 2+2*n)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []change.Change
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		had, has := vals[0].(bool), vals[1].(bool)
		c := change.Change{Table: v.table}
		if had {
			c.Before = v.row(vals[2 : 2+n])
		}
		if has {
			c.After = v.row(vals[2+n:])
		}
		switch {
		case had && has:
			c.Op = change.OpUpdate
		case had:
			c.Op = change.OpDelete
		default:
			c.Op = change.OpInsert
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (v *compiled) row(vals []any) []change.Value {
	r := make([]change.Value, len(vals))
	for i, x := range vals {
		r[i] = value(v.cols[i].typ.Kind, x)
	}
	return r
}

// initView computes a view's whole output: emitted as snapshot rows (op r)
// with a SnapshotDone, plus deletes of keys a previous output held that the
// new one lacks.
func (e *Engine) initView(ctx context.Context, v *compiled, out *change.Batch) error {
	if e.cur != 0 {
		return nil // never over half a transaction: the next batch does it
	}
	var p change.LSN
	for _, o := range v.occ {
		p = max(p, o.in.snapPos)
	}
	p = max(p, e.done)
	pos := change.Position{CommitLSN: p}
	if v.readsEvents() {
		pos = e.nextEventPos() // after every output of its events (see events.go)
	}
	qs := []string{
		"DELETE FROM " + v.tmp("after"),
		"INSERT INTO " + v.tmp("after") + " " + v.fullSQL,
	}
	for _, q := range qs {
		if err := e.exec(ctx, q); err != nil {
			msg, _, _ := duckPlace(err)
			return &RuntimeError{View: v.spec.Name, Pos: pos, Msg: msg}
		}
	}
	saved := e.cur
	e.cur = p
	err := e.checkUnique(ctx, v)
	e.cur = saved
	if err != nil {
		return err
	}
	// The whole new output as snapshot rows in key order, then deletes of
	// the keys a previous output held that it lacks: numbered in a
	// working table that the pages are read from (see page).
	var order, on []string
	for _, n := range v.keyNames() {
		q := change.QuoteIdent(n)
		order = append(order, q+" NULLS FIRST")
		on = append(on, "a."+q+" IS NOT DISTINCT FROM b."+q)
	}
	if err := e.exec(ctx, "CREATE OR REPLACE TEMP TABLE "+bare(v.tmp("init"))+` AS SELECT row_number() OVER (ORDER BY "_sluice_del", `+strings.Join(order, ", ")+`) AS "_sluice_n", * FROM (`+
		`SELECT false AS "_sluice_del", * FROM `+v.tmp("after")+
		` UNION ALL SELECT true, * FROM `+v.outTable()+" b WHERE NOT EXISTS (SELECT 1 FROM "+v.tmp("after")+" a WHERE "+strings.Join(on, " AND ")+`)) ORDER BY "_sluice_n"`); err != nil {
		return fmt.Errorf("view %s: number its output: %w", v.spec.Name, err)
	}
	e.pages = append(e.pages, &initPages{v: v, pos: pos, next: 1})
	qs = []string{"DELETE FROM " + v.outTable(), "INSERT INTO " + v.outTable() + " SELECT * FROM " + v.tmp("after")}
	if v.mode == modeGroups {
		rid := change.QuoteIdent(ridCol)
		qs = append(qs,
			"DELETE FROM "+v.tmp("affrid"),
			"INSERT INTO "+v.tmp("affrid")+" SELECT "+rid+" FROM "+v.occ[0].in.quoted,
			"DELETE FROM "+v.linTable(),
			"INSERT INTO "+v.linTable()+" "+v.lineageSQL)
	}
	for _, q := range qs {
		if err := e.exec(ctx, q); err != nil {
			return err
		}
	}
	v.live = true
	if err := e.saveView(ctx, v); err != nil {
		return err
	}
	for _, o := range v.occ {
		if err := e.passed(ctx, o.in); err != nil {
			return err
		}
	}
	return nil
}

// initPages is a view's whole output being emitted, page by page.
type initPages struct {
	v    *compiled
	pos  change.Position
	next int64 // the row number to emit next, from 1
}

// defaultPageRows bounds the rows of a view's whole output emitted in one
// batch: the output of a view over 10M rows must not be held at once.
const defaultPageRows = 50_000

// page appends up to the page size of the pending whole outputs to out; a
// view's SnapshotDone comes with its last rows.
func (e *Engine) page(ctx context.Context, out *change.Batch) error {
	budget := int64(e.pageRows)
	if budget <= 0 {
		budget = defaultPageRows
	}
	for len(e.pages) > 0 && budget > 0 {
		pg := e.pages[0]
		v := pg.v
		render := []string{`"_sluice_del"`}
		for _, c := range v.cols {
			render = append(render, c.render(change.QuoteIdent(c.name)))
		}
		// Stored in number order: the range is read through the zone
		// maps, not by scanning the whole output for every page.
		rows, err := e.conn.QueryContext(ctx, "SELECT "+strings.Join(render, ", ")+" FROM "+v.tmp("init")+` WHERE "_sluice_n" >= ? AND "_sluice_n" < ? ORDER BY "_sluice_n"`, pg.next, pg.next+budget)
		if err != nil {
			return fmt.Errorf("view %s: read its output: %w", v.spec.Name, err)
		}
		vals := make([]any, len(render))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		var n int64
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return err
			}
			n++
			if vals[0].(bool) {
				out.Changes = append(out.Changes, change.Change{Op: change.OpDelete, Table: v.table, Before: v.row(vals[1:]), Pos: pg.pos})
			} else {
				out.Changes = append(out.Changes, change.Change{Op: change.OpRead, Table: v.table, After: v.row(vals[1:]), Pos: pg.pos})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		pg.next += n
		budget -= n
		if budget > 0 { // the view's output is all out
			if err := e.exec(ctx, "DROP TABLE IF EXISTS "+v.tmp("init")); err != nil {
				return err
			}
			out.Snapshotted = append(out.Snapshotted, change.SnapshotDone{Table: v.table, Pos: pg.pos})
			e.log.Info("view output snapshotted", "view", v.slug(), "position", pg.pos, "rows", pg.next-1)
			e.pages = e.pages[1:]
		}
	}
	return nil
}

// Pending reports whether a view's whole output is still being emitted:
// NextPage returns the rest, and until it is all out, Apply refuses new
// source changes (a later change of the view must not reach the target
// before the snapshot rows it follows).
func (e *Engine) Pending() bool { return e.core != nil && len(e.pages) > 0 }

// NextPage returns the next part of the whole outputs being emitted (see
// Pending): op r rows and deletes of vanished keys, with a view's
// SnapshotDone after its last rows; an empty batch when there are none.
func (e *Engine) NextPage(ctx context.Context) (*change.Batch, error) {
	if e.closed {
		return nil, ErrClosed
	}
	out := &change.Batch{}
	if err := e.page(ctx, out); err != nil {
		e.broken = err
		return nil, err
	}
	return out, nil
}

// replay emits again the logged outputs of the transaction committed at c.
func (e *Engine) replay(ctx context.Context, c change.LSN, out *change.Batch) error {
	_, err := e.logged(ctx, out, func(v *compiled) bool {
		return !v.readsEvents() // a view over events has its outputs sent again by Resend
	}, `WHERE commit_lsn = ? ORDER BY seq`, uint64(c))
	return err
}

// logged appends to out the output log's rows the condition selects, of
// the views keep accepts, and returns how many.
func (e *Engine) logged(ctx context.Context, out *change.Batch, keep func(*compiled) bool, where string, args ...any) (int, error) {
	rows, err := e.conn.QueryContext(ctx, `SELECT view_name, commit_lsn, seq, op, txid, commit_time, before, after FROM "_sluice"."outlog" `+where, args...)
	if err != nil {
		return 0, fmt.Errorf("read view output log: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var name string
		var cl uint64
		var seq int64
		var op uint8
		var txid uint32
		var at time.Time
		var before, after []byte
		if err := rows.Scan(&name, &cl, &seq, &op, &txid, &at, &before, &after); err != nil {
			return n, fmt.Errorf("read view output log: %w", err)
		}
		v := e.byName[name]
		if v == nil || !keep(v) {
			continue
		}
		ch := change.Change{Op: change.Op(op), Table: v.table, Pos: change.Position{CommitLSN: change.LSN(cl), LSN: change.LSN(seq)}, TxID: txid, CommitTime: at}
		if ch.Before, err = decodeRow(before); err != nil {
			return n, err
		}
		if ch.After, err = decodeRow(after); err != nil {
			return n, err
		}
		out.Changes = append(out.Changes, ch)
		n++
	}
	return n, rows.Err()
}

// touchedKeys names a few input rows of the failing transaction.
func (e *Engine) touchedKeys(_ context.Context, touched []*input) string {
	var parts []string
	for _, in := range touched {
		parts = append(parts, in.sample...)
	}
	return strings.Join(parts, " ")
}

// sampleKey remembers the first few input keys a transaction touches, for
// error messages (a failed DuckDB transaction can no longer be read).
func (in *input) sampleKey(c *change.Change) {
	if len(in.sample) >= 5 {
		return
	}
	row, names := c.After, in.tbl.KeyNames()
	if c.Op == change.OpDelete {
		row = c.Before
	}
	idx := c.Table.Key
	if len(idx) == 0 {
		names = nil
		for i, col := range c.Table.Columns {
			idx = append(idx, i)
			names = append(names, col.Name)
		}
	}
	var kv []string
	for i, j := range idx {
		if j < len(row) && i < len(names) {
			kv = append(kv, names[i]+"="+row[j].String())
		}
	}
	s := in.id.String() + "(" + strings.Join(kv, ", ") + ")"
	if !slices.Contains(in.sample, s) {
		in.sample = append(in.sample, s)
	}
}

// deadLetter records a view's runtime failure in the state file.
func (e *Engine) deadLetter(ctx context.Context, re *RuntimeError) {
	input := ""
	if i := strings.Index(re.Key, "("); i > 0 {
		input = re.Key[:i]
	}
	if err := e.exec(ctx, `INSERT INTO "_sluice"."dead_letters" (view_name, input_table, input_key, commit_lsn, lsn, message) VALUES (?, ?, ?, ?, ?, ?)`,
		re.View, input, re.Key, uint64(re.Pos.CommitLSN), uint64(re.Pos.LSN), re.Msg); err != nil {
		e.log.Error("record view dead letter", "view", re.View, "error", err)
	}
}

func blob(row []change.Value) driver.Value {
	if row == nil {
		return nil
	}
	return appendRow(nil, row)
}
