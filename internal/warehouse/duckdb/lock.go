package duckdb

import (
	"errors"
	"strings"

	"github.com/duckdb/duckdb-go/v2"
)

// IsLocked reports whether err is DuckDB refusing to open a file because
// another process holds its lock (DuckDB allows one writing process, or
// any number of readers).
//
// The driver has no type for this: it reports DuckDB's error as a
// *duckdb.Error whose Type is only ErrorTypeIO, the same as a full disk or
// a missing directory, so the message is the one thing that tells a lock
// apart. This is the one place that reads it.
func IsLocked(err error) bool {
	var de *duckdb.Error
	if errors.As(err, &de) {
		return de.Type == duckdb.ErrorTypeIO && strings.Contains(de.Msg, "Could not set lock")
	}
	// An error that lost its type on the way still says so.
	return err != nil && strings.Contains(err.Error(), "Could not set lock")
}
