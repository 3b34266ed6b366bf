package duckdb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestHoldLockHelper is not a test: TestIsLocked runs it in a child
// process, which opens the file named in its environment and holds it
// until its stdin closes (DuckDB's lock is per process).
func TestHoldLockHelper(t *testing.T) {
	path := os.Getenv("SLUICE_DUCKDB_HOLD")
	if path == "" {
		t.Skip("helper process only")
	}
	tgt, err := Open(context.Background(), path, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	defer tgt.Close()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func TestIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.duckdb")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldLockHelper$")
	cmd.Env = append(os.Environ(), "SLUICE_DUCKDB_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	_, err = Open(context.Background(), path, Options{})
	if err == nil {
		t.Fatal("opened a file another process holds")
	}
	if !IsLocked(err) {
		t.Errorf("IsLocked(%v) = false", err)
	}
	if IsLocked(errors.New("IO Error: No space left on device")) || IsLocked(nil) {
		t.Error("IsLocked is true for an error that is not a lock")
	}
}
