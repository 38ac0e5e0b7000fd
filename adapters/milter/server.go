// server.go: the MTA-facing milter server.
//
// Tunables (Server fields) and defaults:
//   MaxData          1 MiB   largest packet data accepted from the MTA
//   NegotiateTimeout 30s     time for a new connection to send OPTNEG
//   IdleTimeout      1h      time between two commands of the MTA
//   WriteTimeout     30s     each write to the MTA
//   MaxSessions      0       concurrent MTA connections (0: no limit); at the
//                            limit a connection that has not sent OPTNEG yet
//                            is closed to make room for a new one
//   ProgressInterval 5s      SMFIR_PROGRESS keep-alive during end of message (<0: off)
//   MTAMacros        MTA defaults  per-stage macros the MTA sends without a list
//   DeferContent     auto    whether the MTA is let off the replies to headers,
//                            EOH and body chunks (NR_HDR/NR_EOH/NR_BODY granted
//                            though backends answer them): auto grants them
//                            unless the offer is one known to wait (mtasim)

package milter

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/internal/connserve"
	"github.com/mailmux/mailmux/macros"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// Server accepts MTA milter connections and runs each through the engine.
type Server struct {
	// Engines holds the engine new sessions use; a reload stores the new
	// one there (shared with the MeTA1 front). nil: a Switch holding
	// Engine, fixed.
	Engines          *pmult.Switch
	Engine           *pmult.Engine
	Log              *slog.Logger
	MaxData          int
	NegotiateTimeout time.Duration
	IdleTimeout      time.Duration
	WriteTimeout     time.Duration
	MaxSessions      int
	// ProgressInterval is how often SMFIR_PROGRESS is sent to the MTA
	// while the end of message is pending, so that the MTA's per-packet
	// timer (Postfix milter_content_timeout, Sendmail's T=R:) restarts and
	// the backends' own timeouts and failure actions decide (Sendmail's
	// overall T=E: still bounds the whole end of message). 0 means
	// DefaultProgressInterval, negative: no keep-alive.
	ProgressInterval time.Duration
	// MTAMacros is, per stage (SMFIM_* order), the macro list the MTA
	// sends when pmult asks for no list: what main.cf's milter_*_macros or
	// sendmail.mc's confMILTER_MACROS_* say. When a backend asks for a
	// list at a stage, pmult asks the MTA for that list plus this one, so
	// that the other backends keep what they would get. A nil entry means
	// the union of Postfix's and Sendmail's default lists.
	MTAMacros [mp.NumStages][]string
	// DeferContent says whether the MTA is let off the replies to
	// headers, EOH and body chunks (NR_HDR, NR_EOH, NR_BODY, where it
	// offers them) even when backends answer them (pmult.Offer's
	// DeferContent): Postfix and Sendmail act on a verdict given there
	// only at end of message, where pmult gives it. DeferAuto (default)
	// does so unless the MTA's offer is one known to wait for those
	// replies regardless (mailfromd's mtasim); DeferOff never.
	DeferContent DeferContent

	once   sync.Once
	bufs   mp.BufPool // the packet buffers of connections at work
	cs     connserve.Server
	nextID atomic.Uint64
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
		s.cs = connserve.Server{Name: "milter", Log: s.Log, MaxConns: s.MaxSessions, Handshake: true,
			NewConn: func(nc net.Conn) connserve.Conn { return s.newConn(nc) }}
	})
}

// CurrentEngine is the engine new sessions use.
func (s *Server) CurrentEngine() *pmult.Engine { s.init(); return s.Engines.Engine() }

// ActiveSessions returns the number of open MTA connections.
func (s *Server) ActiveSessions() int { s.init(); return s.cs.Active() }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { s.init(); return s.cs.Serve(ln) }

// Shutdown stops accepting, lets open sessions finish until ctx is done,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error { s.init(); return s.cs.Shutdown(ctx) }

func (s *Server) newConn(nc net.Conn) *conn {
	id := strconv.FormatUint(s.nextID.Add(1), 10)
	max := s.MaxData
	if max <= 0 {
		max = mp.DefaultMaxData
	}
	nc, listener := connserve.Unname(nc)
	c := &conn{srv: s, nc: nc, id: id, r: mp.NewReader(nc, max), listener: listener}
	c.evs.Chunk, c.msets.Chunk = 8, 8 // see conn.evs
	// No allocation per packet: a packet's data lives until the next one
	// is read, and nothing keeps it (parsed strings are copies; a body
	// chunk is copied by the spool and by each backend's write before the
	// engine returns). The buffer goes back to the server's pool while
	// the connection waits for the MTA's next command.
	c.r.ReuseFrom(&s.bufs)
	c.log = s.Log.With("session", id, "mta", connserve.PeerName(nc))
	return c
}

// DefaultProgressInterval is the keep-alive period toward the MTA at end of
// message: well under the MTAs' timers (Postfix milter_content_timeout
// 300 s, Sendmail's per-read T=R: 10 s by default).
const DefaultProgressInterval = 5 * time.Second

func (s *Server) progressInterval() time.Duration {
	if s.ProgressInterval == 0 {
		return DefaultProgressInterval
	}
	return s.ProgressInterval
}

// baseline returns the macros the MTA sends at stage st without a list.
func (s *Server) baseline(st mp.Stage) []string {
	if l := s.MTAMacros[st]; l != nil {
		return l
	}
	ms := macros.Stage(st) // the same SMFIM_* numbers (internal/milterkind tests it)
	return macros.Union(macros.PostfixDefaults[ms], macros.SendmailDefaults[ms]...)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
