package warehouse

import (
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

// A column dropped and added again under the same name has a new number at
// the source: the target drops and adds it, and rows from before are not
// carried into it.
func TestRenumberedColumnIsDroppedAndAdded(t *testing.T) {
	col := func(name string, num int) change.Column {
		return change.Column{Name: name, Num: num, Type: change.Type{Name: "integer", Kind: change.KindInt}, Key: name == "id"}
	}
	from := &change.Table{Schema: "public", Name: "t", Key: []int{0}, Columns: []change.Column{col("id", 1), col("rating", 2)}}
	to := &change.Table{Schema: "public", Name: "t", Key: []int{0}, Columns: []change.Column{col("id", 1), col("rating", 3)}}
	if from.SameShape(to) {
		t.Fatal("a renumbered column must change the shape")
	}
	stmts, err := AlterTableSQL(testDialect{}, from.ID(), from, to)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(stmts, "\n")
	if !strings.Contains(got, `DROP COLUMN "rating"`) || !strings.Contains(got, `ADD COLUMN "rating"`) {
		t.Errorf("ALTERs:\n%s", got)
	}
	seg := &Segment{Table: from, Rows: []Row{{Values: []change.Value{change.V(change.KindInt, "1"), change.V(change.KindInt, "5")}}}}
	seg.Project(to)
	if v := seg.Rows[0].Values[1]; !v.IsNull() {
		t.Errorf("the old column's value %v was carried into the new one", v)
	}
}

// testDialect spells types by their Postgres names; only DDL uses it here.
type testDialect struct{}

func (testDialect) ColumnType(ct ColType) string            { return ct.PGName }
func (testDialect) StageType(ct ColType) string             { return ct.PGName }
func (testDialect) FromStage(_ ColType, e string) string    { return e }
func (testDialect) Canonical(_ ColType, e string) string    { return e }
func (testDialect) HexInt(e string, _ int) string           { return e }
func (testDialect) CreateStage(n string, d []string) string { return n }
func (testDialect) StageName(n string) string               { return n }
func (testDialect) Truncate(t change.TableID) string        { return "TRUNCATE " + t.Quoted() }
func (testDialect) Literal(_ *change.Table, _ int, v change.Value) (string, error) {
	return change.QuoteLiteral(v.Text), nil
}
