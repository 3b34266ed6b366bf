package view

import (
	"slices"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

func TestOrderFacts(t *testing.T) {
	e := open(t, "", []Spec{{Name: "order_facts", SQL: `SELECT o.id AS order_id, o.amount, c.name AS customer_name, c.tier
		FROM public.orders o LEFT JOIN public.customers c ON c.id = o.customer_id WHERE o.status <> 'cancelled'`}}, orders, customers)
	out := e.Outputs()[0]
	if got := out.KeyNames(); !slices.Equal(got, []string{"order_id"}) {
		t.Fatalf("key = %v", got)
	}
	b := apply(t, e, snapshot(1000, map[*change.Table][][]change.Value{
		customers: {{I(1), S("ann"), S("gold")}},
		orders:    {{I(10), I(1), N("5.00"), S("new"), S("x")}, {I(11), I(2), N("7.50"), S("new"), S("y")}},
	}))
	t.Log(describe(b), b.Snapshotted)
	b = apply(t, e, (&tx{lsn: 2000}).ins(customers, I(2), S("bob"), S("silver")).batch())
	t.Log(describe(b))
	b = apply(t, e, (&tx{lsn: 3000}).upd(orders, I(10), I(1), N("5.00"), S("cancelled"), change.Unchanged).batch())
	t.Log(describe(b))
}
