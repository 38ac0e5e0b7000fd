// probe.go: the Prober: host selection per mode (MX walk by preference,
// A/AAAA fallback), and the SMTP dialogue with one host under per-stage
// timeouts.
//
// Tunables (Prober fields) and defaults: Port 25; Ehlo the host name;
// MailFrom "<>" (the null sender); StartTLS ondemand; Timeouts
// SoftTimeouts(); MaxAddresses 10 (addresses tried per probe);
// ContinueAfterTempFail false (Postfix's walk); TLSConfig opportunistic
// (no certificate verification: a callout delivers nothing).

package smtpprobe

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Prober defaults.
const (
	DefaultPort         = 25
	DefaultMaxAddresses = 10
	// MaxReplyLine and MaxReplyLines bound one SMTP reply.
	MaxReplyLine  = 2048
	MaxReplyLines = 100
)

// Prober runs SMTP probes. Its fields are options; set them before the
// first Probe and do not change them afterwards. The zero value is usable
// (system resolver, port 25, soft timeouts). It is safe for concurrent use.
type Prober struct {
	// Resolver answers MX and address questions; nil: a Resolver reading
	// /etc/resolv.conf.
	Resolver *Resolver
	// Port is the SMTP port (default 25).
	Port int
	// SourceIP is the local address of probe connections (zero: any).
	SourceIP netip.Addr
	// Ehlo is the default EHLO argument (default: the host name).
	Ehlo string
	// MailFrom is the default MAIL FROM address; "" or "<>": the null
	// sender.
	MailFrom string
	// StartTLS is the default STARTTLS policy (default ondemand).
	StartTLS StartTLS
	// TLSConfig is cloned for STARTTLS (ServerName set per host); nil:
	// no certificate verification.
	TLSConfig *tls.Config
	// Timeouts are the default per-stage limits; zero fields: SoftTimeouts.
	Timeouts Timeouts
	// MaxAddresses bounds the addresses tried by one probe (default 10).
	MaxAddresses int
	// ContinueAfterTempFail makes a 4xx reply or an I/O error after the
	// greeting move on to the next host, as mailfromd's calloutd does.
	// By default (Postfix's rule) the first host that greets decides.
	ContinueAfterTempFail bool
	// Transcript, if set, receives every SMTP line: sent is true for
	// lines the prober sent. tag is Request.Tag.
	Transcript func(tag string, sent bool, line string)
	// DialContext opens connections; nil: a net.Dialer (with SourceIP).
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)

	resOnce     sync.Once
	sysResolver *Resolver
}

func (p *Prober) resolver() *Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	p.resOnce.Do(func() { p.sysResolver = &Resolver{} })
	return p.sysResolver
}

// DefaultEhlo returns the host name, or "localhost.localdomain".
func DefaultEhlo() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost.localdomain"
}

// Probe verifies one address. progress, if not nil, receives the progress
// events in order (from the calling goroutine). Probe returns when the
// answer is known, every host has been tried, or ctx is done (Result
// Timeout when its deadline passed, TempFailure when it was cancelled).
func (p *Prober) Probe(ctx context.Context, req Request, progress func(Event)) Outcome {
	w := &walk{p: p, req: req, progress: progress, left: p.MaxAddresses}
	if w.left <= 0 {
		w.left = DefaultMaxAddresses
	}
	w.timeouts = req.Timeouts.Or(p.Timeouts).Or(SoftTimeouts())
	w.ehlo = firstNonEmpty(req.Ehlo, p.Ehlo)
	if w.ehlo == "" {
		w.ehlo = DefaultEhlo()
	}
	w.mailFrom = firstNonEmpty(req.MailFrom, p.MailFrom)
	w.tls = req.StartTLS
	if w.tls == StartTLSDefault {
		w.tls = p.StartTLS
	}
	if w.tls == StartTLSDefault {
		w.tls = StartTLSOnDemand
	}
	out := w.run(ctx)
	out.Greeted = w.greeted
	if ctx.Err() != nil && !out.Result.Definite() {
		out.Retry = true
		out.Result = TempFailure
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			out.Result = Timeout
		}
		if out.Err == nil {
			out.Err = ctx.Err()
		}
	}
	return out
}

// walk is the state of one probe.
type walk struct {
	p        *Prober
	req      Request
	progress func(Event)
	timeouts Timeouts
	ehlo     string
	mailFrom string
	tls      StartTLS
	local    string
	domain   string
	left     int     // addresses that may still be tried
	last     Outcome // the best non-final outcome so far
	tried    bool
	greeted  bool
}

func (w *walk) emit(stage, text string) {
	if w.progress != nil {
		w.progress(Event{Stage: stage, Text: text})
	}
}

func (w *walk) run(ctx context.Context) Outcome {
	local, domain, ok := SplitAddress(w.req.Email)
	if !ok || local == "" {
		return Outcome{Result: NotFound, Err: fmt.Errorf("invalid address %q", w.req.Email)}
	}
	w.local, w.domain = local, domain
	host := strings.TrimSuffix(strings.TrimSpace(w.req.Host), ".")
	if w.req.Mode.NeedsHost() && host == "" {
		return Outcome{Result: Failure, Err: fmt.Errorf("mode %s requires a host", w.req.Mode)}
	}
	switch w.req.Mode {
	case MXOnly:
		return w.mxWalk(ctx, host, false)
	case HostOnly:
		return w.hostOnly(ctx, host)
	case HostFirst:
		if out, final := w.hostTry(ctx, host); final {
			return out
		}
		return w.mxWalk(ctx, host, false)
	default:
		d := domain
		if host != "" {
			d = host
		}
		if d == "" {
			return Outcome{Result: Failure, Err: errors.New("empty domain")}
		}
		return w.mxWalk(ctx, d, true)
	}
}

// failed returns the outcome when no host gave a final answer.
func (w *walk) failed(err error) Outcome {
	if w.tried {
		return w.last
	}
	return Outcome{Result: TempFailure, Retry: true, Err: err}
}

func dnsOutcome(err error, what string) Outcome {
	if errors.Is(err, ErrNXDomain) {
		return Outcome{Result: NotFound, DomainDead: true, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return Outcome{Result: TempFailure, Retry: true, Err: fmt.Errorf("%s: %w", what, err)}
}

// mxWalk tries the MX hosts of domain by preference; with fallback, the
// domain's own addresses when it has no MX.
func (w *walk) mxWalk(ctx context.Context, domain string, fallback bool) Outcome {
	r := w.p.resolver()
	mxs, err := r.LookupMX(ctx, domain)
	if err != nil {
		if w.tried {
			return w.last
		}
		return dnsOutcome(err, "MX "+domain)
	}
	if len(mxs) == 1 && (mxs[0].Host == "" || mxs[0].Host == ".") {
		return Outcome{Result: Failure, DomainDead: true, Err: fmt.Errorf("%s has a null MX: it accepts no mail", domain)}
	}
	if len(mxs) == 0 {
		if !fallback {
			if w.tried {
				return w.last
			}
			return Outcome{Result: NotFound, DomainDead: true, Err: fmt.Errorf("%s has no MX", domain)}
		}
		addrs, err := r.LookupHost(ctx, domain)
		if err != nil {
			return dnsOutcome(err, "address of "+domain)
		}
		if len(addrs) == 0 {
			return Outcome{Result: NotFound, DomainDead: true, Err: fmt.Errorf("%s has no MX and no address", domain)}
		}
		if out, final := w.tryAddrs(ctx, domain, addrs, w.port()); final {
			return out
		}
		return w.failed(nil)
	}
	var lastErr error
	for _, mx := range mxs {
		if mx.Host == "" || w.left <= 0 || ctx.Err() != nil {
			continue
		}
		addrs, err := r.LookupHost(ctx, mx.Host)
		if err != nil || len(addrs) == 0 {
			if err == nil {
				err = errors.New("no address")
			}
			lastErr = fmt.Errorf("MX %s: %w", mx.Host, err)
			continue
		}
		if out, final := w.tryAddrs(ctx, mx.Host, addrs, w.port()); final {
			return out
		}
	}
	return w.failed(lastErr)
}

func (w *walk) port() int {
	if w.p.Port > 0 {
		return w.p.Port
	}
	return DefaultPort
}

// splitHostPort takes "host", "host:port", "[v6]:port" or a bare IPv6.
func (w *walk) splitHostPort(h string) (string, int) {
	if host, port, err := net.SplitHostPort(h); err == nil {
		if n, err := strconv.Atoi(port); err == nil && n > 0 && n < 65536 {
			return host, n
		}
	}
	return strings.Trim(h, "[]"), w.port()
}

func (w *walk) hostOnly(ctx context.Context, host string) Outcome {
	out, _ := w.hostTry(ctx, host)
	return out
}

// hostTry probes one named host or IP address.
func (w *walk) hostTry(ctx context.Context, h string) (Outcome, bool) {
	host, port := w.splitHostPort(h)
	addrs, err := w.p.resolver().LookupHost(ctx, host)
	if err != nil || len(addrs) == 0 {
		if err == nil {
			err = errors.New("no address")
		}
		if errors.Is(err, ErrNXDomain) || len(addrs) == 0 {
			// calloutd: "cannot convert HOST to sockaddr" gives failure.
			return Outcome{Result: Failure, Retry: true, Err: fmt.Errorf("host %s: %w", host, err)}, false
		}
		return Outcome{Result: TempFailure, Retry: true, Err: fmt.Errorf("host %s: %w", host, err)}, false
	}
	if out, final := w.tryAddrs(ctx, host, addrs, port); final {
		return out, true
	}
	return w.failed(nil), false
}

// tryAddrs runs sessions with the addresses of one host until one is final.
func (w *walk) tryAddrs(ctx context.Context, name string, addrs []netip.Addr, port int) (Outcome, bool) {
	for _, a := range addrs {
		if w.left <= 0 || ctx.Err() != nil {
			break
		}
		w.left--
		out, final := w.session(ctx, name, netip.AddrPortFrom(a, uint16(port)))
		if final {
			return out, true
		}
		w.tried = true
		w.last = out
	}
	return Outcome{}, false
}

// dial opens a TCP connection to addr under the connect timeout.
func (w *walk) dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, w.timeouts.Connect)
	defer cancel()
	if w.p.DialContext != nil {
		return w.p.DialContext(dctx, "tcp", addr.String())
	}
	d := net.Dialer{KeepAlive: -1}
	if w.p.SourceIP.IsValid() && w.p.SourceIP.Is4() == addr.Addr().Unmap().Is4() {
		d.LocalAddr = &net.TCPAddr{IP: w.p.SourceIP.AsSlice()}
	}
	return d.DialContext(dctx, "tcp", addr.String())
}

// conn is one SMTP connection.
type conn struct {
	w    *walk
	c    net.Conn
	r    *bufio.Reader
	last string // last command sent, for the SENT line
}

// reply is one SMTP reply.
type reply struct {
	code  int
	first string // first line as received
	lines []string
}

func (r reply) class() int { return r.code / 100 }

var errBadReply = errors.New("malformed SMTP reply")

func (c *conn) transcript(sent bool, line string) {
	if c.w.p.Transcript != nil {
		c.w.p.Transcript(c.w.req.Tag, sent, line)
	}
}

// cmd sends a command (empty: none) and reads the reply within d.
func (c *conn) cmd(line string, d time.Duration) (reply, error) {
	c.c.SetDeadline(time.Now().Add(d))
	if line != "" {
		c.last = line
		c.transcript(true, line)
		if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
			return reply{}, err
		}
	}
	var rp reply
	for n := 0; ; n++ {
		if n >= MaxReplyLines {
			return rp, fmt.Errorf("%w: more than %d lines", errBadReply, MaxReplyLines)
		}
		b, err := c.readLine()
		if err != nil {
			return rp, err
		}
		c.transcript(false, b)
		if len(b) < 3 || !isDigit3(b) || (len(b) > 3 && b[3] != ' ' && b[3] != '-') {
			return rp, fmt.Errorf("%w: %q", errBadReply, b)
		}
		code, _ := strconv.Atoi(b[:3])
		if n == 0 {
			rp.code, rp.first = code, b
		} else if code != rp.code {
			return rp, fmt.Errorf("%w: code changed within a reply: %q", errBadReply, b)
		}
		rp.lines = append(rp.lines, b)
		if len(b) == 3 || b[3] == ' ' {
			return rp, nil
		}
	}
}

func (c *conn) readLine() (string, error) {
	var line []byte
	for {
		frag, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return "", err
		}
		line = append(line, frag...)
		if len(line) > MaxReplyLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", errBadReply, MaxReplyLine)
		}
		if !isPrefix {
			return string(line), nil
		}
	}
}

func isDigit3(b string) bool {
	return b[0] >= '2' && b[0] <= '5' && b[1] >= '0' && b[1] <= '9' && b[2] >= '0' && b[2] <= '9'
}

// session talks to one address. final is false when the walk should go
// on to the next address.
func (w *walk) session(ctx context.Context, name string, addr netip.AddrPort) (out Outcome, final bool) {
	out.Host = name
	nc, err := w.dial(ctx, addr)
	if err != nil {
		return Outcome{Result: TempFailure, Retry: true, Host: name, Err: fmt.Errorf("connect %s (%s): %w", name, addr, err)}, false
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c := &conn{w: w, c: nc, r: bufio.NewReaderSize(nc, 1024)}
	w.emit(StageInit, name)

	// ioFail ends the session after a network error: the walk goes on
	// when no server has greeted yet, or when asked to.
	ioFail := func(greeted bool, err error) (Outcome, bool) {
		sent := c.last
		if sent == "" {
			sent = "nothing"
		}
		w.emit(StageSent, sent)
		w.emit(StageRecv, "nothing")
		o := Outcome{Result: TempFailure, Retry: true, Host: name, Err: fmt.Errorf("%s (%s): %w", name, addr, err)}
		return o, greeted && !w.p.ContinueAfterTempFail
	}
	// answer ends the session on an SMTP reply that is not 2xx.
	answer := func(rp reply) (Outcome, bool) {
		sent := c.last
		if sent == "" {
			sent = "nothing"
		}
		w.emit(StageSent, sent)
		w.emit(StageRecv, rp.first)
		c.quit()
		o := Outcome{Host: name, Reply: rp.first, Result: NotFound,
			MailRefused: rp.class() == 5 && strings.HasPrefix(sent, "MAIL FROM:")}
		if rp.class() == 4 {
			o.Result = TempFailure
			return o, !w.p.ContinueAfterTempFail
		}
		return o, true
	}

	rp, err := c.cmd("", w.timeouts.Initial)
	if err != nil {
		return ioFail(false, fmt.Errorf("greeting: %w", err))
	}
	w.emit(StageGreeting, rp.first)
	switch rp.class() {
	case 2:
	case 4: // skipped, as Postfix's smtp_skip_4xx_greeting
		o, _ := answer(rp)
		return o, false
	default:
		return answer(rp)
	}

	w.greeted = true
	ext, rp, err := c.hello()
	if err != nil {
		return ioFail(true, err)
	}
	w.emit(StageHelo, rp.first)
	if rp.class() != 2 {
		return answer(rp)
	}
	secure := false
	if w.tls == StartTLSAlways && ext["STARTTLS"] {
		if rp, err = c.startTLS(name); err != nil {
			return ioFail(true, err)
		}
		if rp.class() != 2 {
			return answer(rp)
		}
		secure = true
		if _, rp, err = c.hello(); err != nil {
			return ioFail(true, err)
		}
		if rp.class() != 2 {
			return answer(rp)
		}
	}
	from := "MAIL FROM:<" + strings.Trim(w.mailFrom, "<>") + ">"
	rp, err = c.cmd(from, w.timeouts.Mail)
	if err != nil {
		return ioFail(true, err)
	}
	if rp.code == 530 && w.tls == StartTLSOnDemand && !secure {
		if rp, err = c.startTLS(name); err != nil {
			return ioFail(true, err)
		}
		if rp.class() != 2 {
			return answer(rp)
		}
		if _, rp, err = c.hello(); err != nil {
			return ioFail(true, err)
		}
		if rp.class() != 2 {
			return answer(rp)
		}
		if rp, err = c.cmd(from, w.timeouts.Mail); err != nil {
			return ioFail(true, err)
		}
	}
	if rp.class() != 2 {
		return answer(rp)
	}
	rcpt := "RCPT TO:<" + w.local + "@" + w.domain + ">"
	if rp, err = c.cmd(rcpt, w.timeouts.Rcpt); err != nil {
		return ioFail(true, err)
	}
	w.emit(StageSent, rcpt)
	w.emit(StageRecv, rp.first)
	out = Outcome{Host: name, Reply: rp.first}
	switch rp.class() {
	case 2:
		out.Result = Success
		if w.req.CatchAll {
			if r2, err := c.cmd("RCPT TO:<"+RandomLocalPart()+"@"+w.domain+">", w.timeouts.Rcpt); err == nil && r2.class() == 2 {
				out.CatchAll = true
			}
		}
	case 4:
		out.Result = TempFailure
		c.quit()
		return out, !w.p.ContinueAfterTempFail
	default:
		out.Result = NotFound
	}
	c.quit()
	return out, true
}

// hello sends EHLO, falling back to HELO on a 5xx. It returns the EHLO
// extensions (upper-case keywords) and the last reply.
func (c *conn) hello() (map[string]bool, reply, error) {
	rp, err := c.cmd("EHLO "+c.w.ehlo, c.w.timeouts.Helo)
	if err != nil {
		return nil, rp, err
	}
	if rp.class() == 5 {
		rp, err = c.cmd("HELO "+c.w.ehlo, c.w.timeouts.Helo)
		return nil, rp, err
	}
	ext := make(map[string]bool)
	for _, l := range rp.lines[1:] {
		if len(l) > 4 {
			kw, _, _ := strings.Cut(l[4:], " ")
			ext[strings.ToUpper(kw)] = true
		}
	}
	return ext, rp, nil
}

// startTLS sends STARTTLS and, on 220, wraps the connection.
func (c *conn) startTLS(name string) (reply, error) {
	rp, err := c.cmd("STARTTLS", c.w.timeouts.Helo)
	if err != nil || rp.class() != 2 {
		return rp, err
	}
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opportunistic TLS: a callout delivers nothing
	if c.w.p.TLSConfig != nil {
		cfg = c.w.p.TLSConfig.Clone()
	}
	if cfg.ServerName == "" && net.ParseIP(name) == nil {
		cfg.ServerName = name
	}
	tc := tls.Client(c.c, cfg)
	tc.SetDeadline(time.Now().Add(c.w.timeouts.Helo))
	if err := tc.Handshake(); err != nil {
		return rp, fmt.Errorf("TLS handshake: %w", err)
	}
	c.c = tc
	c.r = bufio.NewReaderSize(tc, 1024)
	return rp, nil
}

// quit sends QUIT and waits for the reply (errors ignored).
func (c *conn) quit() {
	_, _ = c.cmd("QUIT", c.w.timeouts.Quit)
}

// RandomLocalPart returns a local part no mailbox has: "mailmux-" and
// 16 random hex digits (for catch-all detection).
func RandomLocalPart() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "mailmux-" + hex.EncodeToString(b[:])
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
