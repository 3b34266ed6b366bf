package view

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

func openErr(t *testing.T, specs []Spec, inputs ...*change.Table) error {
	t.Helper()
	e, err := Open(context.Background(), filepath.Join(t.TempDir(), "v.db"), specs, inputs, nil)
	if err == nil {
		e.Close()
		t.Fatal("Open succeeded")
	}
	return err
}

// Every view refused at start-up says why, where and what.
func TestStartupErrors(t *testing.T) {
	keyless := table("public", "clicks", col("user_id", intT(), false), col("url", textT(), false))
	cases := []struct {
		name string
		spec Spec
		want string
	}{
		{"unknown table", Spec{Name: "v", SQL: "SELECT id FROM public.nope"},
			"view v: line 1, column 16: unknown table public.nope (tables views may read: public.clicks, public.customers, public.orders)"},
		{"unknown column", Spec{Name: "v", SQL: "SELECT o.id,\n       o.colour\nFROM orders o"},
			"view v: line 2, column 8: unknown column colour in table o (public.orders has: id, customer_id, amount, status, note)"},
		{"unknown unqualified column", Spec{Name: "v", SQL: "SELECT id FROM orders WHERE colour = 'red'"},
			"view v: line 1, column 29: unknown column colour"},
		{"parse error", Spec{Name: "v", SQL: "SELECT id FROM orders WHERE"},
			"view v: line 1, column 28: syntax error at end of input"},
		{"volatile function", Spec{Name: "v", SQL: "SELECT id, now() AS at FROM orders"},
			"view v: line 1, column 12: volatile function now() is not allowed: a view's output must depend on its input rows only"},
		{"random", Spec{Name: "v", SQL: "SELECT id FROM orders WHERE random() < 0.5"},
			"view v: line 1, column 29: volatile function random() is not allowed: a view's output must depend on its input rows only"},
		{"subquery", Spec{Name: "v", SQL: "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers)"},
			"view v: line 1, column 41: unsupported construct: a subquery in an expression"},
		{"union", Spec{Name: "v", SQL: "SELECT id FROM orders UNION SELECT id FROM customers"},
			"view v: unsupported construct: set_operation (a view is one SELECT without UNION, INTERSECT or EXCEPT)"},
		{"order by", Spec{Name: "v", SQL: "SELECT id FROM orders ORDER BY id"},
			"view v: unsupported construct: ORDER BY (a view's output is a set of keyed rows)"},
		{"star", Spec{Name: "v", SQL: "SELECT * FROM orders"},
			"view v: line 1, column 8: unsupported construct: * (list the columns, so that a column added to an input does not change the view)"},
		{"window", Spec{Name: "v", SQL: "SELECT id, row_number() OVER (ORDER BY id) AS n FROM orders"},
			"view v: line 1, column 12: unsupported construct: window function row_number() OVER (...)"},
		{"right join", Spec{Name: "v", SQL: "SELECT o.id FROM orders o RIGHT JOIN customers c ON c.id = o.customer_id"},
			"view v: line 1, column 27: unsupported construct: RIGHT JOIN (only INNER and LEFT joins)"},
		{"underivable key", Spec{Name: "v", SQL: "SELECT o.amount, c.name FROM orders o JOIN customers c ON c.id = o.customer_id"},
			"view v: line 1, column 30: cannot derive the output key: key column id of o (public.orders) is not an output column; select it, or declare the view's key"},
		{"group key not selected", Spec{Name: "v", SQL: "SELECT count(*) AS n FROM orders GROUP BY status"},
			"view v: line 1, column 43: cannot derive the output key: GROUP BY expression status is not an output column (add it to the SELECT list)"},
		{"aggregate without group", Spec{Name: "v", SQL: "SELECT count(*) AS n FROM orders"},
			"view v: cannot derive the output key: an aggregate without GROUP BY has no key (add GROUP BY, or declare key)"},
		{"keyless table", Spec{Name: "v", SQL: "SELECT user_id, url FROM clicks"},
			"view v: line 1, column 26: cannot derive the output key: table public.clicks has no key (a keyless table is a multiset); declare the view's key, or GROUP BY"},
		{"declared key unknown", Spec{Name: "v", Key: []string{"nope"}, SQL: "SELECT id FROM orders"},
			"view v: declared key column \"nope\" is not an output column (output columns: id)"},
		{"unknown function", Spec{Name: "v", SQL: "SELECT id, nosuch(amount) AS y FROM orders"},
			"view v: line 1, column 12: Scalar Function with name nosuch does not exist! Did you mean \"cosh\"?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := openErr(t, []Spec{c.spec}, orders, customers, keyless)
			if err.Error() != c.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, c.want)
			}
		})
	}
}

// All views' errors come at once.
func TestStartupErrorsJoined(t *testing.T) {
	err := openErr(t, []Spec{
		{Name: "a", SQL: "SELECT id FROM nope"},
		{Name: "b", SQL: "SELECT id FROM orders"},
		{Name: "c", SQL: "SELECT id, random() AS r FROM orders"},
	}, orders)
	want := "view a: line 1, column 16: unknown table nope (tables views may read: public.orders)\n" +
		"view c: line 1, column 12: volatile function random() is not allowed: a view's output must depend on its input rows only"
	if err.Error() != want {
		t.Fatalf("error\n got: %s\nwant: %s", err, want)
	}
}
