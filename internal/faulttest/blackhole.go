package faulttest

import (
	"net"
	"sync"
	"sync/atomic"
)

// Blackhole is a TCP listener on loopback that accepts every connection and
// never answers on it: a service that is up to the network and dead above
// (a stalled CDN, a firewall that swallows packets after the handshake).
// It counts the connections it accepted, so a test can count the attempts
// a client made without timing anything.
type Blackhole struct {
	ln       net.Listener
	accepted atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

// NewBlackhole listens on a free loopback port.
func NewBlackhole() (*Blackhole, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Blackhole{ln: ln}
	go b.serve()
	return b, nil
}

func (b *Blackhole) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
	}
}

// Addr is host:port.
func (b *Blackhole) Addr() string { return b.ln.Addr().String() }

// URL is http://host:port.
func (b *Blackhole) URL() string { return "http://" + b.Addr() }

// Accepted is how many connections were accepted so far.
func (b *Blackhole) Accepted() int { return int(b.accepted.Load()) }

// Close stops listening and drops every connection held.
func (b *Blackhole) Close() {
	_ = b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		_ = c.Close()
	}
	b.conns = nil
}
