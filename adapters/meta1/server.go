// server.go: the smtps-facing pmilter server: listeners, smtps connections,
// session limits, reload and drain.
//
// Tunables (Server fields) and defaults:
//   MaxRecord        1 MiB   largest record accepted from smtps
//   MaxHeader        64 KiB  largest single header line (folded lines
//                            included); a longer one rejects the message
//                            with 552 5.3.4
//   NegotiateTimeout 30s     time for a new connection to negotiate
//   IdleTimeout      0       time between two records (0: none; smtps
//                            keeps its connection open between sessions)
//   WriteTimeout     30s     each write to smtps
//   MaxSessions      0       concurrent SMTP sessions, all connections
//                            (pmult's max-threads-hard; 0: no limit)
//   SoftSessions     0       above this many, each new session is logged
//                            (pmult's max-threads-soft; 0: never)
//   MaxConnections   0       concurrent smtps connections (pmult's
//                            max-pmilter-fd; 0: no limit)
//   QueueDepth       8       records queued for one session

package meta1

import (
	"bufio"
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

	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// Defaults of the Server tunables.
const (
	DefaultMaxHeader        = 64 << 10
	DefaultNegotiateTimeout = 30 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	DefaultQueueDepth       = 8
)

// Server accepts smtps pmilter connections and runs each SMTP session
// carried on them through the engine.
type Server struct {
	Engine *pmult.Engine
	Log    *slog.Logger
	// Macros are the MeTA1 macros requested per stage (canonical names,
	// validated by the configuration; see macros.CheckMeta1Macros).
	Macros [macros.M1NumStages][]string
	// Version is the value of the mult_version macro.
	Version string

	MaxRecord        int
	MaxHeader        int
	NegotiateTimeout time.Duration
	IdleTimeout      time.Duration
	WriteTimeout     time.Duration
	MaxSessions      int
	SoftSessions     int
	MaxConnections   int
	QueueDepth       int

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
	closing   atomic.Bool
	nconns    atomic.Int64
	sessions  atomic.Int64
	nextID    atomic.Uint64
	engine    atomic.Pointer[pmult.Engine]
	baseCtx   context.Context
	cancel    context.CancelFunc
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("meta1: server closed")

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

// SetEngine makes new SMTP sessions use e; open ones keep theirs.
func (s *Server) SetEngine(e *pmult.Engine) { s.engine.Store(e) }

func (s *Server) currentEngine() *pmult.Engine {
	if e := s.engine.Load(); e != nil {
		return e
	}
	return s.Engine
}

// ActiveSessions returns the number of open SMTP sessions.
func (s *Server) ActiveSessions() int { return int(s.sessions.Load()) }

// ActiveConnections returns the number of open smtps connections.
func (s *Server) ActiveConnections() int { return int(s.nconns.Load()) }

// Serve accepts smtps connections on ln until Shutdown.
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
			return fmt.Errorf("meta1: accept: %w", err)
		}
		delay = 0
		if s.MaxConnections > 0 && s.nconns.Load() >= int64(s.MaxConnections) {
			s.Log.Warn("smtps connection limit reached (max_connections), closing", "smtps", peerName(nc),
				"max_connections", s.MaxConnections)
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
		s.nconns.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				s.nconns.Add(-1)
				s.wg.Done()
			}()
			c.serve()
		}()
	}
}

// Shutdown stops accepting connections and new SMTP sessions (they get
// 421), lets open sessions finish until ctx is done, then closes what is
// left. A connection is closed as soon as it carries no session.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.closeIfIdle()
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
		return fmt.Errorf("meta1: shutdown deadline: closed %d smtps connections: %w", n, ctx.Err())
	}
}

func (s *Server) newConn(nc net.Conn) *conn {
	id := strconv.FormatUint(s.nextID.Add(1), 10)
	c := &conn{srv: s, nc: nc, id: id, br: bufio.NewReaderSize(nc, 64<<10), sessions: map[string]*session{}}
	c.log = s.Log.With("front", "meta1", "conn", id, "smtps", peerName(nc))
	return c
}

func peerName(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix:" + nc.LocalAddr().String()
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
