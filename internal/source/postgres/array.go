package postgres

import (
	"fmt"
	"strings"

	"github.com/sluice-dev/sluice/internal/change"
)

// parseArray parses Postgres' array output ("{1,NULL,\"a b\"}", nested
// braces for more dimensions, an optional "[1:2]=" bounds prefix) into a
// KindArray value whose scalar elements are decoded by elem.
func parseArray(s string, elem *typeInfo, delim byte) (change.Value, error) {
	if strings.HasPrefix(s, "[") {
		// Non-default lower bounds: the record keeps the elements, not the bounds.
		i := strings.Index(s, "=")
		if i < 0 {
			return change.Value{}, fmt.Errorf("array %.40q: bounds without '='", s)
		}
		s = s[i+1:]
	}
	p := arrayParser{s: s, elem: elem, delim: delim}
	v, err := p.parse()
	if err != nil {
		return change.Value{}, fmt.Errorf("array %.40q: %w", s, err)
	}
	if p.i != len(p.s) {
		return change.Value{}, fmt.Errorf("array %.40q: trailing text at %d", s, p.i)
	}
	return v, nil
}

type arrayParser struct {
	s     string
	i     int
	elem  *typeInfo
	delim byte
	buf   strings.Builder
}

func (p *arrayParser) parse() (change.Value, error) {
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return change.Value{}, fmt.Errorf("want '{' at %d", p.i)
	}
	p.i++
	out := change.Value{Kind: change.KindArray, Elems: []change.Value{}}
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return out, nil
	}
	for {
		if p.i >= len(p.s) {
			return change.Value{}, fmt.Errorf("unterminated array")
		}
		var v change.Value
		var err error
		switch p.s[p.i] {
		case '{':
			v, err = p.parse()
		case '"':
			var text string
			text, err = p.quoted()
			if err == nil {
				v, err = p.elem.decode(text)
			}
		default:
			start := p.i
			for p.i < len(p.s) && p.s[p.i] != p.delim && p.s[p.i] != '}' {
				p.i++
			}
			text := strings.TrimSpace(p.s[start:p.i])
			if strings.EqualFold(text, "NULL") {
				v = change.Null
			} else {
				v, err = p.elem.decode(text)
			}
		}
		if err != nil {
			return change.Value{}, err
		}
		out.Elems = append(out.Elems, v)
		if p.i >= len(p.s) {
			return change.Value{}, fmt.Errorf("unterminated array")
		}
		switch p.s[p.i] {
		case p.delim:
			p.i++
		case '}':
			p.i++
			return out, nil
		default:
			return change.Value{}, fmt.Errorf("unexpected %q at %d", p.s[p.i], p.i)
		}
	}
}

func (p *arrayParser) quoted() (string, error) {
	p.i++ // opening quote
	p.buf.Reset()
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case '\\':
			if p.i+1 >= len(p.s) {
				return "", fmt.Errorf("dangling backslash")
			}
			p.buf.WriteByte(p.s[p.i+1])
			p.i += 2
		case '"':
			p.i++
			return p.buf.String(), nil
		default:
			p.buf.WriteByte(c)
			p.i++
		}
	}
	return "", fmt.Errorf("unterminated quoted element")
}
