// server.go: the SMTP-facing server: listeners, connections, limits,
// reload (the shared pmult.Switch) and drain.
//
// Tunables (Server fields) and defaults (Postfix smtpd's where it has one):
//   Hostname         os.Hostname()  greeting, EHLO, macro j, loop marker value
//   MaxLine          2048     longest command line (line_length_limit);
//                             longer: 500 5.5.2
//   MaxMessage       10240000 message bytes (message_size_limit); above:
//                             552 5.3.4; 0: the default, <0: no limit
//   MaxHeader        102400   one header, folded lines included
//                             (header_size_limit); above: 552 5.3.4
//   MaxRecipients    1000     per message (smtpd_recipient_limit); above:
//                             452 4.5.3
//   MaxErrors        20       bad commands per session
//                             (smtpd_hard_error_limit); then 421 and close
//   CommandTimeout   300s     waiting for a command (smtpd_timeout); then
//                             421 4.4.2 and close
//   DataTimeout      300s     each read of the message text
//   DataDeadline     30m      the whole DATA stage (a client that drips)
//   WriteTimeout     300s     each write to the client
//   BareLF           normalize  (smtpd_forbid_bare_newline)
//   AllowPipelining  false: unauthorised pipelining, or talking before
//                             the greeting, gets 554 5.5.0 and close
//                             (smtpd_forbid_unauth_pipelining = yes)
//   MaxConnections   0        concurrent clients (0: no limit)
//   Quarantine       header   what a quarantine edit does (see Quarantine)
//   QuarantineHeader X-Mailmux-Quarantine
//   LoopMarker       X-Mailmux-Filtered (value: Hostname); "-" none
//   Mode             BeforeQueue (AfterQueue: our loop marker is trusted)
//   Trusted          none: XCLIENT/XFORWARD refused (550 5.7.0)
//   SpoolMemory      1 MiB of each message in memory, the rest in a file
//                    in SpoolDir (internal/spool; <0: file only)
//   MemoryBudget     256 MiB for all messages held by the front (<0: none);
//                    Budget, when set, instead: the process's one budget,
//                    shared with the engine (pmult.NewBudget)
//   SpoolDir         os.TempDir()

package smtp

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/internal/connserve"
	"github.com/mailmux/mailmux/internal/spool"
	"github.com/mailmux/mailmux/pmult"
)

// Defaults of the Server tunables.
const (
	DefaultMaxLine          = 2048
	DefaultMaxMessage       = 10240000
	DefaultMaxHeader        = 102400
	DefaultMaxRecipients    = 1000
	DefaultMaxErrors        = 20
	DefaultCommandTimeout   = 300 * time.Second
	DefaultDataTimeout      = 300 * time.Second
	DefaultDataDeadline     = 30 * time.Minute
	DefaultWriteTimeout     = 300 * time.Second
	DefaultLoopMarker       = "X-Mailmux-Filtered"
	DefaultQuarantineHeader = "X-Mailmux-Quarantine"
	DefaultSpoolMemory      = 1 << 20
	DefaultMemoryBudget     = 256 << 20
)

// Mode is where the front sits.
type Mode uint8

// Modes.
const (
	// BeforeQueue: the next-hop transaction follows the client's live
	// (Postfix smtpd_proxy_filter); a loop marker on a message is not
	// trusted (any sender could write it).
	BeforeQueue Mode = iota
	// AfterQueue: a content filter on a reinjection path (Postfix
	// content_filter, Exim transport): a message carrying our own loop
	// marker is relayed unfiltered.
	AfterQueue
)

func (m Mode) String() string {
	if m == AfterQueue {
		return "after"
	}
	return "before"
}

// Quarantine is what a quarantine edit does to the message.
type Quarantine uint8

// Quarantine actions.
const (
	// QuarantineHeader delivers the message (250) with QuarantineHeader
	// added, its value the reason.
	QuarantineHeader Quarantine = iota
	// QuarantineTempfail holds it upstream: 451 4.7.1, nothing relayed.
	QuarantineTempfail
	// QuarantineReject refuses it: 550 5.7.1, nothing relayed.
	QuarantineReject
)

// Server accepts SMTP clients and runs each session through the engine,
// relaying accepted messages, every edit applied, to NextHop.
type Server struct {
	// Engines holds the engine new sessions use (shared with the other
	// fronts; a reload stores a new one). nil: a Switch holding Engine.
	Engines *pmult.Switch
	// Engine is the engine when Engines is nil.
	Engine *pmult.Engine
	// Log gets the front's log lines, each naming the connection and the
	// client (nil: discarded).
	Log *slog.Logger
	// NextHop gets every accepted message. Required.
	NextHop NextHop
	// Mode is where the front sits (default BeforeQueue).
	Mode Mode
	// Trusted are the client networks whose XCLIENT and XFORWARD are
	// believed (and offered in EHLO); others get 550 5.7.0 for them.
	Trusted []netip.Prefix
	// Proxy names the listeners (connserve names) where every connection
	// starts with a PROXY protocol v1 or v2 header.
	Proxy map[string]bool

	// Hostname is the greeting's and EHLO's name, macro j and the loop
	// marker's value ("": os.Hostname(), else "localhost").
	Hostname string
	// MaxLine is the longest command line (0: DefaultMaxLine); longer:
	// 500 5.5.2.
	MaxLine int
	// MaxMessage is the largest message in bytes, SIZE too (0:
	// DefaultMaxMessage; <0: no limit); above: 552 5.3.4.
	MaxMessage int64
	// MaxHeader is the longest header, folded lines included (0:
	// DefaultMaxHeader); longer: 552 5.3.4.
	MaxHeader int
	// MaxRecipients per message (0: DefaultMaxRecipients); more: 452 4.5.3.
	MaxRecipients int
	// MaxErrors is the bad commands a session may make (0:
	// DefaultMaxErrors); then 421 4.7.0 and close.
	MaxErrors int
	// CommandTimeout is the wait for a command (0: DefaultCommandTimeout);
	// then 421 4.4.2 and close.
	CommandTimeout time.Duration
	// DataTimeout bounds each read of the message text (0:
	// DefaultDataTimeout), DataDeadline the whole DATA stage (0:
	// DefaultDataDeadline), WriteTimeout each write to the client (0:
	// DefaultWriteTimeout).
	DataTimeout  time.Duration
	DataDeadline time.Duration
	WriteTimeout time.Duration
	// BareLF is the policy for lines ending in LF alone (default
	// BareLFNormalize).
	BareLF BareLF
	// AllowPipelining tolerates unauthorised pipelining and talking
	// before the greeting (default false: 554 5.5.0 and close).
	AllowPipelining bool
	// MaxConnections bounds the clients served at once (0: no limit).
	MaxConnections int
	// Quarantine is what a quarantine edit does (default
	// QuarantineHeader), QuarantineHeader the header it adds ("":
	// DefaultQuarantineHeader).
	Quarantine       Quarantine
	QuarantineHeader string
	// LoopMarker is the header added to relayed messages, value Hostname
	// ("" : the default; "-": none).
	LoopMarker string
	// SpoolMemory, MemoryBudget, SpoolDir: how messages are held for the
	// relay (internal/spool); 0: defaults.
	SpoolMemory  int
	MemoryBudget int64
	SpoolDir     string
	// Budget, when set, is the memory budget shared with the engine and
	// the rest of the process (pmult.NewBudget): the front's messages and
	// the engine's count against one ceiling; MemoryBudget is then not
	// used. nil: the front's own budget of MemoryBudget.
	Budget *pmult.Budget

	once     sync.Once
	cs       connserve.Server
	budget   *spool.Budget
	sessions atomic.Int64
	nextID   atomic.Uint64
	// Buffers of ended connections, for new ones.
	readers, writers sync.Pool
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
		if s.Hostname == "" {
			s.Hostname, _ = os.Hostname()
			if s.Hostname == "" {
				s.Hostname = "localhost"
			}
		}
		if s.LoopMarker == "" {
			s.LoopMarker = DefaultLoopMarker
		}
		if s.QuarantineHeader == "" {
			s.QuarantineHeader = DefaultQuarantineHeader
		}
		if s.Budget != nil {
			s.budget = s.Budget
		} else {
			b := s.MemoryBudget
			if b == 0 {
				b = DefaultMemoryBudget
			}
			s.budget = spool.NewBudget(b)
		}
		s.cs = connserve.Server{Name: "smtp", Log: s.Log, MaxConns: s.MaxConnections,
			NewConn: func(nc net.Conn) connserve.Conn { return s.newConn(nc) }}
	})
}

// ActiveSessions returns the number of open client connections.
func (s *Server) ActiveSessions() int { return int(s.sessions.Load()) }

// Serve accepts clients on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { s.init(); return s.cs.Serve(ln) }

// Shutdown stops accepting, lets open sessions finish their transaction
// until ctx is done (idle ones get 421 at once), then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error { s.init(); return s.cs.Shutdown(ctx) }

func (s *Server) newConn(nc net.Conn) *conn {
	id := strconv.FormatUint(s.nextID.Add(1), 10)
	nc, listener := connserve.Unname(nc)
	c := &conn{srv: s, nc: nc, id: id, listener: listener}
	// Room for the longest command line; message lines longer than the
	// buffer are read in pieces.
	if br, ok := s.readers.Get().(*bufio.Reader); ok {
		br.Reset(nc)
		c.br = br
	} else {
		c.br = bufio.NewReaderSize(nc, max(8<<10, orDefault(s.MaxLine, DefaultMaxLine)+2))
	}
	if bw, ok := s.writers.Get().(*bufio.Writer); ok {
		bw.Reset(nc)
		c.bw = bw
	} else {
		c.bw = bufio.NewWriterSize(nc, 4<<10)
	}
	c.log = s.Log.With("front", "smtp", "conn", id, "client", connserve.PeerName(nc))
	return c
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func (s *Server) maxMessage() int64 {
	if s.MaxMessage < 0 {
		return 0
	}
	return orDefault(s.MaxMessage, DefaultMaxMessage)
}
