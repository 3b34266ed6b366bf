package change

import (
	"slices"
	"testing"
)

// A keyless table's identity is every column, without an allocation per
// call (it is asked once or twice per change).
func TestIdentityOfKeylessTable(t *testing.T) {
	tb := &Table{Columns: make([]Column, 5)}
	if got := tb.Identity(); !slices.Equal(got, []int{0, 1, 2, 3, 4}) || cap(got) != 5 {
		t.Fatalf("Identity() = %v (cap %d), want 0..4 with no room to append into", got, cap(got))
	}
	if n := testing.AllocsPerRun(100, func() { _ = tb.Identity() }); n != 0 {
		t.Errorf("Identity() allocates %v times per call", n)
	}
	keyed := &Table{Columns: make([]Column, 3), Key: []int{2}}
	if got := keyed.Identity(); !slices.Equal(got, []int{2}) {
		t.Errorf("keyed Identity() = %v, want the key", got)
	}
}
