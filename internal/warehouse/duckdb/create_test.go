package duckdb

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestCreateIsWholeOrAbsent: a new file is made under a temporary name and
// renamed into place, so what a killed creation leaves behind (here a
// half-written temporary file) never stands at the target's path and does
// not stop the next start.
func TestCreateIsWholeOrAbsent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mirror.duckdb")
	if err := os.WriteFile(path+".creating", []byte("DUCK half a header"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("open over a killed creation's leftovers: %v", err)
	}
	if _, err := tg.State(ctx); err != nil {
		t.Fatal(err)
	}
	tg.Close()
	if _, err := os.Stat(path + ".creating"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	// An existing file is opened in place, its state kept.
	tg, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tg.Close()
}
