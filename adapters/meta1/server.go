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
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/internal/connserve"
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
	// Engines holds the engine new SMTP sessions use; a reload stores the
	// new one there (shared with the milter front). nil: a Switch holding
	// Engine, fixed.
	Engines *pmult.Switch
	Engine  *pmult.Engine
	Log     *slog.Logger
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

	once     sync.Once
	cs       connserve.Server
	sessions atomic.Int64
	nextID   atomic.Uint64
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = connserve.ErrClosed

func (s *Server) init() {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.Engines == nil {
			s.Engines = pmult.NewSwitch(s.Engine)
		}
		s.cs = connserve.Server{Name: "meta1", Log: s.Log, MaxConns: s.MaxConnections,
			NewConn: func(nc net.Conn) connserve.Conn { return s.newConn(nc) }}
	})
}

func (s *Server) currentEngine() *pmult.Engine { s.init(); return s.Engines.Engine() }

// ActiveSessions returns the number of open SMTP sessions.
func (s *Server) ActiveSessions() int { return int(s.sessions.Load()) }

// ActiveConnections returns the number of open smtps connections.
func (s *Server) ActiveConnections() int { s.init(); return s.cs.Active() }

// Serve accepts smtps connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { s.init(); return s.cs.Serve(ln) }

// Shutdown stops accepting connections and new SMTP sessions (they get
// 421), lets open sessions finish until ctx is done, then closes what is
// left. A connection is closed as soon as it carries no session.
func (s *Server) Shutdown(ctx context.Context) error { s.init(); return s.cs.Shutdown(ctx) }

func (s *Server) newConn(nc net.Conn) *conn {
	id := strconv.FormatUint(s.nextID.Add(1), 10)
	nc, listener := connserve.Unname(nc)
	c := &conn{srv: s, nc: nc, id: id, listener: listener, br: bufio.NewReaderSize(nc, 64<<10), sessions: map[string]*session{}}
	c.log = s.Log.With("front", "meta1", "conn", id, "smtps", connserve.PeerName(nc))
	return c
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
