// conn.go: one client connection: the command loop (greeting, HELO/EHLO,
// XCLIENT/XFORWARD, MAIL, RCPT, DATA, RSET, NOOP, QUIT, unknown commands
// as engine Unknown events), limits and timeouts, and the engine session.
//
// The engine's CONNECT and HELO events are sent at the first MAIL (or
// unknown command), once the real client is known (an upstream MTA sends
// XCLIENT/XFORWARD after its EHLO); a CONNECT or HELO objection answers
// that MAIL and every later one, as Postfix's smtpd_delay_reject does
// for its own restrictions. XCLIENT starts a new SMTP session (a new
// greeting, and the engine gets QUIT_NC then a new CONNECT).

package smtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/mailmux/mailmux/internal/spool"
	"github.com/mailmux/mailmux/pmult"
)

// offer is what the SMTP front can carry out: every edit (it rewrites
// the message it relays), Skip, exact header values, no hidden header.
var offer = pmult.Offer{
	Actions:        pmult.ActModify | pmult.ActQuarantine,
	Skip:           true,
	LeadingSpace:   true,
	NoHiddenHeader: true,
	Front:          "smtp",
	// The client hears about the message only after the final dot, so a
	// verdict about a header, EOH or body chunk can wait for end of
	// message: the engine posts the content to backends that batch
	// without waiting for each answer (as Postfix's NR_HDR/NR_EOH/NR_BODY
	// with the milter front's defer_content).
	NoReply:      pmult.Kinds(pmult.KindHeader, pmult.KindEOH, pmult.KindBody),
	DeferContent: true,
}

type begin struct {
	txn Txn
	err error
}

type rcpt struct {
	path   string // as given, with brackets
	params []string
}

type conn struct {
	srv      *Server
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	log      *slog.Logger
	id       string
	listener string
	ctx      context.Context
	cancel   context.CancelFunc

	bg       sync.WaitGroup // next-hop transactions being dropped
	busy     atomic.Bool    // in a transaction
	draining atomic.Bool
	closed   bool // 221/421 sent: stop

	peer    netip.AddrPort // the TCP (or PROXY) peer
	tls     []string       // TLS macro pairs from a PROXY v2 SSL TLV
	trusted bool
	origin  Origin
	esmtp   bool // EHLO: PIPELINING and the extensions are in effect
	helo    string
	errors  int
	sessN   int // SMTP sessions on this connection (XCLIENT starts one)

	// The engine session.
	eng        *pmult.Session
	engConn    bool        // CONNECT sent in this SMTP session
	engHelo    bool        // HELO sent since the last EHLO/HELO
	sticky     pmult.Reply // an objecting CONNECT/HELO verdict
	stickyHelo bool        // it was HELO's

	// The transaction.
	inMail   bool
	from     string
	fromPar  []string
	rcpts    []rcpt
	discard  bool
	hopExtra bool // the next hop has a recipient the backends refused
	txn      Txn
	msgN     int
	qid      string
	dr       dataReader
	sp       splitter
	msg      message
}

func (c *conn) Drain() {
	c.draining.Store(true)
	if !c.busy.Load() {
		c.nc.SetReadDeadline(time.Now())
	}
}

func (c *conn) Close() { c.nc.Close() }

// release closes the connection and hands its buffers back.
func (c *conn) release() {
	c.nc.Close()
	c.br.Reset(nil)
	c.bw.Reset(nil)
	c.srv.readers.Put(c.br)
	c.srv.writers.Put(c.bw)
}

func (c *conn) Serve(ctx context.Context) {
	s := c.srv
	s.sessions.Add(1)
	defer s.sessions.Add(-1)
	cctx, cancel := context.WithCancel(ctx)
	c.ctx, c.cancel = cctx, cancel
	defer cancel()
	defer c.release()
	defer c.end()
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("internal error, connection dropped", "panic", fmt.Sprint(v))
		}
	}()
	if ap, err := netip.ParseAddrPort(c.nc.RemoteAddr().String()); err == nil {
		c.peer = ap
	}
	if s.Proxy[c.listener] {
		if !c.readProxy() {
			return
		}
	}
	c.trusted = c.peer.IsValid() && s.trusted(c.peer.Addr())
	c.newOrigin()
	if !s.AllowPipelining && (c.br.Buffered() > 0 || pending(c.nc) > 0) {
		// It talked before the greeting: a bot that does not wait for
		// answers (Postfix postscreen's PREGREET, without the pause).
		c.log.Warn("client sent before the greeting: connection closed", "unexpected", truncate(c.peek(), 60))
		c.closeWith("554 5.5.0 Error: SMTP protocol synchronization")
		return
	}
	c.reply("220 " + s.Hostname + " ESMTP mailmux")
	if !c.flush() {
		return
	}
	for !c.closed {
		c.command()
		if !c.closed && c.br.Buffered() == 0 && !c.flush() {
			return
		}
	}
	c.flush()
}

// readProxy reads the PROXY protocol header (v1 or v2) that must open
// every connection of a listener marked for it.
func (c *conn) readProxy() bool {
	h, err := proxyproto.ReadTimeout(c.br, orDefault(c.srv.CommandTimeout, DefaultCommandTimeout))
	if err != nil {
		c.log.Warn("bad or missing PROXY protocol header: connection closed", "listener", c.listener, "err", err)
		return false
	}
	if h.Command.IsLocal() {
		return true // health check of the proxy itself: the peer is the proxy
	}
	if ap, err := netip.ParseAddrPort(h.SourceAddr.String()); err == nil {
		c.peer = ap
		c.log = c.log.With("proxied_client", ap.String())
	}
	// A TLS-terminating proxy (HAProxy send-proxy-v2-ssl) says how the
	// client connected: the backends get it as Postfix's TLS macros.
	if tlvs, err := h.TLVs(); err == nil {
		if ssl, ok := tlvparse.FindSSL(tlvs); ok && ssl.ClientSSL() {
			v, _ := ssl.SSLVersion()
			ci, _ := ssl.SSLCipher()
			c.tls = []string{"{tls_version}", v, "{cipher}", ci}
			if cn, ok := ssl.ClientCN(); ok {
				c.tls = append(c.tls, "{cert_subject}", cn)
				verify := "FAIL"
				if ssl.Verified() {
					verify = "OK"
				}
				c.tls = append(c.tls, "{verify}", verify)
			}
		}
	} else {
		c.log.Warn("PROXY header with malformed TLVs: TLS details ignored", "err", err)
	}
	return true
}

// newOrigin starts the origin from the peer.
func (c *conn) newOrigin() {
	c.origin = Origin{Name: "[UNAVAILABLE]", Proto: "SMTP"}
	if c.peer.IsValid() {
		c.origin.Addr = c.peer.Addr().Unmap().String()
		c.origin.Port = int(c.peer.Port())
		c.origin.Name = "[" + c.origin.Addr + "]"
	}
}

// end closes the engine session and any open next-hop transaction.
func (c *conn) end() {
	c.abortTxn()
	defer c.bg.Wait()
	defer c.cancel() // a next-hop dial still in progress ends now
	if c.eng != nil {
		c.eng.Handle(context.WithoutCancel(c.ctx), &pmult.Event{Kind: pmult.KindQuit})
		c.eng = nil
	}
}

func (c *conn) reply(lines string) {
	if c.bw.Available() < len(lines)+2 {
		// The buffer will be written out now: with a fresh deadline.
		c.nc.SetWriteDeadline(time.Now().Add(orDefault(c.srv.WriteTimeout, DefaultWriteTimeout)))
	}
	c.bw.WriteString(lines)
	c.bw.WriteString("\r\n")
}

func (c *conn) flush() bool {
	c.nc.SetWriteDeadline(time.Now().Add(orDefault(c.srv.WriteTimeout, DefaultWriteTimeout)))
	if err := c.bw.Flush(); err != nil {
		c.log.Info("cannot write to the client, connection closed", "err", err)
		c.closed = true
		return false
	}
	return true
}

// closeWith answers and ends the connection.
func (c *conn) closeWith(text string) {
	c.reply(text)
	c.flush()
	c.closed = true
}

// readLine reads one command line (CRLF, or a bare LF per policy); an
// over-long line is read to its end and reported.
func (c *conn) readLine() (string, error) {
	max := orDefault(c.srv.MaxLine, DefaultMaxLine)
	c.nc.SetReadDeadline(time.Now().Add(orDefault(c.srv.CommandTimeout, DefaultCommandTimeout)))
	if c.draining.Load() && !c.inMail && c.br.Buffered() == 0 {
		// Drain came before this deadline was set: it did not cut the read.
		return "", errDraining
	}
	tooLong := false
	for {
		frag, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			tooLong = true // longer than the buffer: read on to its end
			continue
		}
		if err != nil {
			return "", err
		}
		if tooLong || len(frag) > max+2 {
			return "", errLineTooLong
		}
		line := frag[:len(frag)-1]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		} else if c.srv.BareLF == BareLFReject {
			return string(line), errBareLF
		}
		return string(line), nil
	}
}

var (
	errLineTooLong = errors.New("line too long")
	errBareLF      = errors.New("bare LF")
	errDraining    = errors.New("shutting down")
)

// lastInGroup: commands after which a client must wait for the reply
// (RFC 2920 §3.1), Postfix's SMTPD_CMD_FLAG_LAST ones.
var lastInGroup = map[string]bool{"EHLO": true, "HELO": true, "DATA": true, "VRFY": true, "EXPN": true,
	"NOOP": true, "STARTTLS": true, "AUTH": true, "XCLIENT": true, "ETRN": true, "ATRN": true, "TURN": true}

// command reads and runs one command.
func (c *conn) command() {
	line, err := c.readLine()
	switch {
	case errors.Is(err, errLineTooLong):
		c.log.Warn("command line too long", "limit", orDefault(c.srv.MaxLine, DefaultMaxLine))
		c.badCommand("500 5.5.2 Error: line too long")
		return
	case errors.Is(err, errBareLF):
		c.log.Warn("bare LF in a command: rejected (bare_lf = reject)")
		c.closeWith("550 5.5.2 Error: bare <LF> received")
		return
	case err != nil:
		c.readFailed(err, "command")
		return
	}
	if c.draining.Load() && !c.inMail {
		c.closeWith("421 4.3.2 " + c.srv.Hostname + " Service shutting down, closing connection")
		return
	}
	cmd, err := parseCommand(line)
	if forbidden(line) {
		// Postfix's smtpd_forbidden_commands: a web client or a message
		// sent as commands.
		c.log.Warn("forbidden command: connection closed", "command", truncate(line, 40))
		c.closeWith("221 2.7.0 Error: I can break rules, too. Goodbye.")
		return
	}
	if err != nil {
		c.log.Warn("bad command", "err", err)
		c.badCommand("502 5.5.2 Error: command not recognized")
		return
	}
	if !c.srv.AllowPipelining && c.br.Buffered() > 0 && (!c.esmtp || lastInGroup[cmd.verb]) && cmd.verb != "QUIT" {
		c.log.Warn("improper command pipelining: connection closed", "after", cmd.verb,
			"unexpected", truncate(c.peek(), 60))
		c.closeWith("554 5.5.0 Error: SMTP protocol synchronization")
		return
	}
	switch cmd.verb {
	case "":
		c.badCommand("500 5.5.2 Error: bad syntax")
	case "HELO", "EHLO":
		c.hello(cmd)
	case "XCLIENT":
		c.xclient(cmd)
	case "XFORWARD":
		c.xforward(cmd)
	case "MAIL":
		c.mail(cmd)
	case "RCPT":
		c.rcpt(cmd)
	case "DATA":
		c.data(cmd)
	case "RSET":
		if cmd.arg != "" {
			c.badCommand("501 5.5.4 Syntax: RSET")
			return
		}
		c.resetTxn()
		c.reply("250 2.0.0 Ok")
	case "NOOP":
		c.reply("250 2.0.0 Ok")
	case "QUIT":
		c.closeWith("221 2.0.0 Bye")
	case "VRFY", "EXPN":
		c.reply("502 5.5.1 " + cmd.verb + " command is disabled")
	case "BDAT":
		// CHUNKING is not offered: its octets would be read as commands.
		c.log.Warn("BDAT without CHUNKING: connection closed")
		c.closeWith("554 5.5.1 Error: BDAT without CHUNKING, closing connection")
	default:
		c.unknown(cmd)
	}
}

// forbidden reports the commands Postfix's smtpd_forbidden_commands
// disconnects at: CONNECT, GET, POST, and a header ("Label:").
func forbidden(line string) bool {
	w, _, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
	switch strings.ToUpper(w) {
	case "CONNECT", "GET", "POST":
		return true
	}
	return len(w) > 1 && w[len(w)-1] == ':' && headerName([]byte(w)) == len(w)-1
}

func (c *conn) peek() string {
	b, _ := c.br.Peek(c.br.Buffered())
	return strings.TrimRight(string(b), "\r\n")
}

func (c *conn) readFailed(err error, stage string) {
	var ne net.Error
	switch {
	case c.draining.Load() && !c.inMail:
		c.closeWith("421 4.3.2 " + c.srv.Hostname + " Service shutting down, closing connection")
	case errors.As(err, &ne) && ne.Timeout():
		c.log.Warn("timeout waiting for the client: connection closed", "stage", stage)
		c.closeWith("421 4.4.2 " + c.srv.Hostname + " Error: timeout exceeded")
	default:
		c.log.Info("client went away", "stage", stage, "err", err)
		c.closed = true
	}
}

// badCommand counts an error and answers it; at MaxErrors the session
// ends (Postfix smtpd_hard_error_limit).
func (c *conn) badCommand(text string) {
	c.errors++
	if c.errors >= orDefault(c.srv.MaxErrors, DefaultMaxErrors) {
		c.tooManyErrors()
		return
	}
	c.reply(text)
}

func (c *conn) tooManyErrors() {
	c.log.Warn("too many errors: connection closed", "errors", c.errors)
	c.closeWith("421 4.7.0 " + c.srv.Hostname + " Error: too many errors")
}

func (c *conn) hello(cmd command) {
	dom, _, _ := strings.Cut(cmd.arg, " ")
	if dom == "" {
		c.badCommand("501 5.5.4 Syntax: " + cmd.verb + " hostname")
		return
	}
	c.resetTxn()
	c.helo, c.esmtp, c.engHelo = dom, cmd.verb == "EHLO", false
	c.origin.Helo = dom
	c.origin.Proto = "SMTP"
	if c.esmtp {
		c.origin.Proto = "ESMTP"
	}
	if c.stickyHelo {
		c.sticky, c.stickyHelo = pmult.Reply{}, false // a new HELO is judged anew
	}
	if !c.esmtp {
		c.reply("250 " + c.srv.Hostname)
		return
	}
	lines := []string{c.srv.Hostname, "PIPELINING"}
	if m := c.srv.maxMessage(); m > 0 {
		lines = append(lines, "SIZE "+strconv.FormatInt(m, 10))
	} else {
		lines = append(lines, "SIZE")
	}
	lines = append(lines, "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8")
	if c.trusted {
		lines = append(lines, "XCLIENT "+strings.Join(xclientAttrs, " "), "XFORWARD "+strings.Join(xforwardAttrs, " "))
	}
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("250" + sep + l)
	}
	c.reply(b.String())
}

func (c *conn) xclient(cmd command) {
	if !c.trusted {
		c.log.Warn("XCLIENT from an untrusted client refused")
		c.badCommand("550 5.7.0 Error: insufficient authorization")
		return
	}
	if c.inMail {
		c.badCommand("503 5.5.1 Error: MAIL transaction in progress")
		return
	}
	a, err := attrs(cmd.arg, xclientAttrs)
	if err != nil {
		c.log.Warn("bad XCLIENT", "err", err)
		c.badCommand("501 5.5.4 Bad XCLIENT syntax: " + err.Error())
		return
	}
	c.applyOrigin(a)
	if v, ok := a["LOGIN"]; ok && !unavailable(v) {
		c.origin.Login = v
	}
	// A new SMTP session: the engine's old one ends, HELO is needed again.
	c.endEngineSession()
	c.helo, c.esmtp, c.engHelo = "", false, false
	if v, ok := a["HELO"]; ok && !unavailable(v) {
		c.helo = v
	}
	c.log.Debug("XCLIENT", "client", c.origin.Addr, "name", c.origin.Name)
	c.reply("220 " + c.srv.Hostname + " ESMTP mailmux")
}

func (c *conn) xforward(cmd command) {
	if !c.trusted {
		c.log.Warn("XFORWARD from an untrusted client refused")
		c.badCommand("550 5.7.0 Error: insufficient authorization")
		return
	}
	if c.inMail {
		c.badCommand("503 5.5.1 Error: MAIL transaction in progress")
		return
	}
	a, err := attrs(cmd.arg, xforwardAttrs)
	if err != nil {
		c.log.Warn("bad XFORWARD", "err", err)
		c.badCommand("501 5.5.4 Bad XFORWARD syntax: " + err.Error())
		return
	}
	old := c.origin
	c.applyOrigin(a)
	if v, ok := a["IDENT"]; ok && !unavailable(v) {
		c.origin.Ident = v
	}
	if c.engConn && (old.Addr != c.origin.Addr || old.Name != c.origin.Name || old.Port != c.origin.Port) {
		c.endEngineSession() // another client: a new engine SMTP session
	}
	if v, ok := a["HELO"]; ok && !unavailable(v) && v != c.helo {
		c.helo, c.engHelo = v, false
	}
	c.reply("250 2.0.0 Ok")
}

// applyOrigin takes the XCLIENT/XFORWARD attributes common to both.
func (c *conn) applyOrigin(a map[string]string) {
	o := &c.origin
	if v, ok := a["ADDR"]; ok {
		if unavailable(v) {
			o.Addr = ""
		} else {
			v = strings.TrimPrefix(strings.TrimPrefix(v, "IPV6:"), "ipv6:")
			if ad, err := netip.ParseAddr(v); err == nil {
				o.Addr = ad.String()
			} else {
				o.Addr = v
			}
		}
		if _, named := a["NAME"]; !named {
			o.Name = "[UNAVAILABLE]"
			if o.Addr != "" {
				o.Name = "[" + o.Addr + "]"
			}
		}
	}
	if v, ok := a["NAME"]; ok {
		o.Name = v
		if unavailable(v) {
			o.Name = "[UNAVAILABLE]"
		}
	}
	if v, ok := a["PORT"]; ok {
		o.Port, _ = strconv.Atoi(v)
	}
	if v, ok := a["PROTO"]; ok && !unavailable(v) {
		o.Proto = strings.ToUpper(v)
	}
	if v, ok := a["HELO"]; ok && !unavailable(v) {
		o.Helo = v
	}
}

// endEngineSession ends the engine's SMTP session (QUIT_NC: the
// backends that can serve another one keep their connection).
func (c *conn) endEngineSession() {
	c.resetTxn()
	if c.eng != nil && c.engConn {
		c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindQuitNC})
	}
	c.engConn, c.engHelo, c.sticky, c.stickyHelo = false, false, pmult.Reply{}, false
}

// engine sends the pending CONNECT and HELO; it returns an objecting
// verdict of either (sticky for the SMTP session).
func (c *conn) engine() pmult.Reply {
	if c.sticky.Verdict.Objects() {
		return c.sticky
	}
	if c.eng == nil {
		c.sessN++
		c.eng = c.srv.Engines.NewSession(c.id, c.log)
		o := offer
		o.Listener = c.listener
		c.eng.Open(c.ctx, o, nil)
		c.eng.HoldDecisions() // a message's end is the next hop's reply (endMessage)
	}
	if !c.engConn {
		c.engConn = true
		ev := &pmult.Event{Kind: pmult.KindConnect, Hostname: c.origin.Name, Family: 'U'}
		if c.origin.Addr != "" {
			ev.Address, ev.Port, ev.Family = c.origin.Addr, uint16(c.origin.Port), '4'
			if strings.Contains(c.origin.Addr, ":") {
				ev.Family = '6'
			}
		}
		if ev.Hostname == "[UNAVAILABLE]" && ev.Address != "" {
			ev.Hostname = "[" + ev.Address + "]"
		}
		pairs := []string{"j", c.srv.Hostname, "{daemon_name}", c.listener}
		if la, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
			pairs = append(pairs, "{daemon_addr}", la.IP.String(), "{daemon_port}", strconv.Itoa(la.Port))
		}
		ev.Macros = []pmult.MacroSet{{For: pmult.KindConnect, Pairs: pairs}}
		if r := c.eng.Handle(c.ctx, ev); r.Verdict.Objects() {
			c.sticky = r
			return r
		}
	}
	if !c.engHelo && c.helo != "" {
		c.engHelo = true
		ev := &pmult.Event{Kind: pmult.KindHelo, Arg: c.helo}
		if c.tls != nil {
			ev.Macros = []pmult.MacroSet{{For: pmult.KindHelo, Pairs: c.tls}}
		}
		if r := c.eng.Handle(c.ctx, ev); r.Verdict.Objects() {
			c.sticky, c.stickyHelo = r, true
			return r
		}
	}
	return pmult.Reply{}
}

// verdictText is the client reply for an objecting verdict: the
// backend's own text when it fits the verdict, else Postfix's defaults
// for a milter's verdict.
func (c *conn) verdictText(r pmult.Reply) string {
	switch r.Verdict {
	case pmult.Reject:
		if t := c.fits(r, '5'); t != "" {
			return t
		}
		return "550 5.7.1 Command rejected"
	case pmult.Shutdown:
		if t := c.fits(r, '4'); t != "" && strings.HasPrefix(t, "421") {
			return t
		}
		return "421 4.7.0 " + c.srv.Hostname + " Server closing connection"
	default: // Tempfail
		if t := c.fits(r, '4'); t != "" {
			return t
		}
		return "451 4.7.1 Service unavailable - try again later"
	}
}

// fits returns the reply text of r when it is a valid SMTP reply of
// class (every line "NNN " or "NNN-", the same code), else "".
func (c *conn) fits(r pmult.Reply, class byte) string {
	t := r.Text
	if t == "" {
		return ""
	}
	lines := strings.Split(t, "\r\n")
	for i, l := range lines {
		ok := len(l) >= 3 && l[0] == class && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' && l[2] <= '9' &&
			l[:3] == t[:3] && (len(l) == 3 || l[3] == ' ' || (l[3] == '-' && i < len(lines)-1))
		if !ok {
			c.log.Warn("reply text does not fit the verdict, plain verdict sent", "backend", r.From,
				"verdict", r.Verdict.String(), "text", t)
			return ""
		}
	}
	return t
}

// answerVerdict answers an objecting verdict (Shutdown also closes).
func (c *conn) answerVerdict(r pmult.Reply) {
	t := c.verdictText(r)
	if r.Verdict == pmult.Shutdown || strings.HasPrefix(t, "421") {
		// 421 closes the session, as Postfix does for a milter's 421.
		c.closeWith(t)
		return
	}
	c.reply(t)
}

func (c *conn) mail(cmd command) {
	switch {
	case c.helo == "":
		c.badCommand("503 5.5.1 Error: send HELO/EHLO first")
		return
	case c.inMail:
		c.badCommand("503 5.5.1 Error: nested MAIL command")
		return
	}
	path, params, err := parsePath(cmd.arg, "FROM:")
	if err != nil {
		c.badCommand("501 5.5.4 Syntax: MAIL FROM:<address>")
		return
	}
	if !c.esmtp && len(params) > 0 {
		c.badCommand("555 5.5.4 Unsupported option: " + params[0])
		return
	}
	opts, err := mailOptions(params)
	if err != nil {
		c.badCommand("555 5.5.4 " + err.Error())
		return
	}
	if m := c.srv.maxMessage(); m > 0 && opts.Size > m {
		c.log.Info("declared message size above the limit", "size", opts.Size, "limit", m)
		c.reply("552 5.3.4 Message size exceeds fixed limit")
		return
	}
	// The next hop is dialled while the backends take CONNECT, HELO and
	// MAIL: its transaction is dropped if they object.
	begun := make(chan begin, 1)
	origin := c.origin
	go func() {
		txn, err := c.srv.NextHop.Begin(c.ctx, origin, unbracket(path), opts)
		begun <- begin{txn, err}
	}()
	drop := func() {
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			if b := <-begun; b.txn != nil {
				b.txn.Abort()
			}
		}()
	}
	if r := c.engine(); r.Verdict.Objects() {
		drop()
		c.answerVerdict(r)
		return
	}
	c.msgN++
	c.qid = c.origin.Ident
	if c.qid == "" {
		c.qid = fmt.Sprintf("M%s%d.%d", c.id, c.sessN, c.msgN)
	}
	ev := &pmult.Event{Kind: pmult.KindMail, Args: append([]string{path}, params...)}
	ev.Macros = []pmult.MacroSet{{For: pmult.KindMail, Pairs: c.mailMacros()}}
	r := c.eng.Handle(c.ctx, ev)
	if r.Verdict.Objects() && r.Verdict != pmult.Discard {
		drop()
		c.answerVerdict(r)
		c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindAbort})
		return
	}
	c.busy.Store(true)
	c.inMail, c.from, c.fromPar, c.discard = true, path, params, r.Verdict == pmult.Discard
	if c.discard {
		drop()
	} else {
		b := <-begun
		if b.err != nil {
			t := c.hopReply(b.err)
			c.log.Warn("next hop refused or failed at MAIL", "reply", t, "err", b.err)
			c.reply(t)
			c.resetTxn()
			return
		}
		c.txn = b.txn
	}
	c.reply("250 2.1.0 Ok")
}

func (c *conn) mailMacros() []string {
	p := []string{"i", c.qid}
	if c.origin.Login != "" {
		p = append(p, "{auth_authen}", c.origin.Login, "{auth_type}", "XCLIENT")
	}
	return p
}

func (c *conn) rcpt(cmd command) {
	if !c.inMail {
		c.badCommand("503 5.5.1 Error: need MAIL command")
		return
	}
	path, params, err := parsePath(cmd.arg, "TO:")
	if err != nil || unbracket(path) == "" {
		c.badCommand("501 5.5.4 Syntax: RCPT TO:<address>")
		return
	}
	if !c.esmtp && len(params) > 0 {
		c.badCommand("555 5.5.4 Unsupported option: " + params[0])
		return
	}
	opts, err := rcptOptions(params)
	if err != nil {
		c.badCommand("555 5.5.4 " + err.Error())
		return
	}
	if len(c.rcpts) >= orDefault(c.srv.MaxRecipients, DefaultMaxRecipients) {
		c.log.Info("too many recipients", "limit", orDefault(c.srv.MaxRecipients, DefaultMaxRecipients))
		c.reply("452 4.5.3 Error: too many recipients")
		return
	}
	// The next hop gets the recipient while the backends do; one they
	// refuse but the next hop took is dropped at end of data, when the
	// next-hop envelope is replayed without it.
	var hop chan error
	if c.txn != nil {
		hop = make(chan error, 1)
		txn := c.txn
		go func() { hop <- txn.Rcpt(c.ctx, unbracket(path), opts) }()
	}
	r := c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindRcpt, Args: append([]string{path}, params...),
		Macros: []pmult.MacroSet{{For: pmult.KindRcpt, Pairs: []string{"i", c.qid}}}})
	var herr error
	if hop != nil {
		herr = <-hop
	}
	if r.Verdict == pmult.Discard {
		c.discard = true
		c.abortTxn()
	} else if r.Verdict.Objects() {
		c.hopExtra = c.hopExtra || hop != nil && herr == nil
		c.answerVerdict(r)
		return
	}
	if herr != nil && !c.discard {
		t := c.hopReply(herr)
		c.log.Info("next hop refused a recipient", "rcpt", path, "reply", t)
		c.reply(t)
		return
	}
	c.rcpts = append(c.rcpts, rcpt{path: path, params: params})
	c.reply("250 2.1.5 Ok")
}

// resetTxn ends the transaction (RSET, HELO, a failure).
func (c *conn) resetTxn() {
	if c.inMail && c.eng != nil {
		c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindAbort})
	}
	c.abortTxn()
	c.inMail, c.from, c.fromPar, c.rcpts, c.discard, c.hopExtra = false, "", nil, c.rcpts[:0], false, false
	c.msg.reset()
	c.busy.Store(false)
}

func (c *conn) abortTxn() {
	if c.txn != nil {
		if err := c.txn.Abort(); err != nil {
			c.log.Debug("next hop abort", "err", err)
		}
		c.txn = nil
	}
}

// unknown runs a command the front does not implement: the backends get
// it as an Unknown event; the client gets their objection, else 502.
func (c *conn) unknown(cmd command) {
	if r := c.engine(); r.Verdict.Objects() {
		c.answerVerdict(r)
		return
	}
	if r := c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindUnknown, Arg: cmd.line}); r.Verdict.Objects() &&
		r.Verdict != pmult.Discard {
		// Refused: an error like any other (badCommand), at the limit 421.
		c.errors++
		if c.errors >= orDefault(c.srv.MaxErrors, DefaultMaxErrors) {
			c.tooManyErrors()
			return
		}
		c.answerVerdict(r)
		return
	}
	c.log.Info("unrecognised command", "command", truncate(cmd.verb, 20))
	c.badCommand("502 5.5.2 Error: command not recognized")
}

// message is the message being received: its headers (the edit rules of
// pmult.HeaderList, Postfix's) and body (internal/spool).
type message struct {
	headers pmult.HeaderList
	body    *spool.Spool
	size    int64
	chunk   []byte // body bytes not yet kept nor given to the engine
	hdr     []byte // the header block as relayed (reused)
	out     []byte // a small body as relayed (reused)
}

func (m *message) reset() {
	m.headers.Fields = m.headers.Fields[:0]
	if m.body != nil {
		m.body.Reset()
		m.body = nil
	}
	m.size = 0
	m.chunk = m.chunk[:0]
}
