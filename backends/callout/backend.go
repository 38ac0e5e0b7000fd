// backend.go: the callout backend: a synchronous session that verifies
// the envelope sender at MAIL (and, when asked, each recipient at RCPT),
// skipping what must not be verified (skip.go), and answers with the
// verdict configured for the outcome (verdict.go). Its Caps skip every
// other event, except end of message when a verdict tags.
//
// The shared state (the Verifier and its cache, in process) is opened at
// the first session and closed when a reload retires the backend and its
// last session has ended. Under pmult the cache store itself is the
// process's (ShareCaches: one open store per location, kept across
// reloads while a backend uses it). A cache that cannot be opened fails that
// session's open (the on_failure action); the next session tries again.
// AdminCache serves `pmult callout-cache` on that same cache while pmult
// runs (over the control socket).

package callout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/internal/breaker"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// Config is a callout backend's configuration (Settings.Config builds it
// from the TOML keys).
type Config struct {
	Name string
	Log  *slog.Logger

	// Sender is how senders are verified; Recipient how recipients are
	// (nil: they are not).
	Sender    Target
	Recipient *Target

	// Calloutd is the calloutd server to ask; zero: probe in process.
	Calloutd syntax.Address
	// Prober and Verifier settings, in process.
	Prober    *smtpprobe.Prober
	OpenCache func(ctx context.Context) (*cache.Cache, error) // nil: no cache
	// CacheLocation names where the cache lives (Settings.CacheLocation);
	// with it, OpenStore and the lifetimes, ShareCaches can hand the
	// backend the process's open store of that location instead of
	// OpenCache opening one of its own.
	CacheLocation                string
	OpenStore                    func(ctx context.Context) (cache.Store, error)
	CachePositive, CacheNegative time.Duration
	MaxPending                   int
	DomainConcurrency            int
	DomainRate                   float64
	// Soft are the per-stage timeouts while the client waits; Hard those
	// of background completion.
	Soft, Hard smtpprobe.Timeouts
	// MaxWait bounds the whole wait at MAIL or RCPT; past it the
	// timeout verdict answers and the probe completes in the background.
	MaxWait time.Duration

	Skip Skip
	// TagHeader is the header added at end of message for tag verdicts.
	TagHeader string
	// TagMacro and RecipientTagMacro are the macros a tag verdict sets
	// (to the outcome, e.g. "not_found") for the backends after this one
	// in the chain (pmult/assign.go), for the message; "": none.
	TagMacro, RecipientTagMacro string
}

// Target is how one kind of address is verified and answered.
type Target struct {
	Mode     smtpprobe.Mode
	Host     string // mxonly, hostonly, hostfirst; mxfirst: a fixed domain ("" the address's)
	Verdicts Verdicts
}

// Backend is a callout backend (a pmult.Backend and pmult.Retirer).
type Backend struct {
	cfg Config
	brk breaker.Breaker // opens of calloutd conversations

	mu       sync.Mutex
	v        *callout.Verifier // in process, once opened
	c        *cache.Cache
	claim    *cache.Claim // ShareCaches: the process's store of the location
	sessions int
	retired  bool
	closed   bool
}

// New returns the backend of cfg.
func New(cfg Config) *Backend {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.TagHeader == "" {
		cfg.TagHeader = DefaultTagHeader
	}
	return &Backend{cfg: cfg, brk: breaker.Breaker{Name: cfg.Name, Log: cfg.Log}}
}

// Name implements pmult.Backend.
func (b *Backend) Name() string { return b.cfg.Name }

func (b *Backend) inProcess() bool { return b.cfg.Calloutd.Network == "" }

// Open implements pmult.Backend.
func (b *Backend) Open(ctx context.Context, info pmult.OpenInfo) (pmult.BackendSession, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("callout backend %s: retired", b.cfg.Name)
	}
	s := &session{b: b, macros: map[string]string{}}
	if b.inProcess() {
		if err := b.openLocked(ctx); err != nil {
			return nil, err
		}
		s.chk = &local{v: b.v, soft: b.cfg.Soft, log: b.cfg.Log}
	} else {
		r := &remote{addr: b.cfg.Calloutd, soft: b.cfg.Soft, brk: &b.brk}
		if b.cfg.Prober != nil {
			r.res = b.cfg.Prober.Resolver
		}
		s.chk, s.rem = r, r
	}
	b.sessions++
	s.log = info.Log // the engine's: it names the backend
	if s.log == nil {
		s.log = b.cfg.Log.With("backend", b.cfg.Name)
	}
	return s, nil
}

// ShareCaches makes the backend use the store of its cache location
// kept in h (the process's, across reloads) instead of opening and
// closing one of its own: it claims the location now, before a reload
// retires the backend it replaces, and releases it when retired and idle
// (the last release closes the store). Call it before the first Open; a
// backend probing through calloutd, or without a cache, claims nothing.
func (b *Backend) ShareCaches(h *cache.Handles) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h == nil || b.claim != nil || b.closed || !b.inProcess() || b.cfg.CacheLocation == "" || b.cfg.OpenStore == nil {
		return
	}
	b.claim = h.Claim(b.cfg.CacheLocation)
}

// openLocked opens the shared in-process state (the cache and the
// Verifier) once; b.mu is held.
func (b *Backend) openLocked(ctx context.Context) error {
	if b.v != nil {
		return nil
	}
	var c *cache.Cache
	if b.claim != nil {
		st, err := b.claim.Open(ctx, b.cfg.OpenStore)
		if err != nil {
			return fmt.Errorf("callout backend %s: %w", b.cfg.Name, err)
		}
		c = &cache.Cache{Store: st, Positive: b.cfg.CachePositive, Negative: b.cfg.CacheNegative}
	} else if b.cfg.OpenCache != nil {
		var err error
		if c, err = b.cfg.OpenCache(ctx); err != nil {
			return fmt.Errorf("callout backend %s: %w", b.cfg.Name, err)
		}
	}
	b.c = c
	b.v = &callout.Verifier{Prober: b.cfg.Prober, Cache: c, MaxPending: b.cfg.MaxPending,
		DomainConcurrency: b.cfg.DomainConcurrency, DomainRate: b.cfg.DomainRate,
		HardTimeouts: b.cfg.Hard, Logger: b.cfg.Log, MailRefusedFailure: true}
	return nil
}

// AdminCache runs a cache administration command (list, show WHAT,
// flush WHAT|--all: cache.Admin) on the cache this backend's sessions
// use, while pmult runs: a flush applies to the next verification at
// once. It opens the cache when no session has yet. A backend probing
// through calloutd, or with cache "none", has no cache of its own.
func (b *Backend) AdminCache(ctx context.Context, args []string, w io.Writer) error {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return fmt.Errorf("callout backend %s: retired", b.cfg.Name)
	case !b.inProcess():
		b.mu.Unlock()
		return fmt.Errorf("callout backend %s probes through calloutd %s: its cache is calloutd's (calloutd cache)", b.cfg.Name, b.cfg.Calloutd)
	}
	err := b.openLocked(ctx)
	c := b.c
	b.mu.Unlock()
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("callout backend %s: cache = \"none\": nothing kept", b.cfg.Name)
	}
	return cache.Admin(ctx, c.Store, args, w, time.Now())
}

// Retire implements pmult.Retirer: the cache and background work end
// with the last session.
func (b *Backend) Retire() {
	b.mu.Lock()
	b.retired = true
	b.mu.Unlock()
	b.release(0)
}

// release ends n sessions and closes the shared state once retired and idle.
func (b *Backend) release(n int) {
	b.mu.Lock()
	b.sessions -= n
	if !b.retired || b.sessions > 0 || b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	v, c, claim := b.v, b.c, b.claim
	b.mu.Unlock()
	if v != nil {
		v.Close()
	}
	var err error
	switch {
	case claim != nil: // the process's store: closed by the last release
		err = claim.Release()
	case c != nil && c.Store != nil:
		err = c.Store.Close()
	}
	if err != nil {
		b.cfg.Log.Warn("callout cache close", "backend", b.cfg.Name, "err", err)
	}
}

// Verifier returns the in-process Verifier once a session opened it
// (nil before, or with a calloutd server), for statistics and tests.
func (b *Backend) Verifier() *callout.Verifier {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v
}

// SetsMacros implements pmult.MacroSetter: the tag macros, when a
// verdict tags.
func (b *Backend) SetsMacros() []string {
	if !b.cfg.tags() {
		return nil
	}
	var out []string
	for _, m := range []string{b.cfg.TagMacro, b.cfg.RecipientTagMacro} {
		if m != "" {
			out = append(out, m)
		}
	}
	return out
}

// DefaultTagHeader is the header of tag verdicts.
const DefaultTagHeader = "X-Sender-Verify"

// session is one MTA session's side.
type session struct {
	b      *Backend
	chk    checker
	rem    *remote
	log    *slog.Logger
	macros map[string]string // every macro the MTA sent so far (names without braces)
	// msgMacros: the names in macros that came with a message stage,
	// forgotten at the next MAIL (an earlier backend's {spf_result} is
	// for its message only).
	msgMacros []string

	client netip.Addr
	helo   string
	tags   []string // header values to add at EOM
	closed bool
}

// Caps implements pmult.BackendSession: MAIL, RCPT when recipients are
// verified, EOM when a verdict tags; the rest is skipped.
func (s *session) Caps() pmult.Caps {
	cfg := &s.b.cfg
	want := pmult.Kinds(pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindAbort)
	c := pmult.Caps{Macros: map[pmult.Kind][]string{}}
	mail := []string{"i", "{auth_authen}", "{auth_type}"}
	if m := cfg.Skip.Macro; m != "" {
		mail = append(mail, "{"+m+"}")
	}
	c.Macros[pmult.KindMail] = mail
	if cfg.Recipient != nil {
		want = want.With(pmult.KindRcpt)
		c.Macros[pmult.KindRcpt] = mail
	}
	if cfg.Skip.Macro != "" {
		// See what the backends before it set at MAIL (and RCPT) itself.
		c.WaitEarlier = pmult.Kinds(pmult.KindMail, pmult.KindRcpt)
	}
	if cfg.tags() {
		want = want.With(pmult.KindEOM)
		c.Actions = pmult.ActAddHeaders
	}
	for k := pmult.KindConnect; k <= pmult.KindUnknown; k++ {
		if !want.Has(k) && k != pmult.KindQuit && k != pmult.KindQuitNC {
			c.NoEvent = c.NoEvent.With(k)
		}
	}
	c.NoReply = pmult.Kinds(pmult.KindConnect, pmult.KindHelo)
	return c
}

// tags reports whether any verdict is tag.
func (c *Config) tags() bool {
	for _, a := range c.Sender.Verdicts {
		if a.Kind == ActTag {
			return true
		}
	}
	if c.Recipient != nil {
		for _, a := range c.Recipient.Verdicts {
			if a.Kind == ActTag {
				return true
			}
		}
	}
	return false
}

func (s *session) noteMacros(ev *pmult.Event) {
	if ev.Kind == pmult.KindMail {
		for _, n := range s.msgMacros {
			delete(s.macros, n)
		}
		s.msgMacros = s.msgMacros[:0]
	}
	for _, set := range ev.Macros {
		msg := set.For >= pmult.KindMail && set.For <= pmult.KindEOM
		for i := 0; i+1 < len(set.Pairs); i += 2 {
			n := strings.Trim(set.Pairs[i], "{}")
			if _, had := s.macros[n]; msg && !had {
				s.msgMacros = append(s.msgMacros, n)
			}
			s.macros[n] = set.Pairs[i+1]
		}
	}
}

// Handle implements pmult.BackendSession.
func (s *session) Handle(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	s.noteMacros(ev)
	switch ev.Kind {
	case pmult.KindConnect:
		s.client, _ = netip.ParseAddr(ev.Address)
		s.client = s.client.Unmap()
	case pmult.KindHelo:
		s.helo = ev.Arg
	case pmult.KindMail:
		s.tags = s.tags[:0]
		if len(ev.Args) == 0 {
			return pmult.Reply{}, nil
		}
		return s.verify(ctx, "sender", macros.StripBrackets(ev.Args[0]), &s.b.cfg.Sender)
	case pmult.KindRcpt:
		if s.b.cfg.Recipient == nil || len(ev.Args) == 0 {
			return pmult.Reply{}, nil
		}
		return s.verify(ctx, "recipient", macros.StripBrackets(ev.Args[0]), s.b.cfg.Recipient)
	case pmult.KindEOM:
		var r pmult.Reply
		for _, v := range s.tags {
			r.Edits = append(r.Edits, pmult.Edit{Kind: pmult.EditAddHeader, Name: s.b.cfg.TagHeader, Value: " " + v})
		}
		s.tags = s.tags[:0]
		return r, nil
	case pmult.KindAbort:
		s.tags = s.tags[:0]
	}
	return pmult.Reply{}, nil
}

// verify checks one address and answers with its verdict.
func (s *session) verify(ctx context.Context, what, addr string, t *Target) (pmult.Reply, error) {
	sid := s.macros["i"] // the queue id, for calloutd SID and transcripts (Postfix has none yet at MAIL)
	if why := s.b.cfg.Skip.why(s, what, addr); why != "" {
		s.log.Debug("callout skipped", what, addr, "why", why)
		var r pmult.Reply
		if v := s.b.cfg.Skip.vouched(s); v != "" && what == "sender" && strings.HasPrefix(why, "vouched") {
			r.Notes = []pmult.Note{{What: "macro_skip", Action: v}}
		}
		return r, nil
	}
	var o Outcome
	var res checkResult
	if bad := malformed(addr); bad != "" {
		s.log.Warn("callout: malformed address, not probed", what, addr, "why", bad)
		o = OutFailure
	} else {
		req := smtpprobe.Request{Email: addr, Mode: t.Mode, Host: t.Host, Tag: sid}
		if req.Host == "" && t.Mode == smtpprobe.MXOnly {
			req.Host = req.Domain()
		}
		wctx, cancel := context.WithTimeout(ctx, s.b.cfg.MaxWait)
		var err error
		res, err = s.chk.check(wctx, req)
		cancel()
		if err != nil { // the engine logs it and applies on_failure
			return pmult.Reply{}, fmt.Errorf("%s <%s>: %w", what, addr, err)
		}
		if ctx.Err() != nil {
			return pmult.Reply{}, ctx.Err()
		}
		o = outcomeOf(res.out)
	}
	a := t.Verdicts[o]
	lvl := slog.LevelInfo
	if o == OutSuccess {
		lvl = slog.LevelDebug
	}
	if s.log.Enabled(ctx, lvl) {
		attrs := []any{what, addr, "result", o.String(),
			"cached", res.cached, "verdict", a.Kind.String()}
		if res.out.Host != "" {
			attrs = append(attrs, "host", res.out.Host, "reply", res.out.Reply)
		}
		if res.out.Err != nil {
			attrs = append(attrs, "err", res.out.Err)
		}
		s.log.Log(ctx, lvl, "callout", attrs...)
	}
	r := a.reply()
	if a.Kind == ActTag {
		v := o.String()
		m := s.b.cfg.TagMacro
		if what == "recipient" {
			v = "<" + addr + "> " + v
			m = s.b.cfg.RecipientTagMacro
		}
		s.tags = append(s.tags, v)
		if m != "" {
			r.Macros = []pmult.Assignment{{Name: m, Value: o.String()}}
		}
	}
	return r, nil
}

// outcomeOf maps a probe outcome to the verdict it gets.
func outcomeOf(out smtpprobe.Outcome) Outcome {
	switch out.Result {
	case smtpprobe.Success:
		return OutSuccess
	case smtpprobe.NotFound:
		if out.DomainDead {
			return OutNoMailHost
		}
		return OutNotFound
	case smtpprobe.Failure:
		if out.DomainDead {
			return OutNoMailHost
		}
		return OutFailure
	case smtpprobe.Timeout:
		return OutTimeout
	}
	// A soft timeout of a stage (a net deadline) or of the whole wait.
	if errors.Is(out.Err, context.DeadlineExceeded) || errors.Is(out.Err, os.ErrDeadlineExceeded) {
		return OutTimeout
	}
	return OutTempFailure
}

// malformed says what is wrong with an address's domain, "" if nothing.
func malformed(addr string) string {
	_, d, ok := smtpprobe.SplitAddress(addr)
	if !ok || d == "" {
		return "no domain"
	}
	if len(d) > 253 {
		return "domain longer than 253 characters"
	}
	if d[0] == '[' { // address literal
		if _, err := netip.ParseAddr(strings.TrimPrefix(strings.Trim(d, "[]"), "ipv6:")); err != nil {
			return "bad address literal"
		}
		return ""
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return "empty or too long label"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return fmt.Sprintf("character %q in the domain", c)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "label starts or ends with a hyphen"
		}
	}
	return ""
}

// Close implements pmult.BackendSession.
func (s *session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.rem != nil {
		s.rem.close()
	}
	s.b.release(1)
	return nil
}
