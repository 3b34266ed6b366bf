package view

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// InputRows is one input table's rows at one moment, aligned with
// Table.Columns.
type InputRows struct {
	Table *change.Table
	Rows  [][]change.Value
}

// Evaluate runs a view's SQL in full over the given input rows, in a
// scratch database apart from the engine's state, and returns the output
// rows aligned with the view's output table (Outputs), ordered by key. It
// is what `sluice verify` compares a view's target table with: the view's
// SQL over a consistent snapshot of the source. Every table the view reads
// must be given.
func (e *Engine) Evaluate(ctx context.Context, view string, inputs []InputRows) ([][]change.Value, error) {
	id, err := change.ParseTableID(view)
	if err != nil {
		return nil, err
	}
	v := e.byName[id.Schema+"."+id.Name]
	if v == nil {
		return nil, fmt.Errorf("evaluate view %s: no such view", view)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, fmt.Errorf("evaluate view %s: %w", view, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("evaluate view %s: %w", view, err)
	}
	defer conn.Close()
	s := &Engine{core: &core{db: db, conn: conn, log: slog.New(slog.DiscardHandler), nextRid: 1, stmts: map[string]*sql.Stmt{}}}
	defer func() {
		for _, st := range s.stmts {
			st.Close()
		}
	}()
	for _, q := range []string{`SET TimeZone = 'UTC'`, `CREATE SCHEMA "_sluice"`} {
		if err := s.exec(ctx, q); err != nil {
			return nil, err
		}
	}
	given := map[change.TableID]InputRows{}
	for _, r := range inputs {
		given[r.Table.ID()] = r
	}
	done := map[change.TableID]bool{}
	for _, o := range v.occ {
		if done[o.in.id] {
			continue
		}
		done[o.in.id] = true
		r, ok := given[o.in.id]
		if !ok {
			return nil, fmt.Errorf("evaluate view %s: no rows given for its input %s", view, o.in.id)
		}
		in := newInput(r.Table)
		for _, c := range r.Table.Columns {
			ct, duck := colType(c)
			in.stored = append(in.stored, storedCol{name: c.Name, ct: ct, duck: duck})
		}
		// The stored shape the view was compiled against must hold.
		for _, sc := range o.in.stored {
			if !v.uses[o.in.id][sc.name] {
				continue
			}
			j := r.Table.Column(sc.name)
			if j < 0 || in.stored[j].duck != sc.duck {
				return nil, fmt.Errorf("evaluate view %s: column %s of %s is missing or of another type in the rows given", view, sc.name, o.in.id)
			}
		}
		defs := []string{change.QuoteIdent(ridCol) + " BIGINT"}
		for _, sc := range in.stored {
			defs = append(defs, change.QuoteIdent(sc.name)+" "+sc.duck)
		}
		for _, q := range []string{
			"CREATE SCHEMA IF NOT EXISTS " + change.QuoteIdent(in.id.Schema),
			"CREATE TABLE " + in.quoted + " (" + strings.Join(defs, ", ") + ")",
		} {
			if err := s.exec(ctx, q); err != nil {
				return nil, err
			}
		}
		if err := s.stageTable(ctx, in); err != nil {
			return nil, err
		}
		for i := 0; i < len(r.Rows); i += maxChunk {
			end := min(i+maxChunk, len(r.Rows))
			if err := s.insertRows(ctx, in, r.Rows[i:end]); err != nil {
				return nil, fmt.Errorf("evaluate view %s: %w", view, err)
			}
		}
	}
	var render, order []string
	for _, c := range v.cols {
		render = append(render, c.render(change.QuoteIdent(c.name)))
	}
	for _, n := range v.keyNames() {
		order = append(order, change.QuoteIdent(n)+" NULLS FIRST")
	}
	rows, err := conn.QueryContext(ctx, "SELECT "+strings.Join(render, ", ")+" FROM ("+v.fullSQL+") ORDER BY "+strings.Join(order, ", "))
	if err != nil {
		msg, _, _ := duckPlace(err)
		return nil, fmt.Errorf("evaluate view %s: %s", view, msg)
	}
	defer rows.Close()
	var out [][]change.Value
	vals := make([]any, len(v.cols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, v.row(vals))
	}
	return out, rows.Err()
}
