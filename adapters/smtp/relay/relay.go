// Package relay is the next-hop side of the SMTP front (adapters/smtp): it
// carries one mail transaction to the next hop over SMTP or LMTP with the
// client of github.com/emersion/go-smtp, forwarding the origin (XFORWARD,
// else XCLIENT) when the next hop offers it, and maps every failure to the
// reply the front's own client should get.
//
// One Txn is one transaction with the next hop (Begin sends MAIL; Rcpt,
// Reset and Data follow; Close or Abort end it). A Txn is not safe for
// concurrent use: cancel the context of the call in progress to interrupt it.
//
// Connection cache (Config.Cache, as Postfix smtp(8)'s connection cache):
// Begin takes an idle connection to the next hop when one is cached, else it
// dials, greets and sends EHLO/LHLO. When a transaction ends, Close (after a
// delivered message) and Abort (a refused or dropped one: RSET first, and
// only a 250 answer to it keeps the connection) put the connection back into
// a bounded cache instead of sending QUIT, unless it is broken (any error but
// the next hop's refusal of MAIL, RCPT, RSET or DATA), used XCLIENT (the
// session is the forwarded client's now), or has reached the reuse count or
// time limit. A cached connection found dead when used (an error or a 421 to
// XFORWARD or MAIL, before anything of the new message was accepted) is
// dropped quietly and a fresh one dialled, once. Idle connections get QUIT
// after Config.IdleTimeout, at Flush and at Close.
//
// Replies (ClientReply): the next hop's own 4xx/5xx answers to MAIL, RCPT,
// RSET and DATA pass through (code, enhanced code, text), except 421, which
// closes only the next-hop connection and so becomes 451 4.4.2. Everything
// before MAIL (connect, greeting, EHLO/LHLO, XFORWARD/XCLIENT), whatever the
// next hop answered, and every network error or timeout become 451: 4.4.1
// when the next hop could not be reached or refused the session at connect
// (greeting), 4.4.2 afterwards; the text names the next hop. The relay logs
// each such failure itself (one Warn line: next hop, stage, error); the next
// hop's refusals of MAIL/RCPT/DATA are not errors of the relay and are logged
// at Debug only.
//
// LMTP: Data returns one answer per recipient the next hop accepted, in Rcpt
// order; FoldLMTP folds them into the one SMTP answer a client gets (all
// accepted: nil, that is 250; otherwise the first refusal). go-smtp keys the
// per-recipient answers by address, so a recipient given twice gets the last
// of its answers both times.
//
// ESMTP options are passed as go-smtp's client passes them: each only when the
// next hop offers the extension (SIZE, DSN's RET/ENVID/NOTIFY/ORCPT, AUTH=,
// RRVS, DELIVERBY, MT-PRIORITY), BODY=8BITMIME whenever the next hop offers
// 8BITMIME. SMTPUTF8 and REQUIRETLS are requirements: a next hop that does not
// offer them gets no MAIL and the client 553 5.6.7 or 550 5.7.30.
//
// # Tunables and defaults
//
//   - Config.ConnectTimeout (30s): dialing the next hop.
//   - Config.CommandTimeout (5m, as Postfix's smtp_*_timeout): the greeting and
//     each command's whole answer (EHLO, XFORWARD, XCLIENT, MAIL, RCPT, RSET,
//     DATA's 354): a next hop that drips its answer byte by byte is cut off
//     when the command's time is up, not when a read stalls. While the message
//     is written, each write must make progress within CommandTimeout.
//   - Config.DataTimeout (10m): the answer after the final dot (each LMTP
//     answer together).
//   - Config.Cache (off here; [smtp] next_hop_cache defaults to on): reuse
//     connections for later transactions.
//   - Config.CacheSize (16): idle connections kept at most; a connection
//     ending its transaction when the cache is full gets QUIT.
//   - Config.ReuseLimit (0: no limit, as Postfix's
//     smtp_connection_reuse_count_limit): how many times a connection is
//     reused at most.
//   - Config.ReuseTime (300s, as smtp_connection_reuse_time_limit): a
//     connection older than this (since it was dialled) is not cached again.
//   - Config.IdleTimeout (2s, as smtp_connection_cache_time_limit): an idle
//     cached connection gets QUIT after this long.
//   - Data copies the message through a buffer of 32 KiB taken from a pool
//     of the Relay (none is allocated per message).
//   - quitWait (10s, at most CommandTimeout): how long Close and Abort wait for
//     the answer to RSET (before caching) or QUIT before closing the
//     connection anyway; also each QUIT of an idle cached connection.
//   - xforwardLine (512 bytes): XFORWARD/XCLIENT attributes are split over
//     several commands to keep each line within it, as Postfix's client does.
//   - Every call's context bounds it further: its deadline and its
//     cancellation end the call at once (the Txn is then broken: Abort it).
package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/config/syntax"
)

// Defaults of Config.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute
	DefaultDataTimeout    = 10 * time.Minute
	DefaultCacheSize      = 16
	DefaultReuseTime      = 300 * time.Second
	DefaultIdleTimeout    = 2 * time.Second
)

const (
	quitWait     = 10 * time.Second
	xforwardLine = 512
	copyBuffer   = 32 << 10
)

// Config of one next hop.
type Config struct {
	Address        string        // config/syntax address: "inet:127.0.0.1:10025", "unix:/path"
	LMTP           bool          // speak LMTP (LHLO, per-recipient DATA replies)
	HeloName       string        // EHLO/LHLO name (default: os.Hostname)
	ConnectTimeout time.Duration // default 30s
	CommandTimeout time.Duration // each envelope command; default 5m (Postfix smtp_*_timeout)
	DataTimeout    time.Duration // end-of-data answer; default 10m
	XForward       bool          // forward the origin (XFORWARD when offered, else XCLIENT when offered)

	Cache       bool          // keep connections for later transactions (see the package documentation)
	CacheSize   int           // idle connections kept at most; default 16
	ReuseLimit  int           // times a connection is reused at most; 0: no limit
	ReuseTime   time.Duration // a connection this old is not cached again; default 300s
	IdleTimeout time.Duration // an idle cached connection is closed after; default 2s
}

// Origin is the client as the front saw it (after XCLIENT/XFORWARD/PROXY).
type Origin struct {
	Addr  string // IP address text, or "" when unknown
	Port  int
	Name  string // reverse name, "[UNAVAILABLE]" when unknown
	Helo  string
	Proto string // "SMTP" / "ESMTP"
	Ident string // queue id upstream, when known
	Login string // SASL login name (XCLIENT LOGIN), "" when none; XFORWARD has no such attribute
}

// Relay dials one configured next hop and caches its idle connections; it
// is safe for concurrent use (each Txn has a connection of its own). Close
// it when done: it closes the cached connections.
type Relay struct {
	cfg    Config
	addr   syntax.Address
	log    *slog.Logger
	noFwd  atomic.Bool // the "next hop offers no XFORWARD/XCLIENT" warning was logged
	dialer net.Dialer
	bufs   sync.Pool // *[]byte of copyBuffer bytes, for Data

	mu     sync.Mutex
	idle   []*session     // cached connections, the most recently used last
	closed bool           // Close was called: nothing is cached any more
	bye    sync.WaitGroup // QUITs of idle connections in progress
}

// session is one connection to the next hop, over one or more
// transactions.
type session struct {
	conn    *ctxConn
	c       *smtp.Client
	fwd     string      // "XFORWARD" or "" (XCLIENT is sent once, at Begin)
	fwdExt  string      // the attributes the next hop offered for XFORWARD
	xclient bool        // XCLIENT changed the session: never cached
	born    time.Time   // when it was dialled
	uses    int         // transactions begun on it
	timer   *time.Timer // its idle timer, while cached
	cached  uint64      // how many times it was cached: names the current timer
}

// New checks cfg, fills in its defaults and returns the Relay; a nil log
// discards.
func New(cfg Config, log *slog.Logger) (*Relay, error) {
	addr, err := syntax.ParseAddress(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("relay: next hop: %w", err)
	}
	var errs []error
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"connect timeout", &cfg.ConnectTimeout, DefaultConnectTimeout},
		{"command timeout", &cfg.CommandTimeout, DefaultCommandTimeout},
		{"data timeout", &cfg.DataTimeout, DefaultDataTimeout},
		{"reuse time", &cfg.ReuseTime, DefaultReuseTime},
		{"idle timeout", &cfg.IdleTimeout, DefaultIdleTimeout},
	} {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("relay: %s %v is negative", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	switch {
	case cfg.CacheSize < 0:
		errs = append(errs, fmt.Errorf("relay: cache size %d is negative", cfg.CacheSize))
	case cfg.CacheSize == 0:
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.ReuseLimit < 0 {
		errs = append(errs, fmt.Errorf("relay: reuse limit %d is negative", cfg.ReuseLimit))
	}
	if strings.ContainsAny(cfg.HeloName, " \t\r\n") {
		errs = append(errs, fmt.Errorf("relay: helo name %q contains white space", cfg.HeloName))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.HeloName == "" {
		cfg.HeloName, err = os.Hostname()
		if err != nil || cfg.HeloName == "" || strings.ContainsAny(cfg.HeloName, " \t\r\n") {
			cfg.HeloName = "localhost"
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{cfg: cfg, addr: addr, log: log.With("next_hop", addr.String())}
	r.dialer.Timeout = cfg.ConnectTimeout
	r.bufs.New = func() any { b := make([]byte, copyBuffer); return &b }
	return r, nil
}

// Stages of a transaction, as Error.Stage names them.
const (
	StageConnect  = "connect"
	StageGreeting = "greeting"
	StageHello    = "hello"
	StageXForward = "xforward"
	StageXClient  = "xclient"
	StageMail     = "mail"
	StageRcpt     = "rcpt"
	StageRset     = "rset"
	StageData     = "data"
	StageQuit     = "quit"
)

// Error is every error of Begin and the Txn methods: which next hop, at which
// stage, and the cause (a *smtp.SMTPError when the next hop answered).
type Error struct {
	Hop   string // the next hop's address
	Stage string // one of the Stage constants
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("relay: next hop %s: %s: %v", e.Hop, e.Stage, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// answered reports whether err is the next hop's own answer.
func answered(err error) (*smtp.SMTPError, bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se, true
	}
	return nil, false
}

// ClientReply maps any error of the above to what the SMTP client should get:
// the next hop's own 4xx/5xx passes through (code, enhanced code, text), network
// errors and timeouts become 451 4.4.1/4.4.2 with a short text naming the next hop.
// See the package documentation for the exact rules. nil gives nil.
func ClientReply(err error) *smtp.SMTPError {
	if err == nil {
		return nil
	}
	var re *Error
	if !errors.As(err, &re) {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Next hop failed"}
	}
	se, ok := answered(re.Err)
	switch re.Stage {
	case StageMail, StageRcpt, StageRset, StageData:
		if ok && se.Code >= 400 && se.Code < 600 && se.Code != 421 {
			out := *se
			if out.EnhancedCode == (smtp.EnhancedCode{}) {
				out.EnhancedCode = smtp.EnhancedCode{se.Code / 100, 0, 0}
			}
			return &out
		}
	}
	enh := smtp.EnhancedCode{4, 4, 2}
	if re.Stage == StageConnect || re.Stage == StageGreeting {
		enh = smtp.EnhancedCode{4, 4, 1}
	}
	var msg string
	switch {
	case ok:
		msg = fmt.Sprintf("Next hop %s answered %s with %d", re.Hop, re.Stage, se.Code)
	case re.Stage == StageConnect:
		msg = fmt.Sprintf("Next hop %s not reachable", re.Hop)
	case isTimeout(re.Err):
		msg = fmt.Sprintf("Next hop %s timed out at %s", re.Hop, re.Stage)
	default:
		msg = fmt.Sprintf("Lost connection with next hop %s at %s", re.Hop, re.Stage)
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: enh, Message: msg}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// FoldLMTP folds Data's per-recipient LMTP answers into the one answer an
// SMTP client gets: nil (250) when every recipient was accepted, otherwise
// the first refusal.
func FoldLMTP(perRcpt []error) error {
	for _, err := range perRcpt {
		if err != nil {
			return err
		}
	}
	return nil
}

// Txn is one transaction with the next hop, on a connection of its own
// for as long as it lasts.
type Txn struct {
	*session
	r      *Relay
	origin Origin
	rcpts  []string // recipients the next hop accepted, in order
	broken error    // the connection's state is unknown: only Abort/Close remain
	closed bool
	open   bool // MAIL was accepted and the transaction has not ended at the next hop
	quiet  bool // a cached connection before MAIL: its failure is logged at Debug (Begin retries)
}

// Begin sends MAIL on a cached connection to the next hop, or on a new one
// (dialled, EHLO/LHLO, origin forwarding).
func (r *Relay) Begin(ctx context.Context, o Origin, from string, opts *smtp.MailOptions) (*Txn, error) {
	if s := r.take(); s != nil {
		s.uses++
		t := &Txn{session: s, r: r, origin: o, quiet: true}
		err := t.mail(ctx, from, opts)
		t.quiet = false
		if err == nil {
			return t, nil
		}
		t.Abort()
		if t.broken == nil || ctx.Err() != nil {
			return nil, err // the next hop's answer, or the caller gave up
		}
		// Dead (closed by the next hop while idle, 421): nothing of the
		// message was accepted; dial a fresh connection, once.
		r.log.Debug("cached connection to the next hop failed: dialling a new one", "err", err)
	}
	return r.dial(ctx, o, from, opts)
}

func (r *Relay) dial(ctx context.Context, o Origin, from string, opts *smtp.MailOptions) (*Txn, error) {
	nc, err := r.dialer.DialContext(ctx, r.addr.Network, r.addr.Addr)
	if err != nil {
		return nil, r.fail(StageConnect, ctx, err)
	}
	cc := &ctxConn{Conn: nc}
	s := &session{conn: cc, born: time.Now(), uses: 1}
	t := &Txn{session: s, r: r, origin: o}
	if r.cfg.LMTP {
		s.c = smtp.NewClientLMTP(cc)
	} else {
		s.c = smtp.NewClient(cc)
	}
	s.c.CommandTimeout = r.cfg.CommandTimeout
	s.c.SubmissionTimeout = r.cfg.DataTimeout
	if err := t.hello(ctx, r.cfg.HeloName); err != nil {
		t.Abort()
		return nil, err
	}
	if r.cfg.XForward {
		if err := t.forward(ctx); err != nil {
			t.Abort()
			return nil, err
		}
	}
	if err := t.mail(ctx, from, opts); err != nil {
		t.Abort()
		return nil, err
	}
	return t, nil
}

// take returns a cached connection, the most recently used, or nil.
func (r *Relay) take() *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.idle)
	if n == 0 {
		return nil
	}
	s := r.idle[n-1]
	r.idle[n-1] = nil
	r.idle = r.idle[:n-1]
	s.timer.Stop() // a timer that fired finds it gone and leaves it alone
	return s
}

// put caches s, if the cache is on, has room and s is within its limits;
// false: s is the caller's to close.
func (r *Relay) put(s *session) bool {
	if !r.cfg.Cache || s.xclient || r.cfg.ReuseLimit > 0 && s.uses > r.cfg.ReuseLimit ||
		time.Since(s.born) >= r.cfg.ReuseTime {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(r.idle) >= r.cfg.CacheSize {
		return false
	}
	r.idle = append(r.idle, s)
	s.cached++
	gen := s.cached
	s.timer = time.AfterFunc(r.cfg.IdleTimeout, func() { r.expire(s, gen) })
	return true
}

// expire closes s when its idle time is up, unless it was taken meanwhile
// (and maybe cached again: then a later timer is current).
func (r *Relay) expire(s *session, gen uint64) {
	r.mu.Lock()
	i := slices.Index(r.idle, s)
	if i < 0 || s.cached != gen || r.closed {
		r.mu.Unlock()
		return
	}
	r.idle = slices.Delete(r.idle, i, i+1)
	r.bye.Add(1)
	r.mu.Unlock()
	defer r.bye.Done()
	r.goodbye(s)
}

// goodbye sends QUIT on an idle connection and closes it.
func (r *Relay) goodbye(s *session) {
	(&Txn{session: s, r: r, closed: true}).quitAndClose()
}

// Idle is the number of cached connections.
func (r *Relay) Idle() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.idle)
}

// Flush closes every idle cached connection (QUIT) and waits for them;
// connections in use are cached again when their transactions end.
func (r *Relay) Flush() { r.drain(false) }

// Close closes every idle cached connection and waits for them (and for
// those whose idle time is up); from then on, no connection is cached:
// each ends with QUIT when its transaction does. Begin still works.
func (r *Relay) Close() error {
	r.drain(true)
	return nil
}

func (r *Relay) drain(closing bool) {
	r.mu.Lock()
	if closing {
		r.closed = true
	}
	idle := r.idle
	r.idle = nil
	for _, s := range idle {
		s.timer.Stop()
	}
	r.bye.Add(len(idle))
	r.mu.Unlock()
	for _, s := range idle {
		go func() {
			defer r.bye.Done()
			r.goodbye(s)
		}()
	}
	r.bye.Wait()
}

// fail builds the Error of a stage, logs it at Warn when it is the relay's
// failure (not a refusal of the transaction) and returns it.
func (r *Relay) fail(stage string, ctx context.Context, err error) *Error {
	return r.failLog(stage, ctx, err, false)
}

// failLog is fail, logging at Debug only when quiet.
func (r *Relay) failLog(stage string, ctx context.Context, err error, quiet bool) *Error {
	if ce := ctx.Err(); ce != nil && !errors.Is(err, ce) {
		err = fmt.Errorf("%w: %w", ce, err)
	}
	e := &Error{Hop: r.addr.String(), Stage: stage, Err: err}
	switch {
	case refusal(stage, err):
		se, _ := answered(err)
		r.log.Debug("next hop refused", "stage", stage, "code", se.Code, "reply", se.Message)
	case stage == StageQuit:
		r.log.Debug("next hop failed at QUIT", "err", err)
	case quiet:
		r.log.Debug("cached connection to the next hop failed", "stage", stage, "err", err)
	default:
		r.log.Warn("next hop failed", "stage", stage, "err", err)
	}
	return e
}

// refusal reports whether err is the next hop's answer refusing a step of the
// transaction (the connection stays usable), as opposed to a failure.
func refusal(stage string, err error) bool {
	se, ok := answered(err)
	if !ok || se.Code == 421 {
		return false
	}
	switch stage {
	case StageMail, StageRcpt, StageRset, StageData:
		return true
	}
	return false
}

// guard binds ctx to the connection for one call and returns the function
// that releases it.
func (t *Txn) guard(ctx context.Context) func() {
	gen := t.conn.bind(ctx)
	stop := context.AfterFunc(ctx, func() { t.conn.expire(gen) })
	return func() {
		stop()
		t.conn.unbind()
	}
}

// failed records err at stage: anything but the next hop's answer leaves the
// connection in an unknown state.
func (t *Txn) failed(ctx context.Context, stage string, err error) error {
	e := t.r.failLog(stage, ctx, err, t.quiet)
	if !refusal(stage, err) {
		t.broken = e
	}
	return e
}

func (t *Txn) usable() error {
	if t.closed {
		return &Error{Hop: t.r.addr.String(), Stage: StageQuit, Err: errors.New("transaction already ended")}
	}
	if t.broken != nil {
		return t.broken
	}
	return nil
}

// hello reads the greeting (first time only) and sends EHLO/LHLO as name.
func (t *Txn) hello(ctx context.Context, name string) error {
	defer t.guard(ctx)()
	err := t.c.Hello(name)
	if err == nil {
		return nil
	}
	stage := StageHello
	if !t.conn.wrote.Load() { // go-smtp sends EHLO only after a good greeting
		stage = StageGreeting
	}
	return t.failed(ctx, stage, err)
}

// forward sends the origin: XFORWARD when offered (again before each MAIL:
// Postfix forgets the attributes at the end of each transaction and at RSET),
// else XCLIENT once (its answer is a new greeting; EHLO follows with the
// client's HELO name), else nothing (one Warn line per Relay).
func (t *Txn) forward(ctx context.Context) error {
	if ok, attrs := t.c.Extension("XFORWARD"); ok {
		t.fwd, t.fwdExt = "XFORWARD", attrs
		return nil // sent by mail
	}
	ok, attrs := t.c.Extension("XCLIENT")
	if !ok {
		if t.r.noFwd.CompareAndSwap(false, true) {
			t.r.log.Warn("next hop offers neither XFORWARD nor XCLIENT: the client's origin is not forwarded")
		}
		return nil
	}
	o := t.origin
	vals := originAttrs(o)
	if o.Login != "" {
		vals = append(vals, attr{"LOGIN", o.Login})
	}
	t.xclient = true // from here on the session is the client's
	for _, line := range attrLines("XCLIENT", offered(vals, attrs)) {
		if err := t.raw(ctx, StageXClient, line, 220); err != nil {
			return err
		}
	}
	helo := o.Helo
	if helo == "" || strings.ContainsAny(helo, " \t\r\n") {
		helo = t.r.cfg.HeloName
	}
	// XCLIENT answered with a new greeting: the session starts again
	// and wants EHLO; go-smtp's client sends it again after its Reset
	// (RSET, harmless here).
	release := t.guard(ctx)
	err := t.c.Reset()
	release()
	if err != nil {
		return t.failed(ctx, StageXClient, err)
	}
	return t.hello(ctx, helo)
}

type attr struct{ name, val string }

func orUnavailable(s string) string {
	if s == "" {
		return "[UNAVAILABLE]"
	}
	return s
}

// nameAttr is the NAME attribute: the client's verified name, or
// [UNAVAILABLE] when there is none ("", or an address literal such as
// "[192.0.2.1]", the milter convention the front uses, which Postfix's
// smtpd refuses as "Bad NAME syntax").
func nameAttr(n string) string {
	if strings.HasPrefix(n, "[") && strings.HasSuffix(n, "]") {
		return "[UNAVAILABLE]"
	}
	return orUnavailable(n)
}

func addrAttr(a string) string {
	switch {
	case a == "":
		return "[UNAVAILABLE]"
	case strings.Contains(a, ":") && !strings.HasPrefix(strings.ToUpper(a), "IPV6:"):
		return "IPV6:" + a
	}
	return a
}

func portAttr(p int) string {
	if p <= 0 {
		return "[UNAVAILABLE]"
	}
	return strconv.Itoa(p)
}

// offered keeps the attributes named in the EHLO keyword's parameters.
func offered(vals []attr, params string) []attr {
	have := map[string]bool{}
	for _, f := range strings.Fields(params) {
		have[strings.ToUpper(f)] = true
	}
	var out []attr
	for _, a := range vals {
		if have[a.name] {
			out = append(out, a)
		}
	}
	return out
}

// attrLines writes attributes as verb NAME=xtext lines of at most
// xforwardLine bytes each.
func attrLines(verb string, attrs []attr) []string {
	var lines []string
	var b strings.Builder
	for _, a := range attrs {
		item := a.name + "=" + xtext(a.val)
		if b.Len() > 0 && b.Len()+1+len(item)+2 > xforwardLine {
			lines = append(lines, b.String())
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(verb)
		}
		b.WriteString(" ")
		b.WriteString(item)
	}
	if b.Len() > 0 {
		lines = append(lines, b.String())
	}
	return lines
}

// xtext encodes s as RFC 3461 xtext, byte by byte.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// raw sends one command go-smtp's client has no method for and reads its
// answer from the connection itself, byte by byte, so that nothing is read
// ahead of go-smtp's own reader (the next hop sends nothing unasked).
func (t *Txn) raw(ctx context.Context, stage, line string, want int) error {
	defer t.guard(ctx)()
	t.conn.SetDeadline(time.Now().Add(t.r.cfg.CommandTimeout))
	defer t.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(t.conn, line+"\r\n"); err != nil {
		return t.failed(ctx, stage, err)
	}
	tr := textproto.NewReader(bufio.NewReaderSize(byteReader{t.conn}, 16))
	_, _, err := tr.ReadResponse(want)
	if err != nil {
		var pe *textproto.Error
		if errors.As(err, &pe) {
			err = toSMTPError(pe)
		}
		return t.failed(ctx, stage, err)
	}
	return nil
}

// toSMTPError splits an enhanced code off the answer's text as go-smtp does.
func toSMTPError(pe *textproto.Error) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: pe.Code, Message: pe.Msg}
	code, rest, ok := strings.Cut(pe.Msg, " ")
	if !ok {
		return se
	}
	parts := strings.Split(code, ".")
	if len(parts) != 3 {
		return se
	}
	var enh smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return se
		}
		enh[i] = n
	}
	se.EnhancedCode = enh
	se.Message = rest
	return se
}

// byteReader reads one byte per Read.
type byteReader struct{ r io.Reader }

func (b byteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return b.r.Read(p)
}

// originAttrs are the attributes XCLIENT and XFORWARD share, in the
// order they are sent.
func originAttrs(o Origin) []attr {
	return []attr{
		{"NAME", nameAttr(o.Name)},
		{"ADDR", addrAttr(o.Addr)},
		{"PORT", portAttr(o.Port)},
		{"PROTO", orUnavailable(o.Proto)},
		{"HELO", orUnavailable(o.Helo)},
	}
}

// mail sends XFORWARD (when used) and MAIL.
func (t *Txn) mail(ctx context.Context, from string, opts *smtp.MailOptions) error {
	if t.fwd == "XFORWARD" {
		o := t.origin
		vals := originAttrs(o)
		if o.Ident != "" {
			vals = append(vals, attr{"IDENT", o.Ident})
		}
		for _, line := range attrLines("XFORWARD", offered(vals, t.fwdExt)) {
			if err := t.raw(ctx, StageXForward, line, 250); err != nil {
				return err
			}
		}
	}
	if opts != nil {
		if ok, _ := t.c.Extension("SMTPUTF8"); opts.UTF8 && !ok {
			return t.r.fail(StageMail, ctx, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
				Message: "Next hop does not support SMTPUTF8"})
		}
		if ok, _ := t.c.Extension("REQUIRETLS"); opts.RequireTLS && !ok {
			return t.r.fail(StageMail, ctx, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 30},
				Message: "REQUIRETLS not supported by the next hop"})
		}
	}
	defer t.guard(ctx)()
	if err := t.c.Mail(from, opts); err != nil {
		return t.failed(ctx, StageMail, err)
	}
	t.open = true
	t.rcpts = t.rcpts[:0]
	return nil
}

// Rcpt sends RCPT TO; the next hop's refusal is an Error wrapping its
// *smtp.SMTPError and leaves the transaction usable.
func (t *Txn) Rcpt(ctx context.Context, to string, opts *smtp.RcptOptions) error {
	if err := t.usable(); err != nil {
		return err
	}
	defer t.guard(ctx)()
	if err := t.c.Rcpt(to, opts); err != nil {
		return t.failed(ctx, StageRcpt, err)
	}
	t.rcpts = append(t.rcpts, to)
	return nil
}

// Reset sends RSET and MAIL again (the envelope changed at EOM).
func (t *Txn) Reset(ctx context.Context, from string, opts *smtp.MailOptions) error {
	if err := t.usable(); err != nil {
		return err
	}
	// Raw RSET: go-smtp's Reset would make the next Mail send EHLO again.
	if err := t.raw(ctx, StageRset, "RSET", 250); err != nil {
		if t.broken == nil {
			t.broken = err // a refused RSET leaves nothing to build on
		}
		return err
	}
	t.open = false
	t.rcpts = t.rcpts[:0]
	if err := t.mail(ctx, from, opts); err != nil {
		if t.broken == nil {
			t.broken = err // no transaction open any more
		}
		return err
	}
	return nil
}

// Data sends the message (header block, blank line, body; CRLF line ends, no dot
// stuffing: the client does it) and returns the next hop's answer; for LMTP one error
// per accepted recipient in Rcpt order, nil for success.
func (t *Txn) Data(ctx context.Context, msg io.Reader) (perRcpt []error, err error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	defer t.guard(ctx)()
	w, err := t.c.Data()
	if err != nil {
		return nil, t.failed(ctx, StageData, err)
	}
	bp := t.r.bufs.Get().(*[]byte)
	defer t.r.bufs.Put(bp)
	buf := *bp
	for {
		n, rerr := msg.Read(buf)
		if n > 0 {
			t.conn.SetDeadline(time.Now().Add(t.r.cfg.CommandTimeout))
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, t.failed(ctx, StageData, werr)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The message could not be read: the next hop must not get
			// a truncated one, so the connection is dropped unfinished.
			return nil, t.failed(ctx, StageData, fmt.Errorf("reading the message: %w", rerr))
		}
	}
	t.conn.SetDeadline(time.Now().Add(t.r.cfg.CommandTimeout)) // the last bytes and the dot
	if !t.r.cfg.LMTP {
		_, err := w.CloseWithResponse()
		t.open = false // the answer after the dot ends the transaction either way
		if err != nil {
			return nil, t.failed(ctx, StageData, err)
		}
		t.rcpts = t.rcpts[:0]
		return nil, nil
	}
	resp, err := w.CloseWithLMTPResponse()
	// Only the refusals alone are answers; anything else (a network error
	// joined to them, too) leaves the outcome unknown.
	lerr, onlyRefusals := err.(smtp.LMTPDataError) //nolint:errorlint // the exact type, not a wrapped one
	if err != nil && !onlyRefusals {
		return nil, t.failed(ctx, StageData, err)
	}
	t.open = false
	perRcpt = make([]error, len(t.rcpts))
	for i, rc := range t.rcpts {
		if se, ok := lerr[rc]; ok {
			perRcpt[i] = t.r.fail(StageData, ctx, se)
		} else if _, ok := resp[rc]; !ok {
			perRcpt[i] = t.r.fail(StageData, ctx, errors.New("no LMTP answer for <"+rc+">"))
		}
	}
	t.rcpts = t.rcpts[:0]
	return perRcpt, nil
}

// Close ends the transaction: the connection goes back to the Relay's cache
// (RSET first if a transaction is still open at the next hop), or gets
// QUIT. Close and Abort wait at most quitWait for the answer to RSET or
// QUIT, then close the connection.
func (t *Txn) Close() error { return t.end() }

// Abort drops the transaction without delivering: RSET ends it undelivered
// and the connection is cached, or QUIT (no RSET is needed); a broken
// connection is just closed.
func (t *Txn) Abort() error { return t.end() }

func (t *Txn) end() error {
	if t.closed {
		return nil
	}
	t.closed = true
	if t.broken == nil && t.r.cfg.Cache && !t.xclient {
		if t.open {
			wait := min(quitWait, t.r.cfg.CommandTimeout)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			err := t.raw(ctx, StageRset, "RSET", 250)
			cancel()
			if err == nil {
				t.open = false
			}
		}
		if t.broken == nil && !t.open && t.r.put(t.session) {
			return nil
		}
	}
	return t.quitAndClose()
}

// quitAndClose sends QUIT (unless the connection is broken) and closes it.
func (t *Txn) quitAndClose() error {
	if t.broken == nil {
		wait := min(quitWait, t.r.cfg.CommandTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		err := t.raw(ctx, StageQuit, "QUIT", 221)
		if cerr := t.conn.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
		return err
	}
	return t.conn.Close()
}

// ctxConn is the next-hop connection with every deadline go-smtp sets
// shortened to the deadline of the bound context, and expired at once when
// that context ends.
type ctxConn struct {
	net.Conn
	wrote atomic.Bool // a command was sent

	mu       sync.Mutex
	gen      uint64 // which bind is current
	ctxDead  time.Time
	expired  bool
	deadline time.Time // the last deadline asked for
}

func (c *ctxConn) Write(p []byte) (int, error) {
	c.wrote.Store(true)
	return c.Conn.Write(p)
}

// bind makes ctx's deadline the connection's bound and returns the
// generation expire must name.
func (c *ctxConn) bind(ctx context.Context) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.ctxDead, _ = ctx.Deadline()
	c.expired = false
	c.apply()
	return c.gen
}

func (c *ctxConn) unbind() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.ctxDead = time.Time{}
	c.expired = false
	c.apply()
}

// expire ends every wait at once, if bind gen is still current (a late
// AfterFunc of an earlier call must not touch a later one).
func (c *ctxConn) expire(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.expired = true
	c.apply()
}

func (c *ctxConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.apply()
}

// apply sets the effective deadline; mu is held.
func (c *ctxConn) apply() error {
	d := c.deadline
	switch {
	case c.expired:
		d = time.Unix(1, 0)
	case !c.ctxDead.IsZero() && (d.IsZero() || c.ctxDead.Before(d)):
		d = c.ctxDead
	}
	return c.Conn.SetDeadline(d)
}
