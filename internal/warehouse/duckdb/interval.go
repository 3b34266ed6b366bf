package duckdb

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// interval is a Postgres interval's three fields.
type interval struct{ months, days, micros int64 }

// duck is a form DuckDB's interval cast reads exactly.
func (iv interval) duck() string {
	return fmt.Sprintf("%d months %d days %d microseconds", iv.months, iv.days, iv.micros)
}

// iso prints the interval in ISO 8601 form (for tests: a second spelling).
func (iv interval) iso() string {
	return fmt.Sprintf("P%dM%dDT%sS", iv.months, iv.days, new(big.Rat).SetFrac64(iv.micros, 1e6).FloatString(6))
}

// parseInterval reads an interval as Postgres prints it in any IntervalStyle
// but sql_standard: postgres ("1 year 2 mons -3 days +04:05:06.5"),
// postgres_verbose ("@ 1 year 2 mons 4 hours 5.5 secs ago") and iso_8601
// ("P1Y2M3DT4H5M6.5S"). DuckDB reads none of these exactly, so the staged
// value is rewritten into months, days and microseconds.
func parseInterval(s string) (interval, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "P") {
		return parseISOInterval(s)
	}
	var iv interval
	ago := false
	if strings.HasPrefix(s, "@") {
		s = strings.TrimSpace(s[1:])
		if strings.HasSuffix(s, " ago") {
			ago = true
			s = strings.TrimSuffix(s, " ago")
		}
	}
	f := strings.Fields(s)
	for i := 0; i < len(f); i++ {
		tok := f[i]
		if strings.Contains(tok, ":") {
			us, err := parseClock(tok)
			if err != nil {
				return iv, err
			}
			iv.micros += us
			continue
		}
		if i+1 >= len(f) {
			return iv, fmt.Errorf("interval %q: number %q without a unit", s, tok)
		}
		unit := strings.TrimSuffix(strings.ToLower(f[i+1]), "s")
		i++
		mult, ok := map[string]int64{"hour": 3600e6, "min": 60e6, "minute": 60e6, "sec": 1e6, "second": 1e6,
			"millisecond": 1e3, "msec": 1e3, "microsecond": 1, "usec": 1}[unit]
		if ok {
			us, err := scaled(tok, mult)
			if err != nil {
				return iv, fmt.Errorf("interval %q: %w", s, err)
			}
			iv.micros += us
			continue
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(tok, "+"), 10, 64)
		if err != nil {
			return iv, fmt.Errorf("interval %q: %q is not a whole number of %ss", s, tok, unit)
		}
		switch unit {
		case "year":
			iv.months += 12 * n
		case "mon", "month":
			iv.months += n
		case "day":
			iv.days += n
		case "week":
			iv.days += 7 * n
		case "decade":
			iv.months += 120 * n
		case "century":
			iv.months += 1200 * n
		case "millennium", "millennia":
			iv.months += 12000 * n
		default:
			return iv, fmt.Errorf("interval %q: unknown unit %q", s, f[i])
		}
	}
	if ago {
		iv = interval{-iv.months, -iv.days, -iv.micros}
	}
	return iv, nil
}

// parseClock reads [+-]H:MM[:SS[.ffffff]] into microseconds.
func parseClock(tok string) (int64, error) {
	neg := strings.HasPrefix(tok, "-")
	tok = strings.TrimLeft(tok, "+-")
	parts := strings.Split(tok, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("interval time %q: want HH:MM:SS", tok)
	}
	h, err1 := strconv.ParseInt(parts[0], 10, 64)
	m, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("interval time %q: want HH:MM:SS", tok)
	}
	us := h*3600e6 + m*60e6
	if len(parts) == 3 {
		s, err := scaled(parts[2], 1e6)
		if err != nil {
			return 0, fmt.Errorf("interval time %q: %w", tok, err)
		}
		us += s
	}
	if neg {
		us = -us
	}
	return us, nil
}

// scaled returns the decimal number s times mult, exactly, as an integer.
// Only plain decimals of bounded length are taken (no exponents: a huge
// one would make the exact arithmetic arbitrarily slow).
func scaled(s string, mult int64) (int64, error) {
	if !plainDecimal(s) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	r, ok := new(big.Rat).SetString(strings.TrimPrefix(s, "+"))
	if !ok {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("%q has more than microsecond precision", s)
	}
	return r.Num().Int64(), nil
}

func parseISOInterval(s string) (interval, error) {
	var iv interval
	rest := s[1:]
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			inTime = true
			rest = rest[1:]
			continue
		}
		j := strings.IndexFunc(rest, func(r rune) bool { return r >= 'A' && r <= 'Z' })
		if j <= 0 {
			return iv, fmt.Errorf("interval %q: not ISO 8601", s)
		}
		num, unit := rest[:j], rest[j]
		rest = rest[j+1:]
		if inTime {
			mult := map[byte]int64{'H': 3600e6, 'M': 60e6, 'S': 1e6}[unit]
			if mult == 0 {
				return iv, fmt.Errorf("interval %q: unknown time unit %c", s, unit)
			}
			us, err := scaled(num, mult)
			if err != nil {
				return iv, fmt.Errorf("interval %q: %w", s, err)
			}
			iv.micros += us
			continue
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return iv, fmt.Errorf("interval %q: %q is not a whole number", s, num)
		}
		switch unit {
		case 'Y':
			iv.months += 12 * n
		case 'M':
			iv.months += n
		case 'W':
			iv.days += 7 * n
		case 'D':
			iv.days += n
		default:
			return iv, fmt.Errorf("interval %q: unknown unit %c", s, unit)
		}
	}
	return iv, nil
}

// plainDecimal reports whether s is [+-]digits[.digits] with at most 18
// digits before the point and 9 after.
func plainDecimal(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" && frac == "" || len(whole) > 18 || len(frac) > 9 || dot && frac == "" && whole == "" {
		return false
	}
	for _, part := range []string{whole, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}
