package change

import "testing"

func TestLSN(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		l, err := ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		if l.String() != s {
			t.Errorf("%s -> %v", s, l)
		}
	}
	for _, bad := range []string{"", "16", "x/1", "1/100000000"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
}

func TestPositionOrder(t *testing.T) {
	snap := Position{CommitLSN: 100}
	cases := []struct {
		a, b Position
		want int
	}{
		{Position{100, 0}, Position{100, 5}, -1},
		{Position{100, 500}, Position{101, 5}, -1}, // commit order first, whatever the change LSN
		{Position{200, 5}, Position{200, 5}, 0},
		{snap, Position{99, 98}, 1},
	}
	for _, c := range cases {
		if got := c.a.Compare(c.b); got != c.want {
			t.Errorf("%v vs %v = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := c.b.Compare(c.a); got != -c.want {
			t.Errorf("%v vs %v = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

func TestKeys(t *testing.T) {
	tb := customers()
	up := Change{Op: OpUpdate, Table: tb,
		Before: []Value{V(KindInt, "1"), Null, Null, Null},
		After:  []Value{V(KindInt, "2"), V(KindText, "a"), V(KindText, "b"), Null}}
	if k := up.Key(); len(k) != 1 || k[0].Text != "2" {
		t.Errorf("Key = %v", k)
	}
	if k := up.OldKey(); len(k) != 1 || k[0].Text != "1" {
		t.Errorf("OldKey = %v", k)
	}
	up.Before[0] = V(KindInt, "2")
	if k := up.OldKey(); k != nil {
		t.Errorf("OldKey of same-key update = %v, want nil", k)
	}
	del := Change{Op: OpDelete, Table: tb, Before: []Value{V(KindInt, "7"), Null, Null, Null}}
	if k := del.Key(); k[0].Text != "7" {
		t.Errorf("delete Key = %v", k)
	}
}

func TestParseTableID(t *testing.T) {
	cases := map[string]TableID{
		"customers":             {"public", "customers"},
		"Sales.Orders":          {"sales", "orders"},
		`"Sales"."Order.Items"`: {"Sales", "Order.Items"},
		`s."a""b"`:              {"s", `a"b`},
	}
	for in, want := range cases {
		got, err := ParseTableID(in)
		if err != nil || got != want {
			t.Errorf("ParseTableID(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a.b.c", `"open`, "a.", ".b"} {
		if _, err := ParseTableID(bad); err == nil {
			t.Errorf("ParseTableID(%q) accepted", bad)
		}
	}
	if q := (TableID{"s", `we"ird`}).Quoted(); q != `"s"."we""ird"` {
		t.Errorf("Quoted = %s", q)
	}
}
