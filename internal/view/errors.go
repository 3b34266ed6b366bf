package view

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// SQLError is a view whose SQL is refused at start-up: a parse or bind
// error, an unknown table or column, an unsupported construct, a volatile
// function, a key that cannot be derived. Line and Column are 1-based and 0
// when the error has no single place in the text.
type SQLError struct {
	View   string
	Line   int
	Column int
	Msg    string
}

func (e *SQLError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("view %s: line %d, column %d: %s", e.View, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("view %s: %s", e.View, e.Msg)
}

// RuntimeError is a view that failed while evaluating a transaction (a cast
// failing on one row, a declared key found not unique, an input column it
// uses dropped or retyped). The view stops: Apply returns the error and
// commits nothing of the transaction, so a restart meets the same error
// until the view is fixed. Evaluation failures are also recorded in the
// dead-letter table of the state file.
type RuntimeError struct {
	View string
	// Pos is the causing transaction's position (commit LSN, 0): the last
	// of the transactions evaluated together with it.
	Pos change.Position
	// From is the commit LSN of the first of those transactions, when
	// there were several.
	From change.LSN
	// Key is the input or output key involved, as text, when one is known.
	Key string
	Msg string
}

func (e *RuntimeError) Error() string {
	s := fmt.Sprintf("view %s: at %s", e.View, e.Pos)
	if e.From != 0 && e.From != e.Pos.CommitLSN {
		s += fmt.Sprintf(" (the transactions committed from %s on, evaluated together)", e.From)
	}
	if e.Key != "" {
		s += " key " + e.Key
	}
	return s + ": " + e.Msg
}

// RestartError is a view that stopped (see Engine.Stopped) while the
// engine held part of a source transaction from an earlier batch, which
// the failure lost: the run must start again from the source's confirmed
// position. The view stays stopped; the mirror and the other views go on
// after the restart.
type RestartError struct {
	View string
	Err  error
}

func (e *RestartError) Error() string {
	return fmt.Sprintf("view %s stopped (%v); the source must send again the transaction it was in: start sluice again, the mirror and the other views go on", e.View, e.Err)
}
func (e *RestartError) Unwrap() error { return e.Err }

// ErrClosed is returned by an engine after Close.
var ErrClosed = errors.New("view engine is closed")

var lineRE = regexp.MustCompile(`(?m)^LINE (\d+): (.*)\n( *)\^`)

// duckPlace splits DuckDB's error text into its message and the line and
// column its caret points at (0, 0 when it shows none).
func duckPlace(err error) (string, int, int) {
	msg := err.Error()
	line, col := 0, 0
	if m := lineRE.FindStringSubmatchIndex(msg); m != nil {
		line, _ = strconv.Atoi(msg[m[2]:m[3]])
		text := msg[m[4]:m[5]]
		prefix := len("LINE : ") + (m[3] - m[2])
		caret := m[7] - m[6] - prefix
		if !strings.HasPrefix(text, "...") && caret >= 0 {
			col = caret + 1
		}
		msg = msg[:m[0]]
	}
	for _, p := range []string{"Binder Error: ", "Catalog Error: ", "Parser Error: ", "Conversion Error: ", "Invalid Input Error: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	msg = strings.Join(strings.Fields(msg), " ")
	return msg, line, col
}
