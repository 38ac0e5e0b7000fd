// server.go: the MTA-facing milter server.
//
// Tunables (Server fields) and defaults:
//   MaxData          1 MiB   largest packet data accepted from the MTA
//   NegotiateTimeout 30s     time for a new connection to send OPTNEG
//   IdleTimeout      1h      time between two commands of the MTA
//   WriteTimeout     30s     each write to the MTA
//   MaxSessions      0       concurrent MTA connections (0: no limit)

package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// Server accepts MTA milter connections and runs each through the engine.
type Server struct {
	Engine           *pmult.Engine
	Log              *slog.Logger
	MaxData          int
	NegotiateTimeout time.Duration
	IdleTimeout      time.Duration
	WriteTimeout     time.Duration
	MaxSessions      int

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
	closing   atomic.Bool
	active    atomic.Int64
	nextID    atomic.Uint64
	engine    atomic.Pointer[pmult.Engine] // replaces Engine after SetEngine
	baseCtx   context.Context
	cancel    context.CancelFunc
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("milter: server closed")

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
}

// SetEngine makes new sessions use e (a reloaded configuration); open
// sessions keep the engine they started with.
func (s *Server) SetEngine(e *pmult.Engine) { s.engine.Store(e) }

// CurrentEngine is the engine new sessions use.
func (s *Server) CurrentEngine() *pmult.Engine {
	if e := s.engine.Load(); e != nil {
		return e
	}
	return s.Engine
}

// ActiveSessions returns the number of open MTA connections.
func (s *Server) ActiveSessions() int { return int(s.active.Load()) }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				s.Log.Warn("accept failed, retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("milter: accept: %w", err)
		}
		delay = 0
		if s.MaxSessions > 0 && s.active.Load() >= int64(s.MaxSessions) {
			s.Log.Warn("session limit reached, closing MTA connection", "mta", nc.RemoteAddr().String(),
				"max_sessions", s.MaxSessions)
			nc.Close()
			continue
		}
		c := s.newConn(nc)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.active.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				s.active.Add(-1)
				s.wg.Done()
			}()
			c.serve()
		}()
	}
}

// Shutdown stops accepting, lets open sessions finish until ctx is done,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		s.cancel()
		<-done
		return fmt.Errorf("milter: shutdown deadline: closed %d open sessions: %w", n, ctx.Err())
	}
}

func (s *Server) newConn(nc net.Conn) *conn {
	id := strconv.FormatUint(s.nextID.Add(1), 10)
	max := s.MaxData
	if max <= 0 {
		max = mp.DefaultMaxData
	}
	c := &conn{srv: s, nc: nc, id: id, r: mp.NewReader(nc, max)}
	c.log = s.Log.With("session", id, "mta", peerName(nc))
	return c
}

func peerName(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix:" + nc.LocalAddr().String()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
