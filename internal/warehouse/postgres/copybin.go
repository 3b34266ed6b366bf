package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
	"github.com/sluice-dev/sluice/internal/warehouse"
)

// Binary COPY. The rows are written in COPY's binary format, each value
// converted once from its change.Value text straight into the bytes the
// column type's receive function reads: no boxing into pgx's values, no
// text for the server to parse (numeric, timestamptz and integers are
// cheaper to receive than to parse). The encoder is chosen by the type the
// target column really has (pg_attribute), never by what sluice would have
// created, so a hand-made table with other types cannot be fed the wrong
// bytes. A table with a column of another type goes through text COPY.
//
// A value the encoder does not understand (a timestamp before year 1, a
// numeric Infinity, a number in exponent form) fails the COPY with a
// *binaryError; the target then runs the transaction again with text COPY
// for that table (see Target.tx).

// Type OIDs with a binary encoder.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestampTZ = 1184
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

// binaryError is a value the binary encoder could not convert.
type binaryError struct {
	table change.TableID
	col   string
	err   error
}

func (e *binaryError) Error() string {
	return fmt.Sprintf("table %s: column %q: binary COPY: %v", e.table, e.col, e.err)
}

func (e *binaryError) Unwrap() error { return e.err }

// encodeFn appends one non-NULL value's binary form, without its length.
type encodeFn func(b []byte, v change.Value) ([]byte, error)

// binaryEncoder returns the encoder of a column of type oid holding values
// of kind k, or nil when there is none.
func binaryEncoder(oid uint32, k change.Kind) encodeFn {
	switch {
	case oid == oidInt2 && k == change.KindInt:
		return encInt2
	case oid == oidInt4 && k == change.KindInt:
		return encInt4
	case oid == oidInt8 && k == change.KindInt:
		return encInt8
	case oid == oidBool && k == change.KindBool:
		return encBool
	case oid == oidFloat4 && k == change.KindFloat:
		return encFloat4
	case oid == oidFloat8 && k == change.KindFloat:
		return encFloat8
	case oid == oidNumeric && k == change.KindNumeric:
		return encNumeric
	case (oid == oidText || oid == oidVarchar) && k == change.KindText, oid == oidJSON && k == change.KindJSON:
		return encText
	case oid == oidBytea && k == change.KindBytes:
		return encText // KindBytes holds the raw bytes
	case oid == oidJSONB && k == change.KindJSON:
		return encJSONB
	case oid == oidUUID && k == change.KindText:
		return encUUID
	case oid == oidDate && k == change.KindDate:
		return encDate
	case oid == oidTimestamp && k == change.KindTimestamp:
		return encTimestamp
	case oid == oidTimestampTZ && k == change.KindTimestampTZ:
		return encTimestampTZ
	}
	return nil
}

var errSyntax = errors.New("value not in a form the binary encoder reads")

func encInt2(b []byte, v change.Value) ([]byte, error) {
	n, err := strconv.ParseInt(v.Text, 10, 16)
	return binary.BigEndian.AppendUint16(b, uint16(n)), err
}

func encInt4(b []byte, v change.Value) ([]byte, error) {
	n, err := strconv.ParseInt(v.Text, 10, 32)
	return binary.BigEndian.AppendUint32(b, uint32(n)), err
}

func encInt8(b []byte, v change.Value) ([]byte, error) {
	n, err := strconv.ParseInt(v.Text, 10, 64)
	return binary.BigEndian.AppendUint64(b, uint64(n)), err
}

func encBool(b []byte, v change.Value) ([]byte, error) {
	switch v.Text {
	case "true":
		return append(b, 1), nil
	case "false":
		return append(b, 0), nil
	}
	return b, errSyntax
}

func encFloat4(b []byte, v change.Value) ([]byte, error) {
	f, err := strconv.ParseFloat(v.Text, 32)
	return binary.BigEndian.AppendUint32(b, math.Float32bits(float32(f))), err
}

func encFloat8(b []byte, v change.Value) ([]byte, error) {
	f, err := strconv.ParseFloat(v.Text, 64)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(f)), err
}

func encText(b []byte, v change.Value) ([]byte, error) { return append(b, v.Text...), nil }

func encJSONB(b []byte, v change.Value) ([]byte, error) { return append(append(b, 1), v.Text...), nil }

func encUUID(b []byte, v change.Value) ([]byte, error) {
	s := v.Text
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, errSyntax
	}
	for i := 0; i < 36; {
		if s[i] == '-' {
			i++
			continue
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return b, errSyntax
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return b, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// numeric's binary form: ndigits, weight (of the first base-10000 digit),
// sign, dscale (digits after the point), then the base-10000 digits.
const (
	numericPos = 0x0000
	numericNeg = 0x4000
	numericNaN = 0xC000
)

// encNumeric converts "[-]ddd[.ddd]" or NaN (the only forms Postgres
// prints; Infinity is left to text COPY, which every server version reads).
func encNumeric(b []byte, v change.Value) ([]byte, error) {
	s := v.Text
	if s == "NaN" {
		return binary.BigEndian.AppendUint64(b, uint64(numericNaN)<<16), nil // 0 digits, weight 0, NaN, dscale 0
	}
	sign := uint16(numericPos)
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		if s[0] == '-' {
			sign = numericNeg
		}
		s = s[1:]
	}
	intPart, frac := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i+1:]
			break
		}
	}
	if len(intPart)+len(frac) == 0 || len(frac) > math.MaxInt16 {
		return b, errSyntax
	}
	for i := 0; i < len(intPart); i++ {
		if intPart[i] < '0' || intPart[i] > '9' {
			return b, errSyntax
		}
	}
	for i := 0; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return b, errSyntax
		}
	}
	// Base-10000 digits: the integer part grouped from the point leftwards,
	// the fraction rightwards (padded with zeros); leading and trailing zero
	// groups dropped. At most 16 digits on the stack for the usual sizes.
	var stack [16]uint16
	digits := stack[:0]
	intGroups := (len(intPart) + 3) / 4
	first := len(intPart) - 4*(intGroups-1) // digits in the first group
	for g := range intGroups {
		lo := 0
		if g > 0 {
			lo = first + 4*(g-1)
		}
		hi := first + 4*g
		if g == 0 {
			hi = first
		}
		digits = append(digits, group(intPart[lo:hi], false))
	}
	for i := 0; i < len(frac); i += 4 {
		digits = append(digits, group(frac[i:min(i+4, len(frac))], true))
	}
	weight := intGroups - 1
	for len(digits) > 0 && digits[0] == 0 {
		digits = digits[1:]
		weight--
	}
	for len(digits) > 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 {
		weight, sign = 0, numericPos
	}
	if len(digits) > math.MaxInt16 || weight > math.MaxInt16 || weight < math.MinInt16 {
		return b, errSyntax
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(digits)))
	b = binary.BigEndian.AppendUint16(b, uint16(int16(weight)))
	b = binary.BigEndian.AppendUint16(b, sign)
	b = binary.BigEndian.AppendUint16(b, uint16(len(frac)))
	for _, d := range digits {
		b = binary.BigEndian.AppendUint16(b, d)
	}
	return b, nil
}

// group is the value of up to 4 decimal digits; a fraction's last group is
// padded on the right.
func group(s string, padRight bool) uint16 {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	if padRight {
		for i := len(s); i < 4; i++ {
			n *= 10
		}
	}
	return uint16(n)
}

// Dates and timestamps count from 2000-01-01 in the binary form.
const (
	pgEpochDays = 10957 // days from 1970-01-01 to 2000-01-01
	usPerDay    = 86_400_000_000
)

func encDate(b []byte, v change.Value) ([]byte, error) {
	switch v.Text {
	case "infinity":
		return binary.BigEndian.AppendUint32(b, math.MaxInt32), nil
	case "-infinity":
		return binary.BigEndian.AppendUint32(b, 1<<31), nil // math.MinInt32
	}
	days, rest, ok := parseDate(v.Text)
	if !ok || rest != "" {
		return b, errSyntax
	}
	return binary.BigEndian.AppendUint32(b, uint32(int32(days-pgEpochDays))), nil
}

func encTimestamp(b []byte, v change.Value) ([]byte, error) { return appendTimestamp(b, v.Text, false) }

func encTimestampTZ(b []byte, v change.Value) ([]byte, error) {
	return appendTimestamp(b, v.Text, true)
}

// appendTimestamp reads "YYYY-MM-DD[T ]HH:MM:SS[.ffffff]" followed, with
// tz, by "Z" or an offset ±HH[:MM[:SS]]: the ISO form the source writes.
func appendTimestamp(b []byte, s string, tz bool) ([]byte, error) {
	switch s {
	case "infinity":
		return binary.BigEndian.AppendUint64(b, math.MaxInt64), nil
	case "-infinity":
		return binary.BigEndian.AppendUint64(b, 1<<63), nil // math.MinInt64
	}
	days, rest, ok := parseDate(s)
	if !ok || len(rest) < 9 || (rest[0] != 'T' && rest[0] != ' ') || rest[3] != ':' || rest[6] != ':' {
		return b, errSyntax
	}
	h, ok1 := num2(rest[1:3])
	m, ok2 := num2(rest[4:6])
	sec, ok3 := num2(rest[7:9])
	if !ok1 || !ok2 || !ok3 || h > 24 || m > 59 || sec > 60 {
		return b, errSyntax
	}
	rest = rest[9:]
	us := 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 7 {
			return b, errSyntax // more than microseconds: leave the rounding to the server
		}
		for i := 1; i < 7; i++ {
			us *= 10
			if i < n {
				us += int(rest[i] - '0')
			}
		}
		rest = rest[n:]
	}
	off := 0 // seconds east of UTC
	switch {
	case !tz:
		if rest != "" {
			return b, errSyntax
		}
	case rest == "Z":
	case len(rest) >= 3 && (rest[0] == '+' || rest[0] == '-'):
		neg := rest[0] == '-'
		oh, ok := num2(rest[1:3])
		if !ok {
			return b, errSyntax
		}
		off = oh * 3600
		rest = rest[3:]
		for _, unit := range []int{60, 1} {
			if rest == "" {
				break
			}
			if len(rest) < 3 || rest[0] != ':' {
				return b, errSyntax
			}
			n, ok := num2(rest[1:3])
			if !ok {
				return b, errSyntax
			}
			off += n * unit
			rest = rest[3:]
		}
		if rest != "" {
			return b, errSyntax
		}
		if neg {
			off = -off
		}
	default:
		return b, errSyntax
	}
	t := int64(days-pgEpochDays)*usPerDay + int64(h*3600+m*60+sec-off)*1_000_000 + int64(us)
	return binary.BigEndian.AppendUint64(b, uint64(t)), nil
}

// parseDate reads "YYYY-MM-DD" (years 1 to 9999, as Postgres prints them
// with no era) and returns the days since 1970-01-01 and what follows.
func parseDate(s string) (days int, rest string, ok bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, "", false
	}
	y1, ok1 := num2(s[0:2])
	y2, ok2 := num2(s[2:4])
	mo, ok3 := num2(s[5:7])
	d, ok4 := num2(s[8:10])
	y := y1*100 + y2
	if !ok1 || !ok2 || !ok3 || !ok4 || y < 1 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) {
		return 0, "", false
	}
	if strings.HasSuffix(s, " BC") {
		return 0, "", false
	}
	return daysFromCivil(y, mo, d), s[10:], true
}

func num2(s string) (int, bool) {
	if s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the days since 1970-01-01 of a proleptic Gregorian date
// (H. Hinnant's algorithm).
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// copyHeader starts a binary COPY stream: signature, flags, no extension.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// binaryRows is an io.Reader of rows in binary COPY format, encoded as the
// connection asks for them: pgconn's CopyFrom reads 64 KiB at a time from a
// goroutine of its own, so the encoding overlaps the server's work on what
// was sent. The first failure to encode is kept in err (pgconn reports the
// server's refusal of the aborted COPY instead).
type binaryRows struct {
	table change.TableID
	cols  []binaryCol // the columns written, in COPY's column order
	rows  []warehouse.Row
	next  int
	buf   []byte
	off   int
	done  bool
	err   error
}

// binaryCol is one column written: a staging column (op, unchanged mask)
// or a table column's value.
type binaryCol struct {
	name  string
	value int // index into the row's values; -1 op, -2 unchanged mask
	enc   encodeFn
	key   bool // kept in a delete's staged row
}

func (r *binaryRows) reset(table change.TableID, cols []binaryCol, rows []warehouse.Row, buf []byte) {
	*r = binaryRows{table: table, cols: cols, rows: rows, buf: append(buf[:0], copyHeader...)}
}

func (r *binaryRows) Read(p []byte) (int, error) {
	for len(r.buf)-r.off < len(p) && !r.done {
		if r.next == len(r.rows) {
			r.buf = binary.BigEndian.AppendUint16(r.buf, 0xffff) // trailer
			r.done = true
			break
		}
		var err error
		if r.buf, err = r.appendRow(r.buf, &r.rows[r.next]); err != nil {
			r.err = err
			return 0, err
		}
		r.next++
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	if r.off == len(r.buf) {
		r.buf, r.off = r.buf[:0], 0
		if r.done {
			return n, io.EOF
		}
	}
	return n, nil
}

func (r *binaryRows) appendRow(b []byte, row *warehouse.Row) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.cols)))
	for i := range r.cols {
		c := &r.cols[i]
		switch c.value {
		case -1:
			b = append(b, 0, 0, 0, 1, stagedOp(row))
			continue
		case -2:
			if m, ok := warehouse.UnchangedMask(row.Values); ok && !row.Delete {
				b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
				b = append(b, m...)
			} else {
				b = append(b, 0xff, 0xff, 0xff, 0xff)
			}
			continue
		}
		if c.value >= len(row.Values) || (row.Delete && !c.key) {
			b = append(b, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		v := row.Values[c.value]
		if v.Kind == change.KindNull || v.Kind == change.KindUnchanged {
			b = append(b, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		at := len(b)
		b = append(b, 0, 0, 0, 0)
		var err error
		if b, err = c.enc(b, v); err != nil {
			return b[:at], &binaryError{table: r.table, col: c.name, err: err}
		}
		binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	}
	return b, nil
}

// stagedOp is the op a row is staged with (as appendCopyRow writes it).
func stagedOp(r *warehouse.Row) byte {
	if r.Op != 0 {
		return r.Op
	}
	if r.Delete {
		return 'd'
	}
	return 'u'
}
