// client.go: the backend milter client.
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
// breaker.go.

package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mailmux/mailmux/internal/sockopt"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// Config configures one backend milter.
type Config struct {
	Name    string
	Network string // "tcp", "tcp4", "tcp6", "unix"
	Address string // host:port or socket path
	// ConnectTimeout bounds connect and negotiation together (the
	// engine's OpenInfo.Deadline ends them sooner when it comes first).
	ConnectTimeout time.Duration
	ReadTimeout    time.Duration
	WriteTimeout   time.Duration
	EOMTimeout     time.Duration
	MaxVersion     uint32
	MaxPacket      int
	// MaxBody limits a replacement body (the SMFIR_REPLBODY packets of
	// one end-of-message reply together), in bytes. Over it the session
	// fails (the engine applies the backend's failure action) and its
	// connection is closed, so no more of it is read.
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
	// Log receives the breaker's down and up lines (nil: none).
	Log *slog.Logger
}

// Backend is a remote milter. It is safe for concurrent use.
type Backend struct {
	cfg Config

	mu      sync.Mutex
	idle    []*session // reusable connections, most recent last
	retired bool       // Retire was called: keep nothing for reuse

	brk breaker // see breaker.go
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
	return &Backend{cfg: cfg, brk: breaker{name: cfg.Name, log: cfg.Log}}
}

// Name implements pmult.Backend.
func (b *Backend) Name() string { return b.cfg.Name }

func (b *Backend) where() string { return b.cfg.Network + ":" + b.cfg.Address }

// Open implements pmult.Backend: connect and negotiate.
func (b *Backend) Open(ctx context.Context, info pmult.OpenInfo) (pmult.BackendSession, error) {
	if s := b.reuse(info.Offer); s != nil {
		s.progress = info.Progress
		if s.progress == nil {
			s.progress = func() {}
		}
		conn := s.conn
		s.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
		return s, nil
	}
	// One budget for connect and negotiation: connect_timeout, or the
	// engine's open deadline when that comes first.
	deadline := time.Now().Add(b.cfg.ConnectTimeout)
	if !info.Deadline.IsZero() && info.Deadline.Before(deadline) {
		deadline = info.Deadline
	}
	a, err := b.brk.admit(ctx, deadline, b.where())
	if err != nil {
		return nil, err
	}
	s, err := b.open(ctx, info, deadline)
	// The MTA session went away (ctx cancelled, not timed out): not the
	// backend's fault, and no sign that it works either.
	abandoned := err != nil && errors.Is(ctx.Err(), context.Canceled)
	b.brk.done(a, err, abandoned)
	if abandoned {
		return nil, fmt.Errorf("%s: open abandoned: %w", b.where(), ctx.Err())
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (b *Backend) open(ctx context.Context, info pmult.OpenInfo, deadline time.Time) (*session, error) {
	// No TCP keep-alive: sessions are bounded by their own timeouts, and
	// the four setsockopt calls per connection show in the profile.
	budget := time.Until(deadline)
	d := net.Dialer{Deadline: deadline, KeepAlive: -1}
	conn, err := d.DialContext(ctx, b.cfg.Network, b.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", b.where(), err)
	}
	s := &session{b: b, conn: conn, r: mp.NewReader(conn, b.cfg.MaxPacket), progress: info.Progress, offer: info.Offer}
	if s.progress == nil {
		s.progress = func() {}
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

type session struct {
	b        *Backend
	conn     net.Conn
	r        *mp.Reader
	wbuf     []byte
	stop     func() bool
	progress func()

	version  uint32
	actions  mp.Action
	proto    mp.Protocol
	caps     pmult.Caps
	leadspc  bool // the filter wants and sends exact header values
	maxChunk int

	quarantine []pmult.Edit // QUARANTINE received before EOM (Postfix allows it)
	bodyRest   []byte       // the unsent rest of an oversize body chunk

	offer  pmult.Offer // what the session was negotiated for (reuse key)
	broken bool        // an error was seen: never reuse
	inMsg  bool        // MAIL sent, no EOM or ABORT since
	// endOK: the last command was an EOM answered CONTINUE. That is where
	// libmilter accepts QUIT_NC (its state ENDM); anywhere else (after
	// HELO, an ABORT, a rejected or accepted message) it ignores QUIT_NC
	// and then the next session's CONNECT, so the connection is not reused.
	endOK  bool
	idleAt time.Time
}

// reuse returns an idle connection negotiated for the same offer, or nil.
func (b *Backend) reuse(o pmult.Offer) *session {
	if !b.cfg.Reuse {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.idle) - 1; i >= 0; i-- {
		s := b.idle[i]
		if s.offer != o {
			continue
		}
		b.idle = append(b.idle[:i], b.idle[i+1:]...)
		if time.Since(s.idleAt) > b.cfg.IdleTimeout || !s.alive() {
			s.conn.Close()
			continue
		}
		return s
	}
	return nil
}

// alive checks, without blocking, that the filter has not closed an idle
// connection (it must have sent nothing).
func (s *session) alive() bool {
	if s.r.Buffered() > 0 {
		return false
	}
	s.conn.SetReadDeadline(time.Now())
	var b [1]byte
	_, err := s.conn.Read(b[:])
	s.conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// release keeps an ended session for reuse if it can be; it reports
// whether it did.
func (b *Backend) release(s *session) bool {
	if !b.cfg.Reuse || s.broken || s.inMsg || s.version < 6 || !s.endOK {
		return false
	}
	b.mu.Lock()
	retired := b.retired
	b.mu.Unlock()
	if retired {
		return false
	}
	s.conn.SetWriteDeadline(time.Now().Add(b.cfg.WriteTimeout))
	if _, err := s.conn.Write(mp.AppendPacket(nil, mp.CmdQuitNC)); err != nil {
		return false
	}
	s.conn.SetWriteDeadline(time.Time{})
	s.quarantine = nil
	s.idleAt = time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.retired { // retired while QUIT_NC was being written
		go s.conn.Close()
		return true
	}
	if len(b.idle) >= b.cfg.MaxIdle {
		old := b.idle[0]
		b.idle = b.idle[1:]
		go old.conn.Close()
	}
	b.idle = append(b.idle, s)
	return true
}

// Retire implements pmult.Retirer: it closes every idle connection kept
// for reuse, and sessions that end later close theirs instead of keeping
// them (a reload replaced the engine this backend belongs to; nothing
// would ever reuse them).
func (b *Backend) Retire() {
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.retired = true
	b.mu.Unlock()
	for _, s := range idle {
		s.conn.Write(mp.AppendPacket(nil, mp.CmdQuit))
		s.conn.Close()
	}
}

var stageKind = map[mp.Stage]pmult.Kind{
	mp.StageConnect: pmult.KindConnect, mp.StageHelo: pmult.KindHelo, mp.StageEnvFrom: pmult.KindMail,
	mp.StageEnvRcpt: pmult.KindRcpt, mp.StageData: pmult.KindData, mp.StageEOM: pmult.KindEOM,
	mp.StageEOH: pmult.KindEOH,
}

// cmdOf maps event kinds to command letters.
var cmdOf = [...]byte{
	pmult.KindConnect: mp.CmdConnect, pmult.KindHelo: mp.CmdHelo, pmult.KindMail: mp.CmdMail,
	pmult.KindRcpt: mp.CmdRcpt, pmult.KindData: mp.CmdData, pmult.KindHeader: mp.CmdHeader,
	pmult.KindEOH: mp.CmdEOH, pmult.KindBody: mp.CmdBody, pmult.KindEOM: mp.CmdEOB,
	pmult.KindAbort: mp.CmdAbort, pmult.KindQuit: mp.CmdQuit, pmult.KindQuitNC: mp.CmdQuitNC,
	pmult.KindUnknown: mp.CmdUnknown,
}

// Offer builds the OPTNEG a proxy sends a backend for the MTA's offer
// (milter-protocol.md §10): all NO* and NR_* bits and SKIP (the proxy
// emulates them), RCPT_REJ and HDR_LEADSPC only if the MTA has them, and
// the MTA's actions.
func Offer(o pmult.Offer, version uint32) mp.OptNeg {
	p := mp.ProtoNoEventMask | mp.ProtoNoReplyMask | mp.ProtoSkip
	if o.RejectedRcpts {
		p |= mp.ProtoRcptRej
	}
	if o.LeadingSpace {
		p |= mp.ProtoHdrLeadSpc
	}
	a := mp.Action(o.Actions) &^ mp.ActSetSymList
	if o.SymList {
		a |= mp.ActSetSymList
	}
	return mp.OptNeg{
		Version:  version,
		Actions:  a & mp.ActionMaskForVersion(version),
		Protocol: p & mp.ProtocolMaskForVersion(version),
	}
}

func (s *session) negotiate(o pmult.Offer, deadline time.Time) error {
	offer := Offer(o, s.b.cfg.MaxVersion)
	s.conn.SetDeadline(deadline)
	defer s.conn.SetDeadline(time.Time{})
	if err := s.write(mp.AppendPacket(s.wbuf[:0], mp.CmdOptNeg, offer.Append(nil))); err != nil {
		return fmt.Errorf("send SMFIC_OPTNEG: %w", err)
	}
	p, err := s.r.ReadPacket()
	if err != nil {
		return fmt.Errorf("read SMFIC_OPTNEG reply: %w", err)
	}
	if p.Code != mp.RespOptNeg {
		return fmt.Errorf("protocol violation: answered SMFIC_OPTNEG with %s", mp.RespName(p.Code))
	}
	rep, err := mp.ParseOptNeg(p.Data)
	if err != nil {
		return err
	}
	if rep.Version > offer.Version && offer.Version == mp.MaxVersion {
		// A filter announcing a version above 6 (libmilter answers the
		// MTA's version or less): use 6, as Sendmail does.
		rep.Version = mp.MaxVersion
	}
	if err := mp.CheckReply(offer, rep); err != nil {
		return fmt.Errorf("protocol violation: %w", err)
	}
	s.version = rep.Version
	// A filter that chose an older version gets that version's semantics
	// whatever bits it echoed.
	s.actions = rep.Actions & mp.ActionMaskForVersion(s.version)
	s.proto = rep.Protocol & (mp.ProtocolMaskForVersion(s.version) | mp.ProtoInternal)
	if s.version <= 2 {
		s.proto |= mp.ProtoNoUnknown
	}
	if s.version <= 3 {
		s.proto |= mp.ProtoNoData
	}
	s.leadspc = s.proto&mp.ProtoHdrLeadSpc != 0
	s.maxChunk = mp.MDS64K
	c := pmult.Caps{
		Actions:       pmult.Actions(s.actions) &^ pmult.ActSetSymList,
		Skip:          s.proto&mp.ProtoSkip != 0,
		RejectedRcpts: s.proto&mp.ProtoRcptRej != 0,
		QuitNC:        s.version >= 6,
	}
	for k := pmult.KindConnect; k <= pmult.KindUnknown; k++ {
		cmd := cmdOf[k]
		if !s.proto.Wants(cmd) {
			c.NoEvent = c.NoEvent.With(k)
		}
		if !s.proto.Replies(cmd) {
			c.NoReply = c.NoReply.With(k)
		}
	}
	for _, sl := range rep.SymLists {
		if k, ok := stageKind[sl.Stage]; ok {
			if c.Macros == nil {
				c.Macros = map[pmult.Kind]string{}
			}
			c.Macros[k] = sl.Macros
		}
	}
	s.caps = c
	return nil
}

func (s *session) Caps() pmult.Caps { return s.caps }

func (s *session) write(b []byte) error {
	s.conn.SetWriteDeadline(time.Now().Add(s.b.cfg.WriteTimeout))
	_, err := s.conn.Write(b)
	s.wbuf = b[:0]
	return err
}

// Send implements pmult.BackendSession.
func (s *session) Send(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	answer, err := s.Post(ctx, ev)
	if err != nil || !answer {
		return pmult.Reply{}, err
	}
	return s.Await(ctx, ev)
}

// Post implements pmult.BackendSession: it writes the event's macro
// packets and the event itself (if the filter wants it) in one write.
func (s *session) Post(ctx context.Context, ev *pmult.Event) (bool, error) {
	if int(ev.Kind) >= len(cmdOf) || cmdOf[ev.Kind] == 0 {
		return false, fmt.Errorf("event %s has no milter command", ev.Kind)
	}
	cmd := cmdOf[ev.Kind]
	if ev.Kind == pmult.KindQuitNC && s.version < 6 {
		return false, fmt.Errorf("%s: SMFIC_QUIT_NC needs protocol version 6, filter speaks %d", s.b.where(), s.version)
	}
	switch ev.Kind {
	case pmult.KindMail:
		s.inMsg = true
	case pmult.KindAbort:
		if !s.inMsg && s.b.cfg.Reuse {
			// The message already ended at EOM (Postfix sends ABORT after
			// every message). libmilter ignores that ABORT but falls back
			// to its HELO state, where it ignores QUIT_NC as well: leave
			// it out to keep the connection reusable.
			return false, nil
		}
		s.inMsg = false
	case pmult.KindEOM:
		s.inMsg = false
	}
	s.endOK = false
	buf := s.wbuf[:0]
	for _, m := range ev.Macros {
		var at int
		buf, at = mp.StartPacket(buf, mp.CmdMacro)
		buf = mp.FinishPacket(mp.Macro{Cmd: m.Code, Pairs: m.Pairs}.Append(buf), at)
	}
	want := s.proto.Wants(cmd)
	if want {
		buf = s.appendEvent(buf, cmd, ev)
	}
	if len(buf) > 0 {
		if err := s.write(buf); err != nil {
			s.broken = true
			return false, fmt.Errorf("%s: send %s: %w", s.b.where(), mp.CmdName(cmd), err)
		}
	}
	return want && s.proto.Replies(cmd), nil
}

// Await implements pmult.BackendSession.
func (s *session) Await(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	cmd := cmdOf[ev.Kind]
	for {
		r, err := s.readReply(cmd)
		if err != nil {
			s.broken = true
			s.bodyRest = nil
			return r, fmt.Errorf("%s: %s reply: %w", s.b.where(), mp.CmdName(cmd), err)
		}
		if len(s.bodyRest) == 0 || r.Verdict != pmult.Continue {
			s.bodyRest = nil
			s.endOK = cmd == mp.CmdEOB && r.Verdict == pmult.Continue
			return r, nil
		}
		c := s.bodyRest
		s.bodyRest = nil
		if len(c) > s.maxChunk {
			s.bodyRest = c[s.maxChunk:]
			c = c[:s.maxChunk]
		}
		if err := s.write(mp.AppendPacket(s.wbuf[:0], cmd, c)); err != nil {
			s.broken = true
			s.bodyRest = nil
			return pmult.Reply{}, fmt.Errorf("%s: send %s: %w", s.b.where(), mp.CmdName(cmd), err)
		}
	}
}

func (s *session) appendEvent(buf []byte, cmd byte, ev *pmult.Event) []byte {
	if ev.Kind == pmult.KindBody {
		// A chunk larger than the filter accepts goes out in pieces, each
		// answered before the next (Await sends the rest).
		c := ev.Chunk
		for len(c) > s.maxChunk {
			if s.proto.Replies(cmd) {
				s.bodyRest = c[s.maxChunk:]
				c = c[:s.maxChunk]
				break
			}
			buf = mp.AppendPacket(buf, cmd, c[:s.maxChunk])
			c = c[s.maxChunk:]
		}
		return mp.AppendPacket(buf, cmd, c)
	}
	buf, at := mp.StartPacket(buf, cmd)
	switch ev.Kind {
	case pmult.KindConnect:
		buf = mp.Connect{Hostname: ev.Hostname, Family: ev.Family, Port: ev.Port, Address: ev.Address}.Append(buf)
	case pmult.KindHelo, pmult.KindUnknown:
		buf = mp.AppendStrings(buf, ev.Arg)
	case pmult.KindMail, pmult.KindRcpt:
		buf = mp.AppendStrings(buf, ev.Args...)
	case pmult.KindHeader:
		v := ev.Value
		if !s.leadspc && len(v) > 0 && v[0] == ' ' {
			v = v[1:]
		}
		buf = mp.AppendStrings(buf, ev.Name, v)
	}
	return mp.FinishPacket(buf, at)
}

// readReply reads the answer to cmd: PROGRESS packets, at EOM any number
// of modifications, then one final reply.
func (s *session) readReply(cmd byte) (pmult.Reply, error) {
	timeout := s.b.cfg.ReadTimeout
	if cmd == mp.CmdEOB {
		timeout = s.b.cfg.EOMTimeout
	}
	var rep pmult.Reply
	// The replacement body's packets, joined once at the end: each
	// packet's Data is its own allocation, so appending them to one
	// growing slice would copy the body several times over.
	var body [][]byte
	bodyLen := 0
	haveBody := false
	defer s.conn.SetReadDeadline(time.Time{})
	for {
		s.conn.SetReadDeadline(time.Now().Add(timeout))
		p, err := s.r.ReadPacket()
		if err != nil {
			if errors.Is(err, mp.ErrZeroLength) || errors.Is(err, mp.ErrTooLarge) {
				err = fmt.Errorf("protocol violation: %w", err)
			}
			return rep, err
		}
		if err := mp.AllowedReply(cmd, p.Code, s.actions, s.proto); err != nil {
			return rep, fmt.Errorf("protocol violation: %w", err)
		}
		switch p.Code {
		case mp.RespProgress:
			s.progress()
			continue
		case mp.RespContinue:
			rep.Verdict = pmult.Continue
		case mp.RespAccept:
			rep.Verdict = pmult.Accept
		case mp.RespReject:
			rep.Verdict = pmult.Reject
		case mp.RespTempfail:
			rep.Verdict = pmult.Tempfail
		case mp.RespDiscard:
			rep.Verdict = pmult.Discard
		case mp.RespSkip:
			// Postfix accepts SKIP after any command: it skips the
			// events of the same kind that follow at once. Where none
			// can follow (one per session or message), it is CONTINUE.
			switch cmd {
			case mp.CmdConnect, mp.CmdMail, mp.CmdData, mp.CmdEOH, mp.CmdEOB:
				rep.Verdict = pmult.Continue
			default:
				rep.Verdict = pmult.Skip
			}
		case mp.RespShutdown:
			rep.Verdict = pmult.Shutdown
		case mp.RespReplyCode:
			text, err := mp.ParseString(p.Code, p.Data)
			if err != nil {
				return rep, fmt.Errorf("protocol violation: %w", err)
			}
			if err := mp.ValidReplyCode(text); err != nil {
				return rep, fmt.Errorf("protocol violation: %w", err)
			}
			rep.Text = text
			switch {
			case strings.HasPrefix(text, "421"):
				rep.Verdict = pmult.Shutdown
			case text[0] == '4':
				rep.Verdict = pmult.Tempfail
			default:
				rep.Verdict = pmult.Reject
			}
		default:
			if s.r.Buffered() == 0 {
				sockopt.QuickAck(s.conn) // the final reply may be held by the filter's Nagle
			}
			e, err := s.edit(p)
			if err != nil {
				return rep, fmt.Errorf("protocol violation: %w", err)
			}
			if e.Kind == pmult.EditReplaceBody {
				bodyLen += len(p.Data)
				if bodyLen > s.b.cfg.MaxBody {
					return rep, fmt.Errorf("replacement body over the limit of %d bytes (max_body): %d bytes so far",
						s.b.cfg.MaxBody, bodyLen)
				}
				body = append(body, p.Data)
				haveBody = true
				continue
			}
			if e.Kind == pmult.EditQuarantine && cmd != mp.CmdEOB {
				s.quarantine = append(s.quarantine, e)
				continue
			}
			rep.Edits = append(rep.Edits, e)
			continue
		}
		if cmd == mp.CmdEOB {
			if len(s.quarantine) > 0 {
				rep.Edits = append(s.quarantine, rep.Edits...)
				s.quarantine = nil
			}
			if haveBody {
				rep.Edits = append(rep.Edits, pmult.Edit{Kind: pmult.EditReplaceBody, Body: join(body, bodyLen)})
			}
		}
		return rep, nil
	}
}

// join concatenates the packets of a replacement body (n bytes in all)
// into one allocation of exactly n bytes; a body of one packet is used as
// it is. Each packet is released as soon as it is copied.
func join(parts [][]byte, n int) []byte {
	switch len(parts) {
	case 0:
		return nil
	case 1:
		return parts[0]
	}
	out := make([]byte, 0, n)
	for i, p := range parts {
		out = append(out, p...)
		parts[i] = nil
	}
	return out
}

// edit decodes one modification packet into the engine's form (header
// values with their leading space).
func (s *session) edit(p mp.Packet) (pmult.Edit, error) {
	space := func(v string, del bool) string {
		if s.leadspc || (del && v == "") {
			return v
		}
		return " " + v
	}
	switch p.Code {
	case mp.RespAddHeader:
		h, err := mp.ParseHeader(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditAddHeader, Name: h.Name, Value: space(h.Value, false)}, err
	case mp.RespInsHeader:
		h, err := mp.ParseIndexedHeader(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditInsertHeader, Index: int(h.Index), Name: h.Name,
			Value: space(h.Value, false)}, err
	case mp.RespChgHeader:
		h, err := mp.ParseIndexedHeader(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditChangeHeader, Index: int(h.Index), Name: h.Name,
			Value: space(h.Value, true)}, err
	case mp.RespAddRcpt:
		a, err := mp.ParseString(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditAddRcpt, Addr: a}, err
	case mp.RespDelRcpt:
		a, err := mp.ParseString(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditDelRcpt, Addr: a}, err
	case mp.RespAddRcptPar:
		a, err := mp.ParseAddrArgs(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditAddRcptPar, Addr: a.Addr, Args: a.Args, HasArgs: a.HasArgs}, err
	case mp.RespChgFrom:
		a, err := mp.ParseAddrArgs(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditChangeFrom, Addr: a.Addr, Args: a.Args, HasArgs: a.HasArgs}, err
	case mp.RespQuarantine:
		r, err := mp.ParseString(p.Code, p.Data)
		return pmult.Edit{Kind: pmult.EditQuarantine, Value: r}, err
	case mp.RespReplBody:
		return pmult.Edit{Kind: pmult.EditReplaceBody}, nil
	}
	return pmult.Edit{}, fmt.Errorf("unexpected reply %s", mp.RespName(p.Code))
}

// Close implements pmult.BackendSession: QUIT and close.
func (s *session) Close() error {
	s.stop()
	if s.b.release(s) {
		return nil
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.b.cfg.WriteTimeout))
	s.conn.Write(mp.AppendPacket(nil, mp.CmdQuit))
	return s.conn.Close()
}
