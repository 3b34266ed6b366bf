package main

import "testing"

// TestPlainJSON: a JSON value DuckDB hands over decoded prints as JSON.
func TestPlainJSON(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want any
	}{
		{map[string]any{"a": 1.0}, `{"a":1}`},
		{[]any{1.0, "x", nil}, `[1,"x",null]`},
		{"text", "text"},
		{nil, nil},
	} {
		if got := plain(tc.in); got != tc.want {
			t.Errorf("plain(%#v) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}
