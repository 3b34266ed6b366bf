package pipeline

import (
	"errors"
	"fmt"
)

// Class says what it takes for a batch the target refused to apply.
type Class string

const (
	// Transient failures cure themselves or with a change of the
	// environment that leaves the data as it is: a lost connection, a lock
	// timeout, a conflict, a full disk someone frees.
	Transient Class = "transient"
	// Permanent failures repeat until a person changes the target: it holds
	// a constraint the source does not (NOT NULL, CHECK, UNIQUE, a foreign
	// key), a column that cannot hold the value, a missing privilege.
	Permanent Class = "permanent"
	// Fatal failures leave the target unusable by this process (a DuckDB
	// database invalidated by a failed write): retrying in it cannot help,
	// so the pipeline stops and the target is opened again on the next run.
	Fatal Class = "fatal"
)

// TargetError is how a target describes a batch it refused, beyond its
// message: the pipeline finds it with errors.As, reports the table, column
// and fix in its status, and retries or stops by the class. Errors without
// one are taken as transient.
type TargetError struct {
	Class Class
	// Table is the target table as the warehouse names it, when known.
	Table string
	// Column and Constraint, when the warehouse names them.
	Column     string
	Constraint string
	// Fix is what to do about it, in a sentence. The wrapped error's
	// message already carries it; it is here for status.
	Fix string
	Err error
}

func (e *TargetError) Error() string { return e.Err.Error() }
func (e *TargetError) Unwrap() error { return e.Err }

// describe returns what err says about itself.
func describe(err error) TargetError {
	var te *TargetError
	if errors.As(err, &te) {
		d := *te
		if d.Class == "" {
			d.Class = Transient
		}
		return d
	}
	return TargetError{Class: Transient, Err: err}
}

// ErrFenced is what a target's refusal of a fenced batch is (errors.Is):
// another reader applied some of its records; see Fencer.
var ErrFenced = errors.New("another reader applied records of the batch")

// ErrNoPositions is returned by Pause for a BatchAcker source: its batches
// are not in commit order, so the target cannot be held at a source
// position.
var ErrNoPositions = errors.New("the pipeline's source is a stream of several shards, in no one commit order: its target cannot be held at a source position")

// ErrStalled is returned by Pause and Move while the target refuses the
// batch it must apply first: no consistent point can be reached until it
// takes it. `sluice status` shows why.
var ErrStalled = errors.New("the pipeline is stalled: the target refuses the next batch")

func stalledError(s *Stall) error {
	if s == nil {
		return ErrStalled
	}
	return fmt.Errorf("%w (%s)", ErrStalled, s.Error)
}
