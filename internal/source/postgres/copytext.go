package postgres

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// splitCopyLine splits one row of COPY's text format into its fields,
// undoing COPY's backslash escapes. A nil entry in nulls marks \N. The
// fields point into line where no escape occurs, so a row costs one string.
func splitCopyLine(line string, fields []string, nulls []bool) ([]string, []bool, error) {
	fields, nulls = fields[:0], nulls[:0]
	for {
		end := strings.IndexByte(line, '\t')
		f := line
		if end >= 0 {
			f = line[:end]
		}
		if f == `\N` {
			fields, nulls = append(fields, ""), append(nulls, true)
		} else if strings.IndexByte(f, '\\') >= 0 {
			u, err := unescapeCopy(f)
			if err != nil {
				return nil, nil, err
			}
			fields, nulls = append(fields, u), append(nulls, false)
		} else {
			fields, nulls = append(fields, f), append(nulls, false)
		}
		if end < 0 {
			return fields, nulls, nil
		}
		line = line[end+1:]
	}
}

func unescapeCopy(f string) (string, error) {
	var b strings.Builder
	b.Grow(len(f))
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(f) {
			return "", errors.New("copy row: dangling backslash")
		}
		switch c = f[i]; c {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'x':
			n, v := 0, byte(0)
			for n < 2 && i+1 < len(f) && isHex(f[i+1]) {
				i++
				v = v<<4 | unhex(f[i])
				n++
			}
			if n == 0 {
				b.WriteByte('x')
			} else {
				b.WriteByte(v)
			}
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := c - '0'
			for n := 1; n < 3 && i+1 < len(f) && f[i+1] >= '0' && f[i+1] <= '7'; n++ {
				i++
				v = v<<3 | (f[i] - '0')
			}
			b.WriteByte(v)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// lineWriter receives COPY TO's data messages and hands on whole lines. The
// server sends one row per message; a row split across messages is joined.
type lineWriter struct {
	partial []byte
	// arena holds the lines handed on: each is copied to its end and given
	// out as a string pointing there, which costs one allocation per 64 KiB
	// instead of one per row. Bytes once given out are never written again
	// (a full arena is replaced, not reused), so the strings stay immutable;
	// a batch's values keep only their own arenas alive.
	arena []byte
	line  func(string) error
}

const arenaSize = 64 << 10

// keep copies b into the arena and returns it as a string.
func (w *lineWriter) keep(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > cap(w.arena)-len(w.arena) {
		w.arena = make([]byte, 0, max(arenaSize, len(b)))
	}
	start := len(w.arena)
	w.arena = append(w.arena, b...)
	return unsafe.String(&w.arena[start], len(b))
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := indexNL(p)
		if i < 0 {
			w.partial = append(w.partial, p...)
			return n, nil
		}
		var s string
		if len(w.partial) > 0 {
			w.partial = append(w.partial, p[:i]...)
			s = w.keep(w.partial)
			w.partial = w.partial[:0]
		} else {
			s = w.keep(p[:i])
		}
		if err := w.line(s); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) finish() error {
	if len(w.partial) > 0 {
		return fmt.Errorf("copy: %d bytes after the last row", len(w.partial))
	}
	return nil
}

func indexNL(p []byte) int {
	for i, c := range p {
		if c == '\n' {
			return i
		}
	}
	return -1
}
