package view

import (
	"encoding/binary"
	"errors"

	"github.com/sluice-dev/sluice/internal/change"
)

// appendRow encodes a row for the output log: per value its kind, its text
// and its elements, so a logged change comes back exactly.
func appendRow(b []byte, row []change.Value) []byte {
	if row == nil {
		return nil
	}
	b = binary.AppendUvarint(b, uint64(len(row)))
	for _, v := range row {
		b = appendValue(b, v)
	}
	return b
}

func appendValue(b []byte, v change.Value) []byte {
	b = append(b, byte(v.Kind))
	b = binary.AppendUvarint(b, uint64(len(v.Text)))
	b = append(b, v.Text...)
	b = binary.AppendUvarint(b, uint64(len(v.Elems)))
	for _, e := range v.Elems {
		b = appendValue(b, e)
	}
	return b
}

var errCodec = errors.New("corrupt output log row")

func decodeRow(b []byte) ([]change.Value, error) {
	if len(b) == 0 {
		return nil, nil
	}
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errCodec
	}
	b = b[k:]
	row := make([]change.Value, n)
	for i := range row {
		var err error
		if row[i], b, err = decodeValue(b); err != nil {
			return nil, err
		}
	}
	return row, nil
}

func decodeValue(b []byte) (change.Value, []byte, error) {
	var v change.Value
	if len(b) < 1 {
		return v, nil, errCodec
	}
	v.Kind = change.Kind(b[0])
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return v, nil, errCodec
	}
	v.Text = string(b[k : k+int(n)])
	b = b[k+int(n):]
	m, k := binary.Uvarint(b)
	if k <= 0 {
		return v, nil, errCodec
	}
	b = b[k:]
	if m > 0 {
		v.Elems = make([]change.Value, m)
		for i := range v.Elems {
			var err error
			if v.Elems[i], b, err = decodeValue(b); err != nil {
				return v, nil, err
			}
		}
	}
	return v, b, nil
}
