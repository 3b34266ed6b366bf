package change

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a Postgres write-ahead log position.
type LSN uint64

// String formats the LSN the way Postgres prints it, e.g. "16/B374D848".
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// ParseLSN parses the "XXX/XXX" form Postgres prints.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: want the form XXX/XXX", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// Position orders changes: first by the commit LSN of their transaction, then
// by the change's own LSN. Within one replication slot positions only grow, and
// a later position always wins over an earlier one for the same key.
//
// Snapshot rows carry the snapshot's consistent point as CommitLSN and 0 as LSN,
// so they sort before every streamed change committed at or after that point.
type Position struct {
	CommitLSN LSN
	LSN       LSN
}

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.CommitLSN < q.CommitLSN:
		return -1
	case p.CommitLSN > q.CommitLSN:
		return 1
	case p.LSN < q.LSN:
		return -1
	case p.LSN > q.LSN:
		return 1
	}
	return 0
}

// Less reports whether p is before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is the zero position (before everything).
func (p Position) IsZero() bool { return p == Position{} }

func (p Position) String() string { return p.CommitLSN.String() + ":" + p.LSN.String() }
