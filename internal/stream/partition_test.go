package stream

import (
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/change"
)

func pkOf(schema, table string, key ...change.Value) string {
	t := &change.Table{Schema: schema, Name: table}
	for i := range key {
		t.Columns = append(t.Columns, change.Column{Name: "k" + string(rune('a'+i)), Key: true})
		t.Key = append(t.Key, i)
	}
	return string(AppendPartitionKey(nil, &change.Change{Op: change.OpInsert, Table: t, After: key}))
}

func TestPartitionKeyIsStableAndUnambiguous(t *testing.T) {
	txt := func(s string) change.Value { return change.V(change.KindText, s) }
	num := func(s string) change.Value { return change.V(change.KindInt, s) }
	cases := map[string]string{
		pkOf("public", "users", num("42")):                          `public.users:42`,
		pkOf("public", "users", txt("42")):                          `public.users:"42"`,
		pkOf("public", "users", txt("a,b")):                         `public.users:"a,b"`,
		pkOf("public", "users", txt("a"), txt("b")):                 `public.users:"a","b"`,
		pkOf("public", "users", txt(`a","b`)):                       `public.users:"a\",\"b"`,
		pkOf("a.b", "c", num("1")):                                  `"a.b".c:1`,
		pkOf("a", "b.c", num("1")):                                  `a."b.c":1`,
		pkOf("public", "users", change.Null):                        `public.users:null`,
		pkOf("public", "users", change.V(change.KindBytes, "\x00")): `public.users:"AA=="`,
	}
	seen := map[string]bool{}
	for got, want := range cases {
		if got != want {
			t.Errorf("partition key %q, want %q", got, want)
		}
		if seen[got] {
			t.Errorf("two keys share the partition key %q", got)
		}
		seen[got] = true
	}
}

func TestPartitionKeyOverTheLimitIsHashed(t *testing.T) {
	long := change.V(change.KindText, strings.Repeat("é", 200)) // 400 bytes
	a := pkOf("public", "t", long)
	b := pkOf("public", "t", change.V(change.KindText, strings.Repeat("é", 199)+"e"))
	if len(a) > MaxPartitionKey || !strings.HasPrefix(a, "sha256:") || a == b {
		t.Fatalf("long keys gave %q and %q: want distinct hashes within 256 bytes", a, b)
	}
	if a != pkOf("public", "t", long) {
		t.Fatal("a hashed key is not stable")
	}
	exact := pkOf("public", "t", change.V(change.KindText, strings.Repeat("x", MaxPartitionKey-len(`public.t:""`))))
	if len(exact) != MaxPartitionKey || strings.HasPrefix(exact, "sha256:") {
		t.Fatalf("a key of exactly 256 bytes was changed: %q", exact)
	}
}
