// server.go: the accept loop, connection tracking and shutdown.
//
// Tunables (Server fields) and defaults:
//   MaxConns     0      open connections (0: no limit); above it a new one
//                       is closed at once, or with WaitWhenFull left in the
//                       listen backlog until one ends
//   Handshake    false  connections call Server.Ready once their protocol's
//                       handshake is done; at MaxConns the oldest one that
//                       has not is closed to make room for the new one, so
//                       silent connections cannot starve real sessions
//   LogInterval  10s    refusals and evictions are logged once per interval
//                       with a count, not once per connection
//
// A goroutine whose connection ended waits workerIdle for the next one
// instead of exiting: its stack, grown to the protocol's call depth, is
// used again, not grown from 8 KiB by copying for every connection (about
// 2% of pmult's CPU through Postfix, one connection per SMTP session).

package connserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrClosed is returned by Serve after Shutdown.
var ErrClosed = errors.New("server closed")

// Conn is one accepted connection, as the front end runs it.
type Conn interface {
	// Serve runs the connection until it ends. ctx is cancelled when the
	// shutdown deadline passes.
	Serve(ctx context.Context)
	// Drain tells the connection that shutdown began: take nothing new,
	// finish what is open (it may close at once if it is idle).
	Drain()
	// Close closes the connection at once (the deadline passed).
	Close()
}

// Server accepts connections and tracks them.
type Server struct {
	Name     string // for logs and errors: "milter", "meta1"
	Log      *slog.Logger
	MaxConns int
	// WaitWhenFull: at MaxConns, stop accepting (new connections wait in
	// the listen backlog) instead of closing them.
	WaitWhenFull bool
	// Handshake: the front end calls Ready when a connection has done its
	// protocol's handshake (the milter OPTNEG). At MaxConns the oldest
	// connection that has not is closed to make room for the new one;
	// only when every open connection is ready is the new one refused.
	Handshake bool
	// LogInterval is how often the refusal and eviction counts are
	// logged (default 10s): the first one of a burst at once, then one
	// line per interval with the count.
	LogInterval time.Duration
	// NewConn makes the Conn for an accepted connection.
	NewConn func(nc net.Conn) Conn

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[Conn]*entry
	pending   entryList // Handshake: open connections not yet Ready, oldest first
	refused   *rateLog
	evicted   *rateLog
	wg        sync.WaitGroup
	closing   atomic.Bool
	active    atomic.Int64
	ctx       context.Context
	cancel    context.CancelFunc
	slots     chan struct{} // WaitWhenFull: one token per open connection
	jobs      chan job      // to an idle worker (unbuffered)
	workers   sync.WaitGroup
}

// workerIdle is how long a worker goroutine waits for the next
// connection before it exits.
const workerIdle = 5 * time.Second

// job is one accepted connection for a worker.
type job struct {
	c       Conn
	e       *entry
	ctx     context.Context
	release func()
}

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[Conn]*entry{}
		iv := s.LogInterval
		if iv <= 0 {
			iv = 10 * time.Second
		}
		s.refused = &rateLog{log: s.Log, interval: iv, msg: "connection limit reached, closing new connections",
			attrs: []any{"front", s.Name, "limit", s.MaxConns}}
		s.evicted = &rateLog{log: s.Log, interval: iv, msg: "connection limit reached, closing connections that have not negotiated to make room",
			attrs: []any{"front", s.Name, "limit", s.MaxConns}}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.jobs = make(chan job)
		if s.WaitWhenFull && s.MaxConns > 0 {
			s.slots = make(chan struct{}, s.MaxConns)
		}
	}
}

// Closing reports whether Shutdown has begun.
func (s *Server) Closing() bool { return s.closing.Load() }

// Active returns the number of open connections.
func (s *Server) Active() int { return int(s.active.Load()) }

// Serve accepts connections on ln until Shutdown (then it returns
// ErrClosed) or a permanent accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	release := func() {}
	if s.slots != nil {
		release = func() { <-s.slots }
	}
	for {
		if s.slots != nil {
			select {
			case s.slots <- struct{}{}:
			case <-s.ctx.Done():
				return ErrClosed
			}
		}
		nc, err := ln.Accept()
		if err != nil {
			release()
			if s.closing.Load() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				s.Log.Warn("accept failed, retrying", "front", s.Name, "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("%s: accept: %w", s.Name, err)
		}
		delay = 0
		if s.slots == nil && s.MaxConns > 0 && s.active.Load() >= int64(s.MaxConns) && !s.evictPending() {
			s.refused.add(PeerName(nc))
			nc.Close()
			continue
		}
		c := s.NewConn(nc)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close() // nc, or what NewConn made of it
			release()
			continue
		}
		e := &entry{c: c, peer: PeerName(nc)}
		s.conns[c] = e
		if s.Handshake {
			s.pending.push(e)
		}
		s.wg.Add(1)
		s.active.Add(1)
		j := job{c: c, e: e, ctx: s.ctx, release: release}
		s.mu.Unlock()
		select {
		case s.jobs <- j: // an idle worker takes it
		default:
			s.workers.Add(1)
			go s.work(j)
		}
	}
}

// work serves j, then the connections handed to it while it waits idle,
// until it has waited workerIdle or the server is shut down.
func (s *Server) work(j job) {
	defer s.workers.Done()
	var t *time.Timer
	for {
		s.run(j)
		if t == nil {
			t = time.NewTimer(workerIdle)
			defer t.Stop()
		} else {
			t.Reset(workerIdle)
		}
		select {
		case j = <-s.jobs:
		case <-t.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// run serves one connection and forgets it.
func (s *Server) run(j job) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, j.c)
		s.pending.remove(j.e)
		s.mu.Unlock()
		s.active.Add(-1)
		j.release()
		s.wg.Done()
	}()
	j.c.Serve(j.ctx)
}

// Shutdown stops accepting, drains open connections until ctx is done,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Drain()
	}
	s.mu.Unlock()
	s.refused.flush()
	s.evicted.flush()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	defer s.workers.Wait() // idle workers leave at cancel
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.cancel()
		<-done
		return fmt.Errorf("%s: shutdown deadline: closed %d open connections: %w", s.Name, n, ctx.Err())
	}
}

// Ready tells the server that c has done its protocol's handshake (used
// with Handshake): from now on it is never closed to make room.
func (s *Server) Ready(c Conn) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.conns[c]; e != nil {
		s.pending.remove(e)
	}
}

// Pending returns the number of open connections that have not called
// Ready (always 0 without Handshake).
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending.n
}

// evictPending closes the oldest connection that has not done its
// handshake, if there is one (Handshake only), and reports whether it did.
// The slot frees when its Serve returns; the new connection is admitted
// at once (the limit is briefly exceeded by the one closing).
func (s *Server) evictPending() bool {
	if !s.Handshake {
		return false
	}
	s.mu.Lock()
	e := s.pending.head
	if e != nil {
		s.pending.remove(e)
	}
	s.mu.Unlock()
	if e == nil {
		return false
	}
	s.evicted.add(e.peer)
	e.c.Close()
	return true
}

// PeerName names a connection's peer for logs (unix sockets have none:
// the socket path is used).
func PeerName(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix:" + nc.LocalAddr().String()
}
