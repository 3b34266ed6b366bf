package testenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// RedshiftProxy sits on a loopback port in front of a Postgres server and
// relays every connection, rewriting the server's ParameterStatus messages
// to what Redshift reports: client_encoding is UNICODE, not UTF8, and no
// standard_conforming_strings is sent at all. A client that works through
// it does not rely on what only Postgres reports (pgx's simple-protocol
// Query, for one, refuses to run without both).
//
// The proxy answers SSL and GSS encryption requests itself with "no", so
// connect with sslmode=disable or prefer.
type RedshiftProxy struct {
	// Reported maps a parameter name to the value the client sees; an
	// empty value drops the message. Set before the first connection.
	Reported map[string]string

	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

// StartRedshiftProxy listens on 127.0.0.1 and relays to target (host:port).
func StartRedshiftProxy(target string) (*RedshiftProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	p := &RedshiftProxy{
		Reported: map[string]string{"client_encoding": "UNICODE", "standard_conforming_strings": ""},
		ln:       ln, target: target, conns: map[net.Conn]bool{},
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *RedshiftProxy) Addr() string { return p.ln.Addr().String() }

// URL turns a URL of the target server into one through the proxy.
func (p *RedshiftProxy) URL(targetURL string) string {
	return strings.Replace(targetURL, p.target, p.Addr(), 1)
}

// Close stops listening, cuts every relayed connection and waits for them.
func (p *RedshiftProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *RedshiftProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *RedshiftProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.relay(c)
		}()
	}
}

const (
	sslRequestCode    = 80877103
	gssencRequestCode = 80877104
)

func (p *RedshiftProxy) relay(client net.Conn) {
	defer client.Close()
	// The startup phase: untyped messages (length, then payload).
	var startup []byte
	for {
		msg, err := readUntyped(client)
		if err != nil {
			return
		}
		if len(msg) == 8 {
			if code := binary.BigEndian.Uint32(msg[4:]); code == sslRequestCode || code == gssencRequestCode {
				if _, err := client.Write([]byte{'N'}); err != nil {
					return
				}
				continue
			}
		}
		startup = msg
		break
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer server.Close()
	if _, err := server.Write(startup); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(server, client)
		_ = server.Close()
	}()
	p.rewrite(client, server)
	_ = client.Close()
	<-done
}

// rewrite copies the server's messages to the client, rewriting ParameterStatus.
func (p *RedshiftProxy) rewrite(client io.Writer, server io.Reader) {
	head := make([]byte, 5)
	for {
		if _, err := io.ReadFull(server, head); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(head[1:]))
		if n < 4 {
			return
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(server, body); err != nil {
			return
		}
		if head[0] == 'S' { // ParameterStatus: name\0value\0
			if parts := bytes.SplitN(body, []byte{0}, 3); len(parts) == 3 {
				if v, ok := p.Reported[string(parts[0])]; ok {
					if v == "" {
						continue
					}
					nb := make([]byte, 0, len(parts[0])+len(v)+2)
					body = append(append(append(append(nb, parts[0]...), 0), v...), 0)
					binary.BigEndian.PutUint32(head[1:], uint32(len(body)+4))
				}
			}
		}
		if _, err := client.Write(append(append([]byte{}, head...), body...)); err != nil {
			return
		}
	}
}

func readUntyped(r io.Reader) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(l[:]))
	if n < 8 || n > 1<<16 {
		return nil, errors.New("bad startup message length")
	}
	msg := make([]byte, n)
	copy(msg, l[:])
	if _, err := io.ReadFull(r, msg[4:]); err != nil {
		return nil, err
	}
	return msg, nil
}
