// conn.go: one MTA connection: negotiation toward the MTA, packets to
// events, merged replies to packets.

package milter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailmux/mailmux/internal/arena"
	"github.com/mailmux/mailmux/internal/deadline"
	"github.com/mailmux/mailmux/internal/milterkind"
	"github.com/mailmux/mailmux/internal/sockopt"
	"github.com/mailmux/mailmux/macros"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

type conn struct {
	srv      *Server
	nc       net.Conn
	id       string
	listener string // the name of the listener it came in on ("": unnamed)
	log      *slog.Logger
	r        *mp.Reader

	sess    *pmult.Session
	cancel  context.CancelFunc // ends the session's context (backend I/O)
	state   mtaState
	version uint32
	mtaAct  mp.Action
	mtaProt mp.Protocol
	proto   mp.Protocol // what we granted ourselves toward the MTA
	leadspc bool

	// pending holds the macro sets received since the last command: the
	// last one for each command letter, as libmilter keeps them, and
	// pendingBytes their size (bounded by maxPendingMacros).
	pending      []pmult.MacroSet
	pendingSize  [16]int // by position in pending (one set per command letter: fewer than 16)
	pendingBytes int

	// evs and msets: the events and their first macro set, from
	// per-connection arrays (internal/arena; small: an array lives while
	// one of its events is kept, and 1,000 sessions hold 1,000 of them).
	evs   arena.Arena[pmult.Event]
	msets arena.Arena[pmult.MacroSet]
	strs  mp.Strings // the macro packets' strings

	wmu   sync.Mutex
	wdl   deadline.Lazy // the write deadline, under wmu
	rdl   deadline.Lazy // the read deadline (Serve's goroutine)
	wbuf  []byte        // reused for small writes; see maxKeptWriteBuf
	inEOM bool          // PROGRESS may be sent
}

// maxKeptWriteBuf is the largest write buffer kept for the next write: an
// end of message that replaces a body of tens of MiB must not pin that
// much memory for the rest of the connection.
const maxKeptWriteBuf = 64 << 10

// errQuit ends the connection without an error.
var errQuit = errors.New("quit")

// Drain implements connserve.Conn: an MTA session finishes on its own.
func (c *conn) Drain() {}

// Close implements connserve.Conn.
func (c *conn) Close() { c.nc.Close() }

// Serve implements connserve.Conn: it runs the connection to its end.
func (c *conn) Serve(ctx context.Context) {
	defer c.nc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.cancel = cancel
	defer func() {
		if c.sess != nil {
			c.sess.Close()
		}
	}()
	defer func() {
		if v := recover(); v != nil { // a bug must cost one session, not the process
			c.log.Error("internal error, session closed", "panic", fmt.Sprint(v))
		}
	}()
	for {
		timeout := orDefault(c.srv.IdleTimeout, time.Hour)
		if c.sess == nil {
			timeout = orDefault(c.srv.NegotiateTimeout, 30*time.Second)
		}
		if !c.r.Ready() { // a packet already buffered needs no timer
			if t, set := c.rdl.Next(time.Now(), timeout); set {
				c.nc.SetReadDeadline(t)
			}
		}
		p, err := c.r.ReadPacket()
		if err != nil {
			c.readError(err, timeout)
			return
		}
		if err := c.packet(ctx, p); err != nil {
			if err != errQuit {
				c.log.Warn("closing MTA connection", "err", err)
			}
			return
		}
	}
}

func (c *conn) readError(err error, timeout time.Duration) {
	var ne net.Error
	switch {
	case err == io.EOF:
		if c.sess == nil {
			c.log.Info("MTA closed the connection before negotiation")
		} else {
			c.log.Debug("MTA closed the connection")
		}
	case errors.As(err, &ne) && ne.Timeout():
		if c.sess == nil {
			c.log.Warn("MTA sent no SMFIC_OPTNEG in time, closing", "timeout", timeout)
		} else {
			c.log.Warn("MTA idle too long, closing", "timeout", timeout)
		}
	case errors.Is(err, net.ErrClosed):
		c.log.Info("connection closed by shutdown")
	default:
		c.log.Warn("bad packet from MTA, closing", "err", err)
	}
}

func (c *conn) packet(ctx context.Context, p mp.Packet) error {
	if c.sess == nil && p.Code != mp.CmdOptNeg {
		if p.Code == mp.CmdQuit {
			return errQuit
		}
		return fmt.Errorf("%s before SMFIC_OPTNEG", mp.CmdName(p.Code))
	}
	switch p.Code {
	case mp.CmdOptNeg:
		if c.sess != nil {
			return errors.New("second SMFIC_OPTNEG on one connection")
		}
		c.srv.cs.Ready(c) // a real session now: never closed to make room
		return c.optneg(ctx, p.Data)
	case mp.CmdMacro:
		m, err := c.strs.ParseMacro(p.Data)
		if err != nil {
			return err
		}
		if err := c.addMacros(m, len(p.Data)); err != nil {
			return err
		}
		if c.r.Buffered() == 0 {
			sockopt.QuickAck(c.nc) // Sendmail's command may be held by its Nagle
		}
		return nil
	}
	kind := milterkind.Kind(p.Code)
	if kind == pmult.KindNone {
		return fmt.Errorf("unknown command code 0x%02x", p.Code)
	}
	abort, err := c.advance(p.Code)
	if err != nil {
		return err
	}
	if abort { // as libmilter: a new envelope command ends the message first
		c.log.Debug("command in the middle of a message, aborting the message first", "command", mp.CmdName(p.Code))
		c.sess.Handle(ctx, c.evs.New(pmult.Event{Kind: pmult.KindAbort}))
	}
	ev := c.evs.New(pmult.Event{Kind: kind, Macros: c.pending})
	c.pending, c.pendingBytes = nil, 0
	switch p.Code {
	case mp.CmdConnect:
		var cn mp.Connect
		if cn, err = mp.ParseConnect(p.Data); err == nil {
			ev.Hostname, ev.Family, ev.Port, ev.Address = cn.Hostname, cn.Family, cn.Port, cn.Address
		}
	case mp.CmdHelo, mp.CmdUnknown:
		ev.Arg, err = mp.ParseString(p.Code, p.Data)
	case mp.CmdMail, mp.CmdRcpt:
		ev.Args, err = mp.ParseArgv(p.Code, p.Data)
		if p.Code == mp.CmdRcpt {
			ev.RejectedRcpt = macro(ev.Macros, "{rcpt_mailer}") == "error"
		}
	case mp.CmdHeader:
		var h mp.Header
		if h, err = mp.ParseHeader(p.Code, p.Data); err == nil {
			ev.Name, ev.Value = h.Name, h.Value
			if !c.leadspc {
				ev.Value = " " + ev.Value
			}
		}
	case mp.CmdBody:
		ev.Chunk = p.Data
	case mp.CmdEOB:
		if len(p.Data) > 0 { // libmilter treats data here as a last body chunk
			body := c.evs.New(pmult.Event{Kind: pmult.KindBody, Chunk: p.Data, Macros: ev.Macros})
			ev.Macros = nil
			c.sess.Handle(ctx, body)
		}
		return c.eom(ctx, ev)
	case mp.CmdAbort, mp.CmdQuitNC:
		c.sess.Handle(ctx, ev)
		return nil
	case mp.CmdQuit:
		c.sess.Handle(ctx, ev)
		return errQuit
	}
	if err != nil {
		return err
	}
	noReply := !c.proto.Replies(p.Code)
	if noReply && c.r.Buffered() == 0 {
		// No reply carries our ACK: Postfix's next header (written
		// without TCP_NODELAY) would wait for the delayed one (~40 ms).
		sockopt.QuickAck(c.nc)
	}
	rep := c.sess.Handle(ctx, ev)
	if noReply {
		return nil
	}
	return c.reply(p.Code, rep)
}

// addMacros keeps a macro packet of size bytes for the next command. A
// later set for the same command letter replaces the earlier one (what
// libmilter does), so a repeating MTA cannot grow the list; the total
// pending is bounded by maxPendingMacros (the packet size limit).
func (c *conn) addMacros(m mp.Macro, size int) error {
	kind := milterkind.Kind(m.Cmd)
	if kind == pmult.KindNone {
		// No command of that letter follows: no backend could use it.
		c.log.Debug("SMFIC_MACRO for no known command, ignored", "command", fmt.Sprintf("0x%02x", m.Cmd))
		return nil
	}
	for i, ms := range c.pending {
		if ms.For == kind {
			c.pendingBytes -= c.pendingSize[i]
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			copy(c.pendingSize[i:], c.pendingSize[i+1:])
			break
		}
	}
	if limit := c.maxPendingMacros(); c.pendingBytes+size > limit {
		return fmt.Errorf("protocol violation: %d bytes of SMFIC_MACRO data pending before one command, limit %d",
			c.pendingBytes+size, limit)
	}
	c.pendingSize[len(c.pending)] = size
	if len(c.pending) == 0 { // the usual case: one set before a command
		c.pending = c.msets.Take(1) // a second set reallocates
	}
	c.pending = append(c.pending, pmult.MacroSet{For: kind, Pairs: m.Pairs})
	c.pendingBytes += size
	return nil
}

// maxPendingMacros bounds the macro data waiting for one command: the
// largest packet the MTA may send (max_packet), enough for every stage's
// full set.
func (c *conn) maxPendingMacros() int {
	if c.srv.MaxData > 0 {
		return c.srv.MaxData
	}
	return mp.DefaultMaxData
}

// mtaNames drops from a backend's list the names only pmult provides
// ({listener}, {multiplexer}: derived, unknown to Postfix and Sendmail),
// which would only use up the MTA's list (Sendmail: 50 names).
func mtaNames(names []string) []string {
	out := names[:0:0]
	for _, n := range names {
		k := macros.Normalize(n)
		if _, derived := macros.Derivable[k]; derived && !slices.Contains(macros.MTAKnown, k) {
			continue
		}
		out = append(out, n)
	}
	return out
}

func macro(sets []pmult.MacroSet, name string) string {
	for _, m := range sets {
		for i := 0; i+1 < len(m.Pairs); i += 2 {
			if m.Pairs[i] == name {
				return m.Pairs[i+1]
			}
		}
	}
	return ""
}

// optneg answers the MTA's negotiation after opening every backend.
func (c *conn) optneg(ctx context.Context, data []byte) error {
	o, err := mp.ParseOptNeg(data)
	if err != nil {
		return err
	}
	if o.Version < mp.MinVersion {
		return fmt.Errorf("MTA speaks milter protocol version %d, need at least %d", o.Version, mp.MinVersion)
	}
	c.version = min(o.Version, mp.MaxVersion)
	c.mtaAct = o.Actions & mp.ActionMaskForVersion(c.version)
	c.mtaProt = o.Protocol & mp.ProtocolMaskForVersion(c.version)
	deferContent, why := c.srv.DeferContent.decide(o)
	debug := c.log.Enabled(ctx, slog.LevelDebug) // the lines' hex arguments cost, once per MTA connection
	if debug && c.mtaProt&(mp.ProtoNRHeader|mp.ProtoNREOH|mp.ProtoNRBody) != 0 {
		c.log.Debug("content replies", "deferred_to_eom", deferContent, "why", why,
			"mta_version", o.Version, "mta_actions", fmt.Sprintf("0x%x", uint32(o.Actions)), "mta_protocol", fmt.Sprintf("0x%x", uint32(o.Protocol)))
	}
	offer := pmult.Offer{
		Actions:       pmult.Actions(c.mtaAct) &^ pmult.ActSetSymList,
		Skip:          c.mtaProt&mp.ProtoSkip != 0,
		RejectedRcpts: c.mtaProt&mp.ProtoRcptRej != 0,
		LeadingSpace:  c.mtaProt&mp.ProtoHdrLeadSpc != 0,
		SymList:       c.mtaAct&mp.ActSetSymList != 0,
		Version:       int(o.Version),
		Front:         "milter",
		Listener:      c.listener,
		DeferContent:  deferContent,
	}
	for _, k := range negKinds {
		if f := mp.NoReplyFlag(milterkind.Cmd(k)); f != 0 && c.mtaProt&f != 0 {
			offer.NoReply = offer.NoReply.With(k)
		}
	}
	c.sess = c.srv.CurrentEngine().NewSession(c.id, c.log)
	neg := c.sess.Open(ctx, offer, c.progress)

	rep := mp.OptNeg{Version: c.version, Actions: mp.Action(neg.Actions) & c.mtaAct}
	var p mp.Protocol
	for _, k := range negKinds {
		cmd := milterkind.Cmd(k)
		if neg.NoEvent.Has(k) {
			p |= mp.NoEventFlag(cmd)
		}
		if neg.NoReply.Has(k) {
			p |= mp.NoReplyFlag(cmd)
		}
	}
	if neg.RejectedRcpts {
		p |= mp.ProtoRcptRej
	}
	p |= mp.ProtoSkip | mp.ProtoHdrLeadSpc
	c.proto = p & c.mtaProt
	c.leadspc = c.proto&mp.ProtoHdrLeadSpc != 0
	rep.Protocol = c.proto
	if rep.Actions&mp.ActSetSymList != 0 {
		for k, names := range neg.Macros {
			st, ok := milterkind.Stage(k)
			names = mtaNames(names)
			if !ok || len(names) == 0 {
				continue
			}
			// Once a list is sent for a stage, the MTA sends only those
			// macros, for every backend: keep the baseline, what the
			// MTA would send without a list (Server.MTAMacros).
			names = macros.Union(names, c.srv.baseline(st)...)
			if len(names) > 50 { // Sendmail's MAXFILTERMACROS
				c.log.Warn("macro list too long for the MTA, truncated", "stage", k.String(), "macros", len(names))
				names = names[:50]
			}
			rep.SymLists = append(rep.SymLists, mp.SymList{Stage: st, Macros: strings.Join(names, " ")})
		}
		sortSymLists(rep.SymLists)
	}
	if debug {
		c.log.Debug("negotiated", "mta_version", o.Version, "mta_actions", fmt.Sprintf("0x%x", uint32(o.Actions)),
			"mta_protocol", fmt.Sprintf("0x%x", uint32(o.Protocol)), "version", rep.Version,
			"actions", fmt.Sprintf("0x%x", uint32(rep.Actions)), "protocol", fmt.Sprintf("0x%x", uint32(rep.Protocol)))
	}
	return c.send(mp.AppendPacket(nil, mp.RespOptNeg, rep.Append(nil)))
}

func sortSymLists(l []mp.SymList) {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j].Stage < l[j-1].Stage; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}

// negKinds are the kinds whose events the MTA may leave out or not wait
// for (the NO* and NR_* bits of the negotiation).
var negKinds = []pmult.Kind{pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindRcpt,
	pmult.KindData, pmult.KindHeader, pmult.KindEOH, pmult.KindBody, pmult.KindUnknown}

// progress relays a backend's PROGRESS to the MTA during EOM (Sendmail
// accepts it nowhere else). Called from backend goroutines.
func (c *conn) progress() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.inEOM {
		return
	}
	c.setWriteDeadline()
	c.nc.Write(mp.AppendPacket(nil, mp.RespProgress))
}

// setWriteDeadline times a write to the MTA (under wmu).
func (c *conn) setWriteDeadline() {
	if t, set := c.wdl.Next(time.Now(), orDefault(c.srv.WriteTimeout, 30*time.Second)); set {
		c.nc.SetWriteDeadline(t)
	}
}

func (c *conn) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.setWriteDeadline()
	_, err := c.nc.Write(b)
	if err != nil {
		return fmt.Errorf("write to MTA: %w", err)
	}
	return nil
}

// appendFinal appends the packet for a final verdict.
func (c *conn) appendFinal(buf []byte, cmd byte, rep pmult.Reply) []byte {
	text := rep.Text
	if text != "" {
		if err := mp.ValidReplyCode(text); err != nil {
			c.log.Warn("invalid reply text from backend, using a plain verdict", "backend", rep.From, "err", err)
			text = ""
		} else if (rep.Verdict == pmult.Tempfail && text[0] != '4') || (rep.Verdict == pmult.Reject && text[0] != '5') {
			text = ""
		}
	}
	switch rep.Verdict {
	case pmult.Accept:
		return mp.AppendPacket(buf, mp.RespAccept)
	case pmult.Skip:
		if c.proto&mp.ProtoSkip != 0 && cmd == mp.CmdBody {
			return mp.AppendPacket(buf, mp.RespSkip)
		}
	case pmult.Discard:
		return mp.AppendPacket(buf, mp.RespDiscard)
	case pmult.Reject, pmult.Tempfail, pmult.Shutdown:
		if text != "" {
			return mp.AppendPacket(buf, mp.RespReplyCode, mp.AppendStrings(nil, text))
		}
		switch rep.Verdict {
		case pmult.Reject:
			return mp.AppendPacket(buf, mp.RespReject)
		case pmult.Tempfail:
			return mp.AppendPacket(buf, mp.RespTempfail)
		}
		return mp.AppendPacket(buf, mp.RespReplyCode, mp.AppendStrings(nil, "421 4.3.0 Service shutting down"))
	}
	return mp.AppendPacket(buf, mp.RespContinue)
}

func (c *conn) reply(cmd byte, rep pmult.Reply) error {
	return c.sendBuf(c.appendFinal(c.wbuf[:0], cmd, rep))
}

// sendBuf sends buf, built on c.wbuf, and keeps it for the next write
// unless it grew past maxKeptWriteBuf.
func (c *conn) sendBuf(buf []byte) error {
	if cap(buf) > maxKeptWriteBuf {
		c.wbuf = nil
	} else {
		c.wbuf = buf[:0]
	}
	return c.send(buf)
}

// eom runs the end of message and writes every edit, then the final reply,
// in one write: all body replacement in one run (a Postfix rule). While
// the backends work it keeps the MTA's timer from firing (keepAlive) and
// watches for the MTA going away (watchMTA), both only once it has run
// for maxWatchAfter (eomWatch).
func (c *conn) eom(ctx context.Context, ev *pmult.Event) error {
	c.wmu.Lock()
	c.inEOM = true
	c.wmu.Unlock()
	w := c.watchEOM()
	rep := c.sess.Handle(ctx, ev)
	c.wmu.Lock()
	c.inEOM = false
	c.wmu.Unlock()
	if w.stop() {
		return errQuit // logged by watchMTA
	}
	buf := c.wbuf[:0]
	for _, e := range rep.Edits {
		buf = c.appendEdit(buf, e)
	}
	return c.sendBuf(c.appendFinal(buf, mp.CmdEOB, rep))
}

// maxWatchAfter is how long an end of message runs before keepAlive and
// watchMTA start (less where the progress interval is shorter than
// twice that). Most ends of message take a few milliseconds: starting
// both goroutines, a ticker and a read on the MTA's socket for each, and
// ending them, was ~5% of pmult's CPU per message through Postfix.
const maxWatchAfter = 200 * time.Millisecond

// eomWatch starts keepAlive and watchMTA once an end of message has run
// for its delay, unless stopped first.
type eomWatch struct {
	c       *conn
	after   time.Duration
	timer   *time.Timer
	mu      sync.Mutex
	ended   bool // stop was called: start does nothing
	started bool
	done    chan struct{}
	wg      sync.WaitGroup
	gone    bool // watchMTA's finding, read after wg.Wait
}

func (c *conn) watchEOM() *eomWatch {
	w := &eomWatch{c: c, after: maxWatchAfter}
	if d := c.srv.progressInterval(); d > 0 && d/2 < w.after {
		w.after = d / 2
	}
	w.timer = time.AfterFunc(w.after, w.start)
	return w
}

func (w *eomWatch) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return
	}
	w.started = true
	w.done = make(chan struct{})
	w.wg.Add(2)
	go func() { defer w.wg.Done(); w.c.keepAlive(w.done, w.after) }()
	go func() { defer w.wg.Done(); w.gone = w.c.watchMTA(w.done) }()
}

// stop ends the watch and reports whether the MTA went away meanwhile.
func (w *eomWatch) stop() (gone bool) {
	w.timer.Stop()
	w.mu.Lock()
	w.ended = true
	started := w.started
	w.mu.Unlock()
	if !started {
		return false
	}
	close(w.done)
	w.c.nc.SetReadDeadline(time.Now()) // unblocks watchMTA's Peek
	w.c.rdl.Forget()
	w.wg.Wait()
	return w.gone
}

// keepAlive sends SMFIR_PROGRESS every Server.ProgressInterval of the end
// of message (started when elapsed of it has passed) until done.
// Postfix (milter8.c) reads each reply packet under a fresh
// milter_content_timeout and skips PROGRESS, so its one timer no longer
// has to cover every backend's work and the replays: a backend's own
// eom_timeout and failure action decide before Postfix gives up. Sendmail
// (milter.c, milter_data) restarts its per-read timer (T=R:, 10 s by
// default) on each packet but keeps an overall limit from the end of
// message (T=E:, 5 m by default), which PROGRESS does not extend.
func (c *conn) keepAlive(done <-chan struct{}, elapsed time.Duration) {
	d := c.srv.progressInterval()
	if d <= 0 {
		return
	}
	t := time.NewTimer(max(d-elapsed, 0))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			c.progress()
			t.Reset(d)
		}
	}
}

// watchMTA waits for the MTA's next byte while the end of message runs,
// consuming nothing. The MTA sends nothing before the reply, so the end of
// the stream means it went away (its own timeout, a crash): the session's
// context is cancelled so the backends stop at once rather than at their
// timeouts. eom ends the wait with a read deadline.
func (c *conn) watchMTA(done <-chan struct{}) (gone bool) {
	err := c.r.Peek()
	select {
	case <-done:
		return false // the deadline set by eom, or a close seen too late to matter
	default:
	}
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		return false // the MTA sent something early (read after the reply), or the idle timer
	}
	c.log.Warn("MTA closed the connection during end of message, stopping the backends", "err", err)
	c.cancel()
	return true
}

// toMTA turns an engine header value (leading space included) into what
// the MTA expects: without HDR_LEADSPC it adds one space itself.
func (c *conn) toMTA(v string, chg bool) string {
	if c.leadspc || len(v) == 0 || v[0] != ' ' {
		return v
	}
	if chg && len(v) == 1 {
		return v // stripping would turn a change into a delete
	}
	return v[1:]
}

func (c *conn) appendEdit(buf []byte, e pmult.Edit) []byte {
	switch e.Kind {
	case pmult.EditAddHeader:
		return mp.AppendPacket(buf, mp.RespAddHeader, mp.AppendStrings(nil, e.Name, c.toMTA(e.Value, false)))
	case pmult.EditInsertHeader:
		return mp.AppendPacket(buf, mp.RespInsHeader,
			mp.Header{Index: uint32(e.Index), Name: e.Name, Value: c.toMTA(e.Value, false)}.AppendIndexed(nil))
	case pmult.EditChangeHeader:
		return mp.AppendPacket(buf, mp.RespChgHeader,
			mp.Header{Index: uint32(e.Index), Name: e.Name, Value: c.toMTA(e.Value, true)}.AppendIndexed(nil))
	case pmult.EditAddRcpt:
		return mp.AppendPacket(buf, mp.RespAddRcpt, mp.AppendStrings(nil, e.Addr))
	case pmult.EditAddRcptPar:
		return mp.AppendPacket(buf, mp.RespAddRcptPar, mp.AddrArgs{Addr: e.Addr, Args: e.Args, HasArgs: e.HasArgs}.Append(nil))
	case pmult.EditDelRcpt:
		return mp.AppendPacket(buf, mp.RespDelRcpt, mp.AppendStrings(nil, e.Addr))
	case pmult.EditChangeFrom:
		return mp.AppendPacket(buf, mp.RespChgFrom, mp.AddrArgs{Addr: e.Addr, Args: e.Args, HasArgs: e.HasArgs}.Append(nil))
	case pmult.EditQuarantine:
		return mp.AppendPacket(buf, mp.RespQuarantine, mp.AppendStrings(nil, e.Value))
	case pmult.EditReplaceBody:
		b := e.Body
		if len(b) == 0 {
			return mp.AppendPacket(buf, mp.RespReplBody)
		}
		for len(b) > 0 {
			n := min(len(b), mp.MaxChunk)
			buf = mp.AppendPacket(buf, mp.RespReplBody, b[:n])
			b = b[n:]
		}
	}
	return buf
}
