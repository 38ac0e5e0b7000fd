// session.go: one backend session: negotiation, the events out (Handle,
// or Post and Await), the replies in (readReply), and QUIT.

package milter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/mailmux/mailmux/internal/deadline"
	"github.com/mailmux/mailmux/internal/milterkind"
	"github.com/mailmux/mailmux/internal/sockopt"
	"github.com/mailmux/mailmux/macros"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

type session struct {
	b    *Backend
	conn net.Conn
	r    *mp.Reader
	// rdl, wdl: the read and write deadlines set on conn (forgotten
	// wherever conn's deadlines are set otherwise; see forgetDeadlines).
	rdl, wdl deadline.Lazy
	// wbuf is the write buffer (a Hold batch between writes), from the
	// backend's pool while wbufp is non-nil; between writes it is given
	// back (an idle connection pins no buffer): see newBuf, write.
	wbuf  []byte
	wbufp *[]byte
	stop  func() bool
	// stopFired: stop found its function started (the session's context
	// ended first): it sets past deadlines on conn, perhaps not yet, so
	// the connection is not kept (release).
	stopFired bool
	progress  func()

	version  uint32
	actions  mp.Action
	proto    mp.Protocol
	caps     pmult.Caps
	leadspc  bool // the filter wants and sends exact header values
	maxChunk int

	quarantine []pmult.Edit // QUARANTINE received before EOM (Postfix allows it)
	bodyRest   []byte       // the unsent rest of an oversize body chunk

	// Batching (pmult.Batcher): hold keeps Posts' packets in wbuf until
	// Flush or Await; expect is the number of final replies owed for each
	// answered event posted and not awaited, oldest first (more than one
	// for a body chunk sent in pieces).
	hold   bool
	expect []int
	// skew: the filter gave a verdict that ends the message while
	// answers to later commands were owed. libmilter ignores those
	// commands; a filter that answers them would be read out of step, so
	// the connection is replaced (reconnect) before the next command.
	skew bool
	// skewWhy says what put the connection out of step, for the debug
	// line when it is replaced: the verdict, the command it answered,
	// and how many answers were still owed (0 and "": QUIT_NC refused).
	skewVerdict pmult.Verdict
	skewCmd     byte
	skewOwed    int
	log         *slog.Logger // the SMTP session's (OpenInfo.Log), or the backend's; names the backend
	// env are the CONNECT and HELO events of the SMTP session, replayed
	// on a new connection by reconnect.
	env replay
	ctx context.Context // of Open: stops the connection's I/O when it ends
	// probation: the connection was kept for reuse and no reply has been
	// read on it since; since holds the events posted meanwhile. If it
	// turns out dead (the filter closed it after QUIT_NC), a new
	// connection takes over and they are sent again (retry).
	probation bool
	since     []pmult.Event

	offer pmult.Offer // what the session was negotiated for (reuse key)
	// assigned: macros backends before this one may set (OpenInfo.Assigned).
	assigned []string
	// askedWire: caps.Macros (the lists asked for), names in wire form.
	askedWire map[pmult.Kind][]string
	broken    bool // an error was seen: never reuse
	inMsg     bool // MAIL sent, no EOM or ABORT since
	// endOK: the last command was an EOM answered CONTINUE. That is where
	// libmilter accepts QUIT_NC (its state ENDM); anywhere else (after
	// HELO, an ABORT, a rejected or accepted message) it ignores QUIT_NC
	// and then the next session's CONNECT, so the connection is not reused.
	endOK  bool
	idleAt time.Time

	peekFn  func(uintptr) // alive's callback (peek), bound once
	peekErr error
}

func (s *session) negotiate(o pmult.Offer, deadline time.Time) error {
	offer := Offer(o, s.b.cfg.MaxVersion)
	s.conn.SetDeadline(deadline)
	defer func() { s.conn.SetDeadline(time.Time{}); s.forgetDeadlines() }()
	if err := s.write(mp.AppendPacket(s.newBuf(), mp.CmdOptNeg, offer.Append(nil))); err != nil {
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
	s.r.Release() // parsed (the macro lists are copies)
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
		QuitNC:        s.version >= 6 && !s.b.noQuitNC.Load(),
	}
	for k := pmult.KindConnect; k <= pmult.KindUnknown; k++ {
		cmd := milterkind.Cmd(k)
		if !s.proto.Wants(cmd) {
			c.NoEvent = c.NoEvent.With(k)
		}
		if !s.proto.Replies(cmd) {
			c.NoReply = c.NoReply.With(k)
		}
	}
	var lists map[pmult.Kind][]string
	for _, sl := range rep.SymLists {
		if k, ok := milterkind.OfStage(sl.Stage); ok {
			if lists == nil {
				lists = map[pmult.Kind][]string{}
			}
			lists[k] = macros.Split(sl.Macros)
		}
	}
	s.caps = c
	s.setMacroLists(lists)
	return nil
}

// setMacroLists keeps the lists the filter asked for (SMFIR_SETSYMLIST)
// in its caps, and their names in wire form for macroPairs.
func (s *session) setMacroLists(lists map[pmult.Kind][]string) {
	s.caps.Macros, s.askedWire = lists, nil
	for k, names := range lists {
		if s.askedWire == nil {
			s.askedWire = map[pmult.Kind][]string{}
		}
		w := make([]string, len(names))
		for i, n := range names {
			w[i] = macros.Wire(n)
		}
		s.askedWire[k] = w
	}
}

// forgetDeadlines says conn's deadlines were set without rdl and wdl (or
// may have been: a reused connection, whose previous session's stop may
// have fired): the next read and write set theirs.
func (s *session) forgetDeadlines() {
	s.rdl.Forget()
	s.wdl.Forget()
}

// Caps implements pmult.BackendSession.
func (s *session) Caps() pmult.Caps { return s.caps }

// write writes b, built on newBuf (or on what Hold kept in wbuf), and
// gives the buffer back to the backend's pool.
func (s *session) write(b []byte) error {
	s.writeDeadline(time.Now())
	_, err := s.conn.Write(b)
	s.dropBuf(b)
	return err
}

// writeDeadline moves conn's write deadline to now + write_timeout when
// the one set (wdl) would fire too early.
func (s *session) writeDeadline(now time.Time) {
	if t, set := s.wdl.Next(now, s.b.cfg.WriteTimeout); set {
		s.conn.SetWriteDeadline(t)
	}
}

// dropBuf gives the write buffer, b (built on it), back to the pool.
func (s *session) dropBuf(b []byte) {
	if s.wbufp != nil {
		*s.wbufp = b[:0]      // b may have grown out of the pooled array
		s.b.bufs.Put(s.wbufp) // a big replay (> MaxPooled) is dropped
	}
	s.wbuf, s.wbufp = nil, nil
}

// newBuf returns wbuf, empty, taking a buffer from the backend's pool if
// the session holds none.
func (s *session) newBuf() []byte {
	if s.wbufp == nil {
		s.wbufp = s.b.bufs.Get(0)
		s.wbuf = *s.wbufp
	}
	return s.wbuf[:0]
}

// maxHeld is how much a held batch may grow before it is written anyway
// (the answers are still read later): it bounds the memory of a batch.
const maxHeld = 64 << 10

// Hold implements pmult.Batcher.
func (s *session) Hold() { s.hold = true }

// Flush implements pmult.Batcher.
func (s *session) Flush() error {
	s.hold = false
	if len(s.wbuf) == 0 {
		return nil
	}
	if err := s.write(s.wbuf); err != nil {
		s.broken = true
		return fmt.Errorf("%s: send: %w", s.b.where(), err)
	}
	return nil
}

// Handle implements pmult.BackendSession: Post, then Await if an answer
// follows.
func (s *session) Handle(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	answer, err := s.Post(ctx, ev)
	if err != nil || !answer {
		return pmult.Reply{}, err
	}
	return s.Await(ctx, ev)
}

// Post implements pmult.Pipeliner: it writes the event's macro
// packets and the event itself (if the filter wants it) in one write.
func (s *session) Post(ctx context.Context, ev *pmult.Event) (bool, error) {
	if !s.probation {
		return s.post(ctx, ev)
	}
	s.since = append(s.since, *ev)
	answer, err := s.post(ctx, ev)
	if err != nil {
		return s.retry(ctx, err)
	}
	return answer, nil
}

// retry, after the first command on a reused connection failed: the
// filter closed it after QUIT_NC, which it does not take (see
// Backend.noQuitNC). The events posted since the reuse go out again on a
// new connection; nothing was answered on the old one.
func (s *session) retry(ctx context.Context, cause error) (bool, error) {
	s.probation = false
	evs := s.since
	s.since = nil
	s.b.noQuitNC.Store(true)
	s.broken = false // a new connection takes over
	if s.b.cfg.Log != nil {
		s.b.cfg.Log.Info("reused connection closed by the filter: it does not take SMFIC_QUIT_NC, connections are no longer kept",
			"backend", s.b.cfg.Name, "err", cause)
	}
	s.env = replay{}
	if err := s.reconnect(ctx); err != nil {
		return false, err
	}
	answer := false
	for i := range evs {
		a, err := s.post(ctx, &evs[i])
		if err != nil {
			return false, err
		}
		answer = a
	}
	return answer, nil
}

func (s *session) post(ctx context.Context, ev *pmult.Event) (bool, error) {
	cmd := milterkind.Cmd(ev.Kind)
	if cmd == 0 {
		return false, fmt.Errorf("event %s has no milter command", ev.Kind)
	}
	if ev.Kind == pmult.KindQuitNC && s.b.noQuitNC.Load() {
		// Opened before the filter was found not to take QUIT_NC: the
		// next SMTP session gets a new connection instead.
		s.skew, s.env, s.inMsg = true, replay{}, false
		s.skewOwed = 0
		return false, nil
	}
	if ev.Kind == pmult.KindQuitNC && s.version < 6 {
		return false, fmt.Errorf("%s: SMFIC_QUIT_NC needs protocol version 6, filter speaks %d", s.b.where(), s.version)
	}
	if s.skew {
		switch ev.Kind {
		case pmult.KindAbort, pmult.KindQuit:
			// The message is over for the filter already; the
			// connection is replaced before the next command.
			s.inMsg = false
			return false, nil
		case pmult.KindQuitNC:
			s.env = replay{} // the next SMTP session starts on a new connection
			return false, nil
		}
		s.logReplaced()
		if err := s.reconnect(ctx); err != nil {
			s.broken = true
			return false, err
		}
	}
	s.env.keep(ev)
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
	buf := s.wbuf // what Hold kept
	if len(buf) == 0 {
		buf = s.newBuf()
	}
	for _, m := range ev.Macros {
		c := milterkind.Cmd(m.For)
		if c == 0 {
			continue // no stage the filter could have asked for
		}
		pairs := s.macroPairs(m)
		if len(pairs) == 0 && (len(m.Pairs) > 0 || len(m.Synth) > 0) {
			continue // nothing of it for this filter
		}
		var at int
		buf, at = mp.StartPacket(buf, mp.CmdMacro)
		buf = mp.FinishPacket(mp.Macro{Cmd: c, Pairs: pairs}.Append(buf), at)
	}
	want := s.proto.Wants(cmd)
	replies := 1
	if want {
		buf, replies = s.appendEvent(buf, cmd, ev)
	}
	switch {
	case len(buf) == 0:
		s.dropBuf(buf) // nothing to send
	case s.hold && len(buf) <= maxHeld:
		s.wbuf = buf
	default:
		if err := s.write(buf); err != nil {
			s.broken = true
			return false, fmt.Errorf("%s: send %s: %w", s.b.where(), mp.CmdName(cmd), err)
		}
	}
	answer := want && s.proto.Replies(cmd)
	if answer {
		s.expect = append(s.expect, replies)
	}
	return answer, nil
}

// ends reports whether v ends the message (or the session) for a
// libmilter filter: after it, libmilter ignores the message's commands.
func ends(v pmult.Verdict) bool {
	switch v {
	case pmult.Accept, pmult.Reject, pmult.Tempfail, pmult.Discard, pmult.Shutdown:
		return true
	}
	return false
}

// reconnect replaces a connection out of step (skew): QUIT and close, then
// a new connection negotiated for the same offer, which must give the
// same capabilities, and the SMTP session's CONNECT and HELO replayed,
// which must be answered CONTINUE.
func (s *session) reconnect(ctx context.Context) error {
	s.stop()
	s.conn.SetWriteDeadline(time.Now().Add(s.b.cfg.WriteTimeout))
	s.conn.Write(mp.AppendPacket(nil, mp.CmdQuit))
	s.conn.Close()
	s.skew, s.expect, s.hold, s.bodyRest = false, nil, false, nil
	s.dropBuf(s.wbuf)
	s.r.Release()
	deadline := time.Now().Add(s.b.cfg.ConnectTimeout)
	conn, err := s.b.dial(ctx, deadline)
	if err != nil {
		return fmt.Errorf("reconnect %s: %w", s.b.where(), err)
	}
	s.conn, s.r = conn, newReader(conn, s.b.cfg.MaxPacket, &s.b.bufs)
	s.forgetDeadlines()
	s.stop = context.AfterFunc(s.ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	caps, env := s.caps, s.env.events()
	s.env = replay{} // Post keeps them again
	if err := s.negotiate(s.offer, deadline); err != nil {
		return fmt.Errorf("%s: reconnect: %w", s.b.where(), err)
	}
	if !sameCaps(caps, s.caps) {
		return fmt.Errorf("%s: reconnect: the filter negotiated differently", s.b.where())
	}
	for i := range env {
		ev := &env[i]
		answer, err := s.Post(ctx, ev)
		if err != nil {
			return err
		}
		if !answer {
			continue
		}
		r, err := s.Await(ctx, ev)
		if err != nil {
			return err
		}
		if r.Verdict != pmult.Continue {
			return fmt.Errorf("%s: reconnect: the filter answered %s to the replayed %s", s.b.where(), r.Verdict, ev.Kind)
		}
	}
	return nil
}

// replay is what reconnect replays of the SMTP session: its CONNECT and
// HELO, kept in the session itself (no allocation; the macro sets are the
// engine's, shared read-only like the events).
type replay struct {
	n            int8 // 0 none, 1 CONNECT, 2 CONNECT and HELO
	family       byte
	port         uint16
	host, addr   string
	helo         string
	cmacs, hmacs []pmult.MacroSet
}

// keep notes ev if it is a CONNECT or a HELO.
func (r *replay) keep(ev *pmult.Event) {
	switch ev.Kind {
	case pmult.KindConnect:
		*r = replay{n: 1, family: ev.Family, port: ev.Port, host: ev.Hostname, addr: ev.Address, cmacs: ev.Macros}
	case pmult.KindHelo:
		if r.n >= 1 {
			r.n, r.helo, r.hmacs = 2, ev.Arg, ev.Macros
		}
	}
}

// events rebuilds the kept events.
func (r *replay) events() []pmult.Event {
	evs := make([]pmult.Event, 0, r.n)
	if r.n >= 1 {
		evs = append(evs, pmult.Event{Kind: pmult.KindConnect, Macros: r.cmacs, Hostname: r.host, Family: r.family, Port: r.port, Address: r.addr})
	}
	if r.n >= 2 {
		evs = append(evs, pmult.Event{Kind: pmult.KindHelo, Macros: r.hmacs, Arg: r.helo})
	}
	return evs
}

func sameCaps(a, b pmult.Caps) bool {
	if a.Actions != b.Actions || a.NoEvent != b.NoEvent || a.NoReply != b.NoReply || a.Skip != b.Skip ||
		a.RejectedRcpts != b.RejectedRcpts || len(a.Macros) != len(b.Macros) {
		return false
	}
	for k, l := range a.Macros {
		if strings.Join(l, " ") != strings.Join(b.Macros[k], " ") {
			return false
		}
	}
	return true
}

// Await implements pmult.Pipeliner: the answer to the oldest answered
// event posted and not awaited yet (Post's order).
func (s *session) Await(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	defer s.idleIfDone()
	if !s.probation {
		return s.await(ctx, ev)
	}
	r, err := s.await(ctx, ev)
	if err == nil {
		s.probation, s.since = false, nil
		return r, nil
	}
	if ctx.Err() != nil {
		return r, err
	}
	if _, err := s.retry(ctx, err); err != nil {
		s.broken = true
		return pmult.Reply{}, err
	}
	return s.await(ctx, ev)
}

func (s *session) await(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	cmd := milterkind.Cmd(ev.Kind)
	if err := s.Flush(); err != nil {
		s.bodyRest = nil
		return pmult.Reply{}, err
	}
	n := 1
	if len(s.expect) > 0 {
		// Shifted down, not resliced: the queue is a few entries at
		// most, and its array is kept for the next post.
		n = s.expect[0]
		s.expect = s.expect[:copy(s.expect, s.expect[1:])]
	}
	skipped := false
	for ; n > 1; n-- { // the pieces of a body chunk sent at once
		r, err := s.readReply(cmd)
		s.ackOwed(true)
		if err != nil {
			s.broken = true
			return r, fmt.Errorf("%s: %s reply: %w", s.b.where(), mp.CmdName(cmd), err)
		}
		if r.Verdict != pmult.Continue && r.Verdict != pmult.Skip {
			s.ended(cmd, r.Verdict, n-1)
			return r, nil
		}
		skipped = skipped || r.Verdict == pmult.Skip
	}
	for {
		r, err := s.readReply(cmd)
		s.ackOwed(false)
		if err != nil {
			s.broken = true
			s.bodyRest = nil
			return r, fmt.Errorf("%s: %s reply: %w", s.b.where(), mp.CmdName(cmd), err)
		}
		if len(s.bodyRest) == 0 || r.Verdict != pmult.Continue {
			s.bodyRest = nil
			s.endOK = cmd == mp.CmdEOB && r.Verdict == pmult.Continue
			s.ended(cmd, r.Verdict, 0)
			if skipped && r.Verdict == pmult.Continue {
				r.Verdict = pmult.Skip
			}
			return r, nil
		}
		c := s.bodyRest
		s.bodyRest = nil
		if len(c) > s.maxChunk {
			s.bodyRest = c[s.maxChunk:]
			c = c[:s.maxChunk]
		}
		if err := s.write(mp.AppendPacket(s.newBuf(), cmd, c)); err != nil {
			s.broken = true
			s.bodyRest = nil
			return pmult.Reply{}, fmt.Errorf("%s: send %s: %w", s.b.where(), mp.CmdName(cmd), err)
		}
	}
}

// idleIfDone gives the packet buffer back to the backend's pool when no
// reply is owed: the connection idles until the next command (the reply
// just read is parsed, and copied where kept).
func (s *session) idleIfDone() {
	if len(s.expect) == 0 {
		s.r.Release()
	}
}

// ackOwed sends our ACK at once when more replies are owed (more, or
// events posted ahead) and none is buffered: libmilter writes each reply
// on its own without TCP_NODELAY, so its next one waits for our ACK,
// which no data of ours carries while we only read (~40 ms delayed).
func (s *session) ackOwed(more bool) {
	if (more || len(s.expect) > 0) && s.r.Buffered() == 0 {
		sockopt.QuickAck(s.conn)
	}
}

// ended notes a verdict read with owed more answers to commands posted
// after it (owed, plus those of later events): if it ends the message,
// the filter may ignore them (libmilter) or not, so the connection is out
// of step.
func (s *session) ended(cmd byte, v pmult.Verdict, owed int) {
	if ends(v) && owed+len(s.expect) > 0 {
		s.skew = true
		s.skewVerdict, s.skewCmd, s.skewOwed = v, cmd, owed+len(s.expect)
		s.expect = nil
	}
}

// logReplaced says, at debug, why the connection is being replaced.
func (s *session) logReplaced() {
	if s.log == nil || !s.log.Enabled(s.ctx, slog.LevelDebug) {
		return
	}
	if s.skewOwed == 0 {
		s.log.Debug("backend connection replaced: the filter does not take SMFIC_QUIT_NC, the next SMTP session needs a new connection")
		return
	}
	s.log.Debug("backend connection replaced: out of step after a verdict that ended the message while answers were owed",
		"verdict", s.skewVerdict.String(), "answering", mp.CmdName(s.skewCmd), "owed", s.skewOwed)
}

// appendEvent appends ev's packets and returns how many final replies
// they are answered with.
func (s *session) appendEvent(buf []byte, cmd byte, ev *pmult.Event) ([]byte, int) {
	if ev.Kind == pmult.KindBody {
		// A chunk larger than the filter accepts goes out in pieces: held
		// (batching), all at once, each answered; otherwise each answered
		// before the next (Await sends the rest).
		c := ev.Chunk
		n := 1
		for len(c) > s.maxChunk {
			if s.proto.Replies(cmd) && !s.hold {
				s.bodyRest = c[s.maxChunk:]
				c = c[:s.maxChunk]
				break
			}
			buf = mp.AppendPacket(buf, cmd, c[:s.maxChunk])
			c = c[s.maxChunk:]
			n++
		}
		return mp.AppendPacket(buf, cmd, c), n
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
	return mp.FinishPacket(buf, at), 1
}

// readReply reads the answer to cmd: PROGRESS packets, at EOM any number
// of modifications, then one final reply.
func (s *session) readReply(cmd byte) (pmult.Reply, error) {
	timeout := s.b.cfg.ReadTimeout
	if cmd == mp.CmdEOB {
		timeout = s.b.cfg.EOMTimeout
	}
	var rep pmult.Reply
	// The replacement body's packets, joined once at the end: each is
	// copied out of the Reader's buffer (newReader) into its own
	// allocation, so appending them to one growing slice would copy the
	// body several times over.
	var body [][]byte
	bodyLen := 0
	haveBody := false
	for {
		// The timeout runs from each packet to the next, as the MTAs
		// time it; a packet already buffered needs no timer.
		if !s.r.Ready() {
			if t, set := s.rdl.Next(time.Now(), timeout); set {
				s.conn.SetReadDeadline(t)
			}
			// The session's end sets a past deadline (stop): if it came
			// before the line above, that deadline was overwritten.
			if s.ctx != nil && s.ctx.Err() != nil {
				return rep, s.ctx.Err()
			}
		}
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
				body = append(body, bytes.Clone(p.Data))
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

// newReader is the session's packet reader: its packets' Data is reused
// (no allocation per reply); readReply copies what it keeps (the
// replacement body), the parsers copy the strings.
func newReader(c net.Conn, maxData int, pool *mp.BufPool) *mp.Reader {
	r := mp.NewReader(c, maxData)
	r.ReuseFrom(pool)
	return r
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

// CloseIdle implements pmult.IdleCloser: a session that can be kept for
// reuse is closed (kept: one QUIT_NC written) on the caller's goroutine;
// any other is left to Close.
func (s *session) CloseIdle() bool {
	if !s.b.keepable(s) {
		return false
	}
	s.Close()
	return true
}

// Close implements pmult.BackendSession: QUIT and close.
func (s *session) Close() error {
	s.stopFired = !s.stop()
	if s.b.release(s) {
		return nil
	}
	// Not given back to the pool here: the engine may close a session
	// whose last call has not returned yet (engine.go: "it may be hung"),
	// and its buffers then go with it.
	s.conn.SetWriteDeadline(time.Now().Add(s.b.cfg.WriteTimeout))
	s.conn.Write(mp.AppendPacket(nil, mp.CmdQuit))
	return s.conn.Close()
}
