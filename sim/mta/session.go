// session.go: the SMTP-script front. A Session is one simulated SMTP
// session: it takes script lines (SMTP commands, message data, mtasim's
// administrative commands), keeps the SMTP state and the macros, answers
// like an MTA, and hands every stage to the filter back (filter.go).
//
// Tunables (Config) and defaults:
//
//	Hostname     "localhost"  the j macro and the greeting
//	BodyChunk    65535        bytes per body event
//	RequireHelo  false        MAIL before HELO/EHLO gets 503 (mtasim does)
//	Batch        false        Exim -bS semantics: HELO/EHLO act as RSET;
//	                          VRFY, EXPN, ETRN, ATRN, HELP as NOOP
//	Macros       Postfix's default per-stage lists (macros.PostfixDefaults)

package mtasim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// Config configures sessions. It is shared by the sessions of a run and
// must not change while they run.
type Config struct {
	Hostname string
	// Backend is the filter (nil: no filter, plain MTA simulation). Any
	// pmult.Backend fits: a milter (Port.Backend) or, later, a MeTA1
	// pmilter simulator.
	Backend pmult.Backend
	// FilterName names the filter in the greeting.
	FilterName string
	Offer      pmult.Offer // zero: MTAOffer
	// OnFailure: 'T' tempfail, 'R' reject, 0 a failing filter is fatal.
	OnFailure byte
	// Macros are the per-stage macro lists (nil entries: Postfix's
	// defaults). A filter that asks for its own lists gets those.
	Macros [macros.NumStages][]string
	// Defines are macros defined from the start (-D), name=value.
	Defines []string
	// Sender fixes the client socket (--sender-socket); \S is then refused.
	Sender      *Sender
	RequireHelo bool
	Batch       bool
	BodyChunk   int
	// DaemonAddr is {daemon_addr} ("127.0.0.1" when empty).
	DaemonAddr string
	Log        *slog.Logger
	// OnStage, when set, gets the time each filter event took.
	OnStage func(pmult.Kind, time.Duration)
	// OnMessage, when set, gets every completed message.
	OnMessage func(*Result)
}

// ExpectError is an \E expectation that did not hold.
type ExpectError struct {
	Want string
	Got  Reply
	Line string // the command whose reply it was
}

func (e *ExpectError) Error() string {
	return fmt.Sprintf("expected %s, but got %03d (reply to %q: %s)", e.Want, e.Got.Code, e.Line,
		strings.ReplaceAll(e.Got.String(), "\r\n", " / "))
}

// FilterError is a filter that could not be reached or broke mid-session.
type FilterError struct {
	Name string
	Err  error
}

func (e *FilterError) Error() string { return fmt.Sprintf("milter %s: %v", e.Name, e.Err) }
func (e *FilterError) Unwrap() error { return e.Err }

// macro is one defined macro.
type macro struct{ name, value string }

// Session is one simulated SMTP session. Its methods must be called from
// one goroutine.
type Session struct {
	cfg *Config
	log *slog.Logger

	defs   []macro // user-defined macros (\D, -D), normalised names, in order
	sender Sender
	fixed  bool // sender given on the command line
	helo   string
	quit   bool

	// filter back
	filter    pmult.BackendSession
	caps      pmult.Caps
	connected bool   // CONNECT sent (or no filter)
	connDone  bool   // the filter accepted the connection: no more events
	sticky    *Reply // connection-level objection: answers every command

	// transaction
	msg      *Message
	nmsg     int
	queueID  string
	rejected int // recipients rejected in this transaction
	rcpt     Rcpt
	msgDone  bool          // the filter is done with this message (accept/discard)
	msgVerd  pmult.Verdict // message-level verdict so far
	msgStage pmult.Kind
	sentMsg  bool // events of this message reached the filter (abort needed)
	data     bool // reading message data
	dataBuf  bytes.Buffer
	dataWant string // \E inside data: expectation for the end-of-data reply
	expect   string
}

// NewSession starts a session: it connects to the filter and negotiates
// (the CONNECT event itself waits for \S or the first SMTP command, as in
// mailfromd's mtasim). A filter that cannot be reached gives a
// *FilterError.
func NewSession(ctx context.Context, cfg *Config) (*Session, error) {
	s := &Session{cfg: cfg, log: cfg.Log, sender: Sender{Family: 'U', Host: "localhost"}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Sender != nil {
		s.sender, s.fixed = *cfg.Sender, true
	}
	for _, d := range cfg.Defines {
		n, v, ok := strings.Cut(d, "=")
		if !ok || !validMacroName(n) {
			return nil, fmt.Errorf("define %q: want name=value", d)
		}
		s.define(n, v)
	}
	if cfg.Backend == nil {
		s.connected = true
		return s, nil
	}
	offer := cfg.Offer
	if offer == (pmult.Offer{}) {
		offer = MTAOffer
	}
	fs, err := cfg.Backend.Open(ctx, pmult.OpenInfo{Offer: offer, Log: s.log})
	if err != nil {
		return nil, &FilterError{Name: s.filterName(), Err: err}
	}
	s.filter, s.caps = fs, fs.Caps()
	return s, nil
}

func (s *Session) filterName() string {
	if s.cfg.FilterName != "" {
		return s.cfg.FilterName
	}
	if s.cfg.Backend != nil {
		return s.cfg.Backend.Name()
	}
	return ""
}

// Greeting is the reply the session opens with.
func (s *Session) Greeting() Reply {
	r := R(220, s.hostname()+" mtasim (mailmux) ready")
	if s.filter != nil {
		r.Lines = append(r.Lines, "Connected to milter "+s.filterName())
	}
	return r
}

func (s *Session) hostname() string {
	if s.cfg.Hostname != "" {
		return s.cfg.Hostname
	}
	return "localhost"
}

// Done reports whether the session ended (QUIT, or a 421 from the filter).
func (s *Session) Done() bool { return s.quit }

// InData reports whether the session is reading message data.
func (s *Session) InData() bool { return s.data }

// Close ends the session: an open transaction is aborted and the filter
// gets QUIT. It is safe to call more than once.
func (s *Session) Close(ctx context.Context) error {
	if s.filter == nil {
		return nil
	}
	if s.msg != nil {
		s.abort(ctx)
	}
	f := s.filter
	s.filter = nil
	return f.Close()
}

// Input handles one script line (without its line end). It returns the
// replies to print (none for data lines and most administrative
// commands). The error is an *ExpectError, a *FilterError (fatal), or a
// script syntax error (wrapping ErrSyntax; the 502 reply is returned too).
func (s *Session) Input(ctx context.Context, raw string) ([]Reply, error) {
	raw = strings.TrimSuffix(strings.TrimSuffix(raw, "\n"), "\r")
	if s.quit {
		return nil, nil
	}
	if s.data {
		return s.dataLine(ctx, raw)
	}
	if strings.TrimSpace(raw) == "" || strings.HasPrefix(raw, "#") {
		return nil, nil
	}
	l, err := ParseLine(raw)
	if err != nil {
		return []Reply{R(502, err.Error())}, err
	}
	if l.Admin != 0 {
		return s.admin(ctx, l)
	}
	r, err := s.command(ctx, l)
	out := []Reply{r}
	if err != nil {
		return out, err
	}
	return out, s.check(r, raw)
}

// check applies a pending expectation to an SMTP reply.
func (s *Session) check(r Reply, line string) error {
	want := s.expect
	s.expect = ""
	if want == "" || r.Matches(want) {
		return nil
	}
	return &ExpectError{Want: want, Got: r, Line: line}
}

func (s *Session) admin(ctx context.Context, l Line) ([]Reply, error) {
	switch l.Admin {
	case 'D':
		for _, a := range l.Args {
			n, v, _ := strings.Cut(a, "=")
			s.define(n, v)
		}
	case 'U':
		for _, a := range l.Args {
			s.undefine(a)
		}
	case 'L':
		return s.list(l.Args), nil
	case 'S':
		if s.fixed || s.connected && s.cfg.Backend != nil {
			err := fmt.Errorf("%w: \\S only before the first SMTP command and without --sender-socket", ErrSyntax)
			return []Reply{R(502, err.Error())}, err
		}
		snd, _ := ParseSender(l.Args)
		s.sender = snd
		if err := s.connect(ctx); err != nil {
			return []Reply{replyFilterFailed}, err
		}
	case 'E':
		s.expect, _ = expectCode(l.Args)
	case 'W':
		d, _ := waitDuration(l.Args)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, nil
}

func (s *Session) define(name, value string) {
	n := macros.Normalize(name)
	for i := range s.defs {
		if s.defs[i].name == n {
			s.defs[i].value = value
			return
		}
	}
	s.defs = append(s.defs, macro{n, value})
}

func (s *Session) undefine(name string) {
	n := macros.Normalize(name)
	for i := range s.defs {
		if s.defs[i].name == n {
			s.defs = append(s.defs[:i], s.defs[i+1:]...)
			return
		}
	}
}

func (s *Session) defined(n string) (string, bool) {
	for _, d := range s.defs {
		if d.name == n {
			return d.value, true
		}
	}
	return "", false
}

// list answers \L as mtasim does: "220-name=value" lines, nothing when
// there is nothing to list.
func (s *Session) list(names []string) []Reply {
	r := Reply{Code: 220}
	if len(names) == 0 {
		for _, d := range s.defs {
			r.Lines = append(r.Lines, d.name+"="+d.value)
		}
	} else {
		for _, n := range names {
			if v, ok := s.defined(macros.Normalize(n)); ok {
				r.Lines = append(r.Lines, macros.Normalize(n)+"="+v)
			}
		}
	}
	if len(r.Lines) == 0 {
		return nil
	}
	return []Reply{r}
}

// helpReply lists the commands.
func (s *Session) helpReply() Reply {
	r := Reply{Code: 250, Lines: []string{"mtasim (mailmux); supported SMTP commands:",
		" EHLO", " HELO", " MAIL", " RCPT", " DATA", " RSET", " NOOP", " VRFY", " HELP", " QUIT",
		"Supported administrative commands:",
		` \Dname=value [name=value...]       Define Sendmail macros`,
		` \Ecode                             Expect given SMTP reply code`,
		` \L[name] [name...]                 List macros`,
		` \Uname [name...]                   Undefine Sendmail macros`}}
	if !s.fixed && !(s.connected && s.cfg.Backend != nil) {
		r.Lines = append(r.Lines, ` \Sfamily hostname address [port]   Define sender socket address`)
	}
	r.Lines = append(r.Lines, ` \Wseconds[.fraq]                   Wait given number of seconds`,
		` \#text                             Comment`, "End of help output")
	return r
}

// command handles one SMTP command.
func (s *Session) command(ctx context.Context, l Line) (Reply, error) {
	verb := l.Verb
	if s.cfg.Batch {
		switch verb {
		case "HELO", "EHLO":
			verb = "RSET"
		case "VRFY", "EXPN", "ETRN", "ATRN", "HELP":
			verb = "NOOP"
		}
	}
	switch verb {
	case "HELP":
		return s.helpReply(), nil
	case "NOOP":
		return replyNoop, nil
	case "QUIT":
		s.quit = true
		err := s.Close(ctx)
		if err != nil {
			s.log.Debug("filter close", "err", err)
		}
		return replyQuit, nil
	}
	if err := s.connect(ctx); err != nil {
		return replyFilterFailed, err
	}
	if s.sticky != nil && verb != "RSET" {
		return *s.sticky, nil
	}
	switch verb {
	case "HELO", "EHLO":
		return s.heloCmd(ctx, verb, l.Arg)
	case "MAIL":
		return s.mailCmd(ctx, l.Arg)
	case "RCPT":
		return s.rcptCmd(ctx, l.Arg)
	case "DATA":
		return s.dataCmd(ctx, l.Arg)
	case "RSET":
		if s.msg != nil {
			s.abort(ctx)
		}
		return replyReset, nil
	case "VRFY":
		return replyVrfy, nil
	}
	// Anything else (EXPN, ETRN, ATRN, unknown verbs) goes to the filter as
	// an unknown command, as Sendmail and Postfix pass it on.
	rep, err := s.send(ctx, &pmult.Event{Kind: pmult.KindUnknown, Arg: l.Raw})
	if err != nil {
		return s.failReply(err)
	}
	if r, stop := s.objection(rep, pmult.KindUnknown); stop {
		return r, nil
	}
	return replyUnknown, nil
}

func (s *Session) heloCmd(ctx context.Context, verb, arg string) (Reply, error) {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return R(501, "5.0.0 "+verb+" requires domain address"), nil
	}
	if s.msg != nil {
		s.abort(ctx)
	}
	rep, err := s.send(ctx, &pmult.Event{Kind: pmult.KindHelo, Arg: arg})
	if err != nil {
		return s.failReply(err)
	}
	if r, stop := s.objection(rep, pmult.KindHelo); stop {
		return r, nil
	}
	s.helo = arg
	if verb == "EHLO" {
		return replyEhlo, nil
	}
	return replyHelo, nil
}

// pathArg splits "FROM:<a@b> SIZE=10" after the keyword into the address
// and the ESMTP parameters.
func pathArg(arg, keyword string) (string, []string, bool) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return "", nil, false
	}
	f := strings.Fields(arg[len(keyword):])
	if len(f) == 0 {
		return "", nil, false
	}
	return f[0], f[1:], true
}

func (s *Session) mailCmd(ctx context.Context, arg string) (Reply, error) {
	if s.cfg.RequireHelo && s.helo == "" {
		return replyNeedHelo, nil
	}
	if s.msg != nil {
		return replyNestedMail, nil
	}
	addr, params, ok := pathArg(arg, "FROM:")
	if !ok {
		return R(501, "5.5.4 Syntax: MAIL FROM:<address>"), nil
	}
	s.nmsg++
	s.queueID = fmt.Sprintf("%X%05X", time.Now().UnixNano()&0xFFFFF, s.nmsg)
	s.msg = &Message{From: addr, FromArgs: params}
	s.rejected, s.msgDone, s.msgVerd, s.msgStage, s.sentMsg = 0, false, pmult.Continue, pmult.KindEOM, false
	rep, err := s.send(ctx, &pmult.Event{Kind: pmult.KindMail, Args: append([]string{addr}, params...)})
	if err != nil {
		return s.failReply(err)
	}
	if r, stop := s.objection(rep, pmult.KindMail); stop {
		s.abort(ctx)
		return r, nil
	}
	return replySenderOK, nil
}

func (s *Session) rcptCmd(ctx context.Context, arg string) (Reply, error) {
	if s.msg == nil {
		return replyNeedMail, nil
	}
	addr, params, ok := pathArg(arg, "TO:")
	if !ok {
		return R(501, "5.5.4 Syntax: RCPT TO:<address>"), nil
	}
	s.rcpt = Rcpt{Addr: addr, Args: params}
	rep, err := s.send(ctx, &pmult.Event{Kind: pmult.KindRcpt, Args: append([]string{addr}, params...)})
	if err != nil {
		return s.failReply(err)
	}
	if r, stop := s.objection(rep, pmult.KindRcpt); stop {
		s.rejected++
		return r, nil
	}
	s.msg.Rcpts = append(s.msg.Rcpts, s.rcpt)
	return replyRcptOK, nil
}

func (s *Session) dataCmd(ctx context.Context, arg string) (Reply, error) {
	switch {
	case s.msg == nil:
		return replyNeedMail, nil
	case len(s.msg.Rcpts) == 0 && s.rejected > 0:
		return replyNoValidRcpts, nil
	case len(s.msg.Rcpts) == 0:
		return replyNeedRcpt, nil
	case strings.TrimSpace(arg) != "":
		return R(501, "5.5.4 Syntax: DATA"), nil
	}
	rep, err := s.send(ctx, &pmult.Event{Kind: pmult.KindData})
	if err != nil {
		return s.failReply(err)
	}
	if r, stop := s.objection(rep, pmult.KindData); stop {
		s.abort(ctx)
		return r, nil
	}
	s.data = true
	s.dataBuf.Reset()
	s.dataWant = ""
	return replyData, nil
}

// dataLine takes one line of message data.
func (s *Session) dataLine(ctx context.Context, raw string) ([]Reply, error) {
	if raw == "." {
		s.data = false
		r, err := s.endData(ctx)
		if err != nil {
			return []Reply{r}, err
		}
		s.expect = s.dataWant
		return []Reply{r}, s.check(r, ".")
	}
	if len(raw) >= 3 && (raw[1] == 'E' || raw[1] == 'e') && raw[0] == '\\' {
		// "\E code" inside the data: the expectation for the end-of-data
		// reply (mailfromd's mtasim also takes \E lines out of the data).
		if code, err := expectCode(strings.Fields(raw[2:])); err == nil {
			s.dataWant = code
			return nil, nil
		}
	}
	raw = strings.TrimPrefix(raw, ".")
	s.dataBuf.WriteString(raw)
	s.dataBuf.WriteString("\r\n")
	return nil, nil
}

// SendMessage runs a whole message through the session after DATA was
// accepted: content is RFC 5322 text without dot stuffing. It returns the
// end-of-data reply.
func (s *Session) SendMessage(ctx context.Context, content []byte) (Reply, error) {
	if !s.data {
		return Reply{}, errors.New("SendMessage outside DATA")
	}
	s.data = false
	s.dataBuf.Reset()
	s.dataBuf.Write(content)
	return s.endData(ctx)
}

// endData runs the message through the filter and ends the transaction.
func (s *Session) endData(ctx context.Context) (Reply, error) {
	m := s.msg
	m.Headers, m.Body = ParseContent(s.dataBuf.Bytes())
	s.dataBuf.Reset()
	res := &Result{N: s.nmsg, Original: m, Stage: pmult.KindEOM}
	reply, err := s.content(ctx, m, res)
	if err != nil {
		return reply, err
	}
	res.Reply = reply
	if res.Final == nil {
		res.Final = m.Clone()
	}
	s.msg = nil
	if s.cfg.OnMessage != nil {
		s.cfg.OnMessage(res)
	}
	return reply, nil
}

// content sends headers, end of headers, body and end of message, and
// returns the end-of-data reply.
func (s *Session) content(ctx context.Context, m *Message, res *Result) (Reply, error) {
	finish := func(rep pmult.Reply, k pmult.Kind) (Reply, bool) {
		r, stop := s.objection(rep, k)
		if stop {
			res.Verdict, res.Stage = rep.Verdict, k
			s.abort(ctx)
		}
		return r, stop
	}
	skipHeaders := false
	for _, h := range m.Headers {
		if skipHeaders || s.msgDone {
			break
		}
		rep, err := s.send(ctx, &pmult.Event{Kind: pmult.KindHeader, Name: h.Name, Value: h.Value})
		if err != nil {
			return s.failReply(err)
		}
		if rep.Verdict == pmult.Skip {
			skipHeaders = true
		}
		if r, stop := finish(rep, pmult.KindHeader); stop {
			return r, nil
		}
	}
	rep, err := s.send(ctx, &pmult.Event{Kind: pmult.KindEOH})
	if err != nil {
		return s.failReply(err)
	}
	if r, stop := finish(rep, pmult.KindEOH); stop {
		return r, nil
	}
	chunk := s.cfg.BodyChunk
	if chunk <= 0 {
		chunk = 65535
	}
	for b := m.Body; len(b) > 0 && !s.msgDone; {
		n := min(chunk, len(b))
		rep, err := s.send(ctx, &pmult.Event{Kind: pmult.KindBody, Chunk: b[:n]})
		if err != nil {
			return s.failReply(err)
		}
		b = b[n:]
		if rep.Verdict == pmult.Skip {
			break
		}
		if r, stop := finish(rep, pmult.KindBody); stop {
			return r, nil
		}
	}
	if s.msgDone {
		res.Verdict, res.Stage = s.msgVerd, s.msgStage
		return replyAccepted, nil
	}
	rep, err = s.send(ctx, &pmult.Event{Kind: pmult.KindEOM})
	if err != nil {
		return s.failReply(err)
	}
	res.Verdict, res.Edits = rep.Verdict, rep.Edits
	s.sentMsg = false // no ABORT after an answered end of message
	if r, stop := s.objection(rep, pmult.KindEOM); stop {
		return r, nil
	}
	if rep.Verdict == pmult.Discard || s.msgVerd == pmult.Discard {
		res.Verdict = pmult.Discard
	}
	res.Final = m.Clone()
	res.Quarantine = res.Final.Apply(rep.Edits)
	return replyAccepted, nil
}

// ValidIP reports whether a is an IPv4 (or, with v6, IPv6) address.
func validIP(a string, v6 bool) bool {
	ip, err := netip.ParseAddr(a)
	return err == nil && (v6 || ip.Is4() || ip.Is4In6())
}
