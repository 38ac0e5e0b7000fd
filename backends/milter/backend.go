// backend.go: the backend milter client: Config, New and Open (connect,
// circuit breaker, negotiation).
//
// Tunables (Config) and defaults, as mailfromd's pmult where it has them:
//   ConnectTimeout 300s  connect and option negotiation together; the
//                        engine's open budget (OpenInfo.Deadline, 10s by
//                        default) ends them sooner
//   WriteTimeout    10s  each write
//   ReadTimeout     10s  each reply (envelope, headers, body)
//   EOMTimeout     300s  the end-of-message reply sequence
//   MaxVersion       6   highest protocol version offered
//   MaxPacket     64 MiB largest reply packet accepted
//   MaxBody       64 MiB largest replacement body (all SMFIR_REPLBODY
//                        packets of one reply); config: max_body, default
//                        max_message
//   MaxIdle         64   idle connections kept for reuse (Reuse only)
//   IdleTimeout     60s  how long an idle connection is kept
// The circuit breaker's constants (MinDown, MaxDown, OpenStall) are in
// internal/breaker.

package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/internal/breaker"
	"github.com/mailmux/mailmux/internal/unixconn"
	"github.com/mailmux/mailmux/macros"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// Config configures one backend milter.
type Config struct {
	Name    string
	Network string // "tcp", "tcp4", "tcp6", "unix"
	Address string // host:port or socket path
	// ConnectTimeout bounds connect and negotiation together (default
	// 300s; the engine's OpenInfo.Deadline ends them sooner when it comes
	// first).
	ConnectTimeout time.Duration
	// ReadTimeout bounds each reply to an envelope, header or body event
	// (default 10s).
	ReadTimeout time.Duration
	// WriteTimeout bounds each write (default 10s).
	WriteTimeout time.Duration
	// EOMTimeout bounds the end-of-message reply sequence (default 300s).
	EOMTimeout time.Duration
	// MaxVersion is the highest protocol version offered (default and
	// most: 6; least: 2).
	MaxVersion uint32
	// MaxPacket is the largest reply packet accepted (default 64 MiB).
	MaxPacket int
	// MaxBody limits a replacement body (the SMFIR_REPLBODY packets of
	// one end-of-message reply together), in bytes (default 64 MiB). Over
	// it the session fails (the engine applies the backend's failure
	// action) and its connection is closed, so no more of it is read.
	MaxBody int
	// Reuse keeps the connection of an ended session (sent QUIT_NC, v6
	// filters only) and hands it to the next session that makes the same
	// offer, saving a connect and a negotiation per session. libmilter
	// supports QUIT_NC; MTAs never send it, so other filters may not.
	// libmilter honours QUIT_NC only right after an EOM it answered
	// CONTINUE, so only such sessions are kept (and an ABORT after that
	// EOM, which libmilter would ignore anyway, is not sent).
	Reuse bool
	// MaxIdle is the number of idle connections kept for reuse (default 64);
	// IdleTimeout how long one may wait (default 60s).
	MaxIdle     int
	IdleTimeout time.Duration
	// Log receives the breaker's down and up lines and the macro
	// warnings (nil: none).
	Log *slog.Logger
	// Macros is this backend's own macro table, applied after the
	// engine's (nil: none); see macros.go.
	Macros *macros.Table
}

// Backend is a remote milter. It is safe for concurrent use.
type Backend struct {
	cfg Config

	mu      sync.Mutex
	idle    []*session // reusable connections, most recent last
	retired bool       // Retire was called: keep nothing for reuse
	// noQuitNC: a connection kept for reuse was found dead at its first
	// command: the filter does not take QUIT_NC (mailfromd's gacopyz
	// answers "unknown command: K" and closes), so nothing is kept any
	// more and later sessions do not offer the engine QUIT_NC.
	noQuitNC atomic.Bool

	brk    breaker.Breaker
	warned sync.Map // "stage name" of macros asked for and never provided, logged once (macros.go)
	// bufs holds the packet and write buffers of this backend's
	// connections while they idle (between replies awaited).
	bufs mp.BufPool
}

// New returns a backend with defaults filled in.
func New(cfg Config) *Backend {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ConnectTimeout, 300*time.Second)
	def(&cfg.ReadTimeout, 10*time.Second)
	def(&cfg.WriteTimeout, 10*time.Second)
	def(&cfg.EOMTimeout, 300*time.Second)
	if cfg.MaxVersion < mp.MinVersion || cfg.MaxVersion > mp.MaxVersion {
		cfg.MaxVersion = mp.MaxVersion
	}
	if cfg.MaxPacket <= 0 {
		cfg.MaxPacket = 64 << 20
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 20
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Network + ":" + cfg.Address
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 64
	}
	def(&cfg.IdleTimeout, 60*time.Second)
	return &Backend{cfg: cfg, brk: breaker.Breaker{Name: cfg.Name, Log: cfg.Log}}
}

// Name implements pmult.Backend.
func (b *Backend) Name() string { return b.cfg.Name }

func (b *Backend) where() string { return b.cfg.Network + ":" + b.cfg.Address }

// OpenIdle implements pmult.IdleOpener: a connection kept from an
// earlier SMTP session, if one is.
func (b *Backend) OpenIdle(ctx context.Context, info pmult.OpenInfo) pmult.BackendSession {
	s := b.reuse(info.Offer)
	if s == nil {
		return nil
	}
	s.assigned = info.Assigned
	s.progress = info.Progress
	if s.progress == nil {
		s.progress = func() {}
	}
	if info.Log != nil {
		s.log = info.Log // this SMTP session's, not the one that opened the connection
	}
	conn := s.conn
	s.ctx = ctx
	s.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	s.probation = true
	// Its deadlines are as rdl and wdl say: a connection whose stop
	// fired is not kept (release).
	return s
}

// Open implements pmult.Backend: connect and negotiate (a kept
// connection first, as OpenIdle).
func (b *Backend) Open(ctx context.Context, info pmult.OpenInfo) (pmult.BackendSession, error) {
	if s := b.OpenIdle(ctx, info); s != nil {
		return s, nil
	}
	// One budget for connect and negotiation: connect_timeout, or the
	// engine's open deadline when that comes first.
	deadline := time.Now().Add(b.cfg.ConnectTimeout)
	if !info.Deadline.IsZero() && info.Deadline.Before(deadline) {
		deadline = info.Deadline
	}
	a, err := b.brk.Admit(ctx, deadline, b.where())
	if err != nil {
		return nil, err
	}
	s, err := b.open(ctx, info, deadline)
	// The MTA session went away (ctx cancelled, not timed out): not the
	// backend's fault, and no sign that it works either.
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		a.Abandon()
		return nil, fmt.Errorf("%s: open abandoned: %w", b.where(), ctx.Err())
	}
	a.Record(err)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// dial connects to the filter by deadline: a unix socket as a
// unixconn.Conn (not woken each time the filter reads what pmult wrote),
// TCP through net.Dialer.
func (b *Backend) dial(ctx context.Context, deadline time.Time) (net.Conn, error) {
	if b.cfg.Network == "unix" {
		return unixconn.Dial(ctx, b.cfg.Address, deadline)
	}
	// No TCP keep-alive: sessions are bounded by their own timeouts, and
	// the four setsockopt calls per connection show in the profile.
	d := net.Dialer{Deadline: deadline, KeepAlive: -1}
	return d.DialContext(ctx, b.cfg.Network, b.cfg.Address)
}

func (b *Backend) open(ctx context.Context, info pmult.OpenInfo, deadline time.Time) (*session, error) {
	budget := time.Until(deadline)
	conn, err := b.dial(ctx, deadline)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", b.where(), err)
	}
	s := &session{b: b, conn: conn, r: newReader(conn, b.cfg.MaxPacket, &b.bufs), progress: info.Progress, offer: info.Offer, ctx: ctx,
		assigned: info.Assigned}
	if s.progress == nil {
		s.progress = func() {}
	}
	if s.log = info.Log; s.log == nil && b.cfg.Log != nil { // the engine's names the backend
		s.log = b.cfg.Log.With("backend", b.cfg.Name)
	}
	s.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	if err := s.negotiate(info.Offer, deadline); err != nil {
		s.stop()
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%w (no answer within the open budget, %s)", err, budget.Round(time.Millisecond))
		}
		return nil, fmt.Errorf("%s: %w", b.where(), err)
	}
	return s, nil
}

// Offer builds the OPTNEG a proxy sends a backend for the MTA's offer
// (milter-protocol.md §10): all NO* and NR_* bits and SKIP (the proxy
// emulates them), RCPT_REJ and HDR_LEADSPC only if the MTA has them, and
// the MTA's actions, and SETSYMLIST always (pmult honours the lists).
func Offer(o pmult.Offer, version uint32) mp.OptNeg {
	p := mp.ProtoNoEventMask | mp.ProtoNoReplyMask | mp.ProtoSkip
	if o.RejectedRcpts {
		p |= mp.ProtoRcptRej
	}
	if o.LeadingSpace {
		p |= mp.ProtoHdrLeadSpc
	}
	// SETSYMLIST whatever the MTA can do: pmult honours the lists
	// itself (macros.go).
	a := mp.Action(o.Actions) | mp.ActSetSymList
	return mp.OptNeg{
		Version:  version,
		Actions:  a & mp.ActionMaskForVersion(version),
		Protocol: p & mp.ProtocolMaskForVersion(version),
	}
}

// BreakerState implements pmult.BreakerStater (metrics): the breaker's
// current down period (0: up) and whether a probe is pending.
func (b *Backend) BreakerState() (downFor time.Duration, probing bool) {
	st := b.brk.State()
	return st.DownFor, st.Probing
}
