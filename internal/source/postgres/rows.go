package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-dev/sluice/internal/change"
)

// ReadRows reads every row of a configured table inside tx, decoded as the
// snapshot decodes them (aligned with the table's columns as the catalog
// has them now). verify uses it to evaluate a view's SQL over the source at
// its comparison point; a table's rows are held in memory.
func (s *Source) ReadRows(ctx context.Context, tx pgx.Tx, id change.TableID) (*change.Table, [][]change.Value, error) {
	m, err := s.loadTable(ctx, tx.Conn(), id, false)
	if err != nil {
		return nil, nil, err
	}
	t := m.table
	names := make([]string, len(t.Columns))
	for i, col := range t.Columns {
		names[i] = col.Name
	}
	q := "COPY (SELECT " + quoteIdents(names) + " FROM " + t.ID().Quoted() + ") TO STDOUT"
	var (
		rows   [][]change.Value
		fields []string
		nulls  []bool
	)
	lw := &lineWriter{line: func(line string) error {
		var err error
		if fields, nulls, err = splitCopyLine(line, fields, nulls); err != nil {
			return err
		}
		if len(fields) != len(m.types) {
			return fmt.Errorf("copy row has %d fields, want %d", len(fields), len(m.types))
		}
		row := make([]change.Value, len(m.types))
		for i, ti := range m.types {
			if nulls[i] {
				continue
			}
			if row[i], err = ti.decode(fields[i]); err != nil {
				return fmt.Errorf("column %s: %w", t.Columns[i].Name, err)
			}
		}
		rows = append(rows, row)
		return nil
	}}
	if _, err := tx.Conn().PgConn().CopyTo(ctx, lw, q); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", id, err)
	}
	if err := lw.finish(); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", id, err)
	}
	return t, rows, nil
}
