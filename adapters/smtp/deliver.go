// deliver.go: the DATA stage through the engine (header, EOH, body and
// EOM events as the message arrives, held with internal/spool only until
// the edits are applied) and the relay of the edited message: header
// edits by pmult.HeaderList, sender and recipient changes (the next-hop
// transaction is reset and replayed), body replacement, quarantine,
// discard, and the loop marker.

package smtp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/internal/spool"
	"github.com/mailmux/mailmux/pmult"
)

const bodyChunk = 64 << 10

// dataState is one DATA stage's engine side (splitOut).
type dataState struct {
	c       *conn
	verdict pmult.Reply // an objection reached during the data stage
	bypass  bool        // our loop marker (after-queue): relayed unfiltered
	tooBig  bool
	noBody  bool // no backend wants body events
}

func (d *dataState) live() bool { return !d.verdict.Verdict.Objects() && !d.bypass && !d.tooBig }

func (d *dataState) handle(ev *pmult.Event) {
	if r := d.c.eng.Handle(d.c.ctx, ev); r.Verdict.Objects() {
		d.verdict = r
	} else if r.Verdict == pmult.Skip && ev.Kind == pmult.KindBody {
		d.noBody = true
	}
}

func (d *dataState) header(name, value string) {
	c := d.c
	c.msg.headers.Fields = append(c.msg.headers.Fields, pmult.Header{Name: name, Value: value})
	if c.srv.Mode == AfterQueue && c.srv.LoopMarker != "-" && strings.EqualFold(name, c.srv.LoopMarker) &&
		strings.TrimSpace(value) == c.srv.Hostname && d.live() {
		d.bypass = true
		c.log.Debug("message carries our loop marker: relayed without filtering", "marker", name)
		c.eng.Note(pmult.KindHeader, pmult.Note{What: "loop_marker", Action: "unfiltered"})
		c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindAbort})
		return
	}
	if d.live() {
		d.handle(&pmult.Event{Kind: pmult.KindHeader, Name: name, Value: value})
	}
}

func (d *dataState) eoh() {
	if d.live() {
		d.handle(&pmult.Event{Kind: pmult.KindEOH})
	}
}

func (d *dataState) body(p []byte) {
	m := &d.c.msg
	if d.tooBig {
		return
	}
	m.chunk = append(m.chunk, p...)
	if len(m.chunk) >= bodyChunk {
		d.flushBody()
	}
}

// flushBody keeps the body bytes gathered so far (internal/spool) and
// gives them to the engine as one body event.
func (d *dataState) flushBody() {
	c := d.c
	m := &c.msg
	if len(m.chunk) == 0 {
		return
	}
	if m.body == nil {
		mem := c.srv.SpoolMemory
		if mem == 0 {
			mem = DefaultSpoolMemory
		}
		m.body = spool.New(spool.Config{Memory: mem, Dir: c.srv.SpoolDir, Budget: c.srv.budget})
	}
	m.body.Write(m.chunk)
	if d.live() && !d.noBody {
		d.handle(&pmult.Event{Kind: pmult.KindBody, Chunk: m.chunk})
	}
	m.chunk = m.chunk[:0]
}

func (c *conn) data(cmd command) {
	switch {
	case !c.inMail:
		c.badCommand("503 5.5.1 Error: need RCPT command")
		return
	case len(c.rcpts) == 0:
		c.badCommand("554 5.5.1 Error: no valid recipients")
		return
	case cmd.arg != "":
		c.badCommand("501 5.5.4 Syntax: DATA")
		return
	}
	r := c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindData, Macros: []pmult.MacroSet{{For: pmult.KindData, Pairs: []string{"i", c.qid}}}})
	if r.Verdict.Objects() && r.Verdict != pmult.Discard {
		c.answerVerdict(r)
		if !c.closed {
			c.resetTxn()
		}
		return
	}
	if r.Verdict == pmult.Discard {
		c.discard = true
		c.abortTxn()
	}
	c.reply("354 End data with <CR><LF>.<CR><LF>")
	if !c.flush() {
		return
	}
	d := &dataState{c: c, noBody: c.eng.Negotiated().NoEvent.Has(pmult.KindBody)}
	c.msg.reset()
	c.dr.reset(c.br)
	c.sp.reset()
	c.sp.max = orDefault(c.srv.MaxHeader, DefaultMaxHeader)
	limit := c.srv.maxMessage()
	deadline := time.Now().Add(orDefault(c.srv.DataDeadline, DefaultDataDeadline))
	dataTimeout := orDefault(c.srv.DataTimeout, DefaultDataTimeout)
	for {
		dl := time.Now().Add(dataTimeout)
		if deadline.Before(dl) {
			dl = deadline
		}
		c.nc.SetReadDeadline(dl)
		p, eol, err := c.dr.next()
		if err == errDataEOF {
			break
		}
		if err != nil {
			c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindAbort})
			c.inMail = false
			c.resetTxn()
			c.readFailed(err, "data")
			return
		}
		c.msg.size += int64(len(p))
		if limit > 0 && c.msg.size > limit && !d.tooBig {
			d.tooBig = true
			c.log.Warn("message too big: refused", "limit", limit, "from", c.from)
			if c.msg.body != nil {
				c.msg.body.Reset()
			}
		}
		if !d.tooBig {
			c.sp.write(p, eol, d)
		}
	}
	if !d.tooBig {
		c.sp.finish(d)
		d.flushBody()
	}
	c.endData(d)
}

// endData answers the end of the message. The engine gets EOM, or ABORT
// for a message that ends otherwise (once: a loop-marked message was
// aborted when its marker came).
func (c *conn) endData(d *dataState) {
	defer func() {
		c.inMail = false // the engine's message is over: no second ABORT
		c.resetTxn()
	}()
	abort := func() {
		if !d.bypass {
			c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindAbort})
		}
	}
	switch {
	case d.tooBig:
		abort()
		c.reply("552 5.3.4 Error: message file too big")
		return
	case c.sp.tooLong:
		abort()
		c.log.Warn("header longer than the limit: message refused", "limit", c.sp.max)
		c.reply("552 5.3.4 Error: message header too long")
		return
	case c.dr.bareLF && c.srv.BareLF == BareLFReject:
		abort()
		c.log.Warn("bare LF in the message: refused (bare_lf = reject)")
		c.reply("550 5.5.2 Error: bare <LF> received")
		return
	case d.verdict.Verdict.Objects():
		abort()
		if d.verdict.Verdict == pmult.Discard {
			c.log.Info("message discarded", "backend", d.verdict.From)
			c.reply("250 2.0.0 Ok: discarded")
			return
		}
		c.answerVerdict(d.verdict)
		return
	}
	var edits []pmult.Edit
	var eom pmult.Reply
	if !d.bypass {
		r := c.eng.Handle(c.ctx, &pmult.Event{Kind: pmult.KindEOM, Macros: []pmult.MacroSet{{For: pmult.KindEOM, Pairs: []string{"i", c.qid}}}})
		switch {
		case r.Verdict == pmult.Discard:
			c.log.Info("message discarded", "backend", r.From)
			c.reply("250 2.0.0 Ok: discarded")
			return
		case r.Verdict.Objects():
			c.answerVerdict(r)
			return
		}
		edits, eom = r.Edits, r
	}
	if c.discard {
		c.log.Info("message discarded (at the envelope)")
		c.reply("250 2.0.0 Ok: discarded")
		c.eng.EndMessage(eom)
		return
	}
	t, txn := c.relay(edits, d.bypass)
	c.reply(t)
	c.endMessage(t, eom)
	if txn != nil {
		// QUIT to the next hop while the client goes on (its answer is
		// the next hop's, already in); the connection's end waits for it.
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			if err := txn.Close(); err != nil {
				c.log.Debug("next hop QUIT", "err", err)
			}
		}()
	}
}

// endMessage ends the message's decision record (held since EOM:
// HoldDecisions) with what the client got: the engine's EOM reply for a
// 250, else t, pmult's own (a quarantine carried out, the next hop's
// refusal).
func (c *conn) endMessage(t string, eom pmult.Reply) {
	switch {
	case strings.HasPrefix(t, "2"):
		c.eng.EndMessage(eom)
	case strings.HasPrefix(t, "4"):
		c.eng.EndMessage(pmult.Reply{Verdict: pmult.Tempfail, Text: t, From: "pmult"})
	default:
		c.eng.EndMessage(pmult.Reply{Verdict: pmult.Reject, Text: t, From: "pmult"})
	}
}

// relay applies the edits and sends the message to the next hop; it
// returns the client's reply, and the transaction to close once the
// client has it (nil: none). marked: the message carries our loop marker
// already (relayed unfiltered), which is not added again.
func (c *conn) relay(edits []pmult.Edit, marked bool) (string, Txn) {
	from, fromPar := c.from, c.fromPar
	rcpts := append([]rcpt(nil), c.rcpts...)
	envChanged := c.hopExtra
	var newBody []byte
	replaced := false
	var quarantine *pmult.Edit
	for i := range edits {
		e := &edits[i]
		switch e.Kind {
		case pmult.EditAddHeader, pmult.EditInsertHeader, pmult.EditChangeHeader:
			if ch := c.msg.headers.Apply(*e); ch.Op == pmult.HeaderNone {
				c.log.Info("header edit does not match any header", "name", e.Name, "index", e.Index)
			}
		case pmult.EditChangeFrom:
			from, fromPar, envChanged = bracket(e.Addr), strings.Fields(e.Args), true
		case pmult.EditAddRcpt, pmult.EditAddRcptPar:
			rcpts = append(rcpts, rcpt{path: bracket(e.Addr), params: strings.Fields(e.Args)})
			envChanged = true
		case pmult.EditDelRcpt:
			a := unbracket(e.Addr)
			for j := 0; j < len(rcpts); j++ {
				if strings.EqualFold(unbracket(rcpts[j].path), a) {
					rcpts = append(rcpts[:j], rcpts[j+1:]...)
					envChanged = true
					break
				}
			}
		case pmult.EditReplaceBody:
			newBody, replaced = e.Body, true
		case pmult.EditQuarantine:
			if quarantine == nil {
				quarantine = e
			}
		}
	}
	if quarantine != nil {
		reason := strings.TrimSpace(quarantine.Value)
		action := [...]string{"header", "tempfail", "reject"}[c.srv.Quarantine]
		c.log.Info("message quarantined", "reason", reason, "action", action)
		if !marked {
			c.eng.Note(pmult.KindEOM, pmult.Note{What: "quarantine", Action: action})
		}
		switch c.srv.Quarantine {
		case QuarantineTempfail:
			return "451 4.7.1 Message held for review", nil
		case QuarantineReject:
			return "550 5.7.1 Message rejected: quarantined", nil
		}
		c.msg.headers.Fields = append(c.msg.headers.Fields, pmult.Header{Name: c.srv.QuarantineHeader, Value: " " + reason})
	}
	if len(rcpts) == 0 {
		c.log.Info("every recipient deleted by the backends: message dropped")
		return "250 2.0.0 Ok: no recipients left", nil
	}
	if c.srv.LoopMarker != "-" && !marked {
		c.msg.headers.Fields = append(c.msg.headers.Fields, pmult.Header{Name: c.srv.LoopMarker, Value: " " + c.srv.Hostname})
	}
	if c.txn == nil {
		if !marked {
			c.eng.Note(pmult.KindEOM, pmult.Note{What: "next_hop", Action: "none"})
		}
		return "451 4.4.1 Next hop not available", nil
	}
	ctx := c.ctx
	if envChanged {
		opts, err := mailOptions(fromPar)
		if err != nil {
			opts = &gosmtp.MailOptions{}
		}
		if err := c.txn.Reset(ctx, unbracket(from), opts); err != nil {
			return c.hopFailed("MAIL (edited envelope)", err, marked), nil
		}
		for _, r := range rcpts {
			ro, err := rcptOptions(r.params)
			if err != nil {
				ro = &gosmtp.RcptOptions{}
			}
			if err := c.txn.Rcpt(ctx, unbracket(r.path), ro); err != nil {
				return c.hopFailed("RCPT (edited envelope)", err, marked), nil
			}
		}
	}
	hdr := c.msg.hdr[:0]
	for _, f := range c.msg.headers.Fields {
		hdr = append(hdr, f.Name...)
		hdr = append(hdr, ':')
		hdr = appendWireValue(hdr, f.Value)
		hdr = append(hdr, '\r', '\n')
	}
	hdr = append(hdr, '\r', '\n')
	c.msg.hdr = hdr
	var body io.Reader
	var stop func()
	if replaced {
		body = bytes.NewReader(appendCRLF(nil, newBody))
	} else {
		body, stop = c.spoolReader(c.msg.body)
	}
	perRcpt, err := c.txn.Data(ctx, io.MultiReader(bytes.NewReader(hdr), body))
	if stop != nil {
		stop()
	}
	if err != nil {
		return c.hopFailed("DATA", err, marked), nil
	}
	if refusal := lmtpRefusal(perRcpt); refusal != nil {
		if accepted := lmtpAccepted(perRcpt, rcpts); len(accepted) > 0 {
			// The client gets the refusal for the whole message: it sends
			// it again to every recipient (4xx) or bounces it (5xx), while
			// these have it already.
			c.log.Warn("LMTP next hop accepted some recipients and refused others: the client gets the refusal for all, the accepted ones will get the message again if the client retries",
				"accepted", strings.Join(accepted, " "), "refused", len(perRcpt)-len(accepted))
		}
		return c.hopFailed("DATA (LMTP recipient)", refusal, marked), nil
	}
	txn := c.txn
	c.txn = nil
	c.log.Info("message relayed", "from", from, "rcpts", len(rcpts), "edits", len(edits))
	return "250 2.0.0 Ok: queued as " + c.qid, txn
}

// lmtpRefusal is the first recipient refusal of an LMTP next hop's end of
// data replies; nil: every recipient accepted (or not LMTP).
func lmtpRefusal(perRcpt []error) error {
	for _, e := range perRcpt {
		if e != nil {
			return e
		}
	}
	return nil
}

// lmtpAccepted are the recipients an LMTP next hop accepted at end of
// data: perRcpt is in the order of rcpts, the transaction's recipients.
func lmtpAccepted(perRcpt []error, rcpts []rcpt) []string {
	var out []string
	for i, e := range perRcpt {
		if e == nil && i < len(rcpts) {
			out = append(out, rcpts[i].path)
		}
	}
	return out
}

// hopFailed logs the next hop's refusal or failure after the client's
// data, and notes it in the message's decision record (policy next_hop,
// Action its command: mail, rcpt or data) unless the message was
// relayed unfiltered (marked: no engine message).
func (c *conn) hopFailed(stage string, err error, marked bool) string {
	t := c.hopReply(err)
	c.log.Warn("next hop refused or failed: nothing accepted", "stage", stage, "reply", t, "err", err)
	if !marked {
		verb, _, _ := strings.Cut(stage, " ")
		c.eng.Note(pmult.KindEOM, pmult.Note{What: "next_hop", Action: strings.ToLower(verb)})
	}
	return t
}

func bracket(a string) string {
	if strings.HasPrefix(a, "<") {
		return a
	}
	return "<" + a + ">"
}

// spoolReader reads a spool's chunks (nil: empty); stop, when not nil,
// must be called when the reader is no longer read. A small body kept in
// memory is copied out; a bigger one is read as the relay takes it.
func (c *conn) spoolReader(sp *spool.Spool) (io.Reader, func()) {
	if sp == nil {
		return bytes.NewReader(nil), nil
	}
	if !sp.Spilled() && sp.Len() <= bodyChunk {
		b := c.msg.out[:0]
		err := sp.Range(func(chunk []byte) bool { b = append(b, chunk...); return true })
		c.msg.out = b
		if err != nil {
			return io.MultiReader(bytes.NewReader(b), errReader{err}), nil
		}
		return bytes.NewReader(b), nil
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := sp.Range(func(chunk []byte) bool {
			_, werr := pw.Write(chunk)
			return werr == nil
		})
		if err == nil {
			err = sp.Err()
		}
		pw.CloseWithError(err)
	}()
	return pr, func() {
		pr.CloseWithError(errors.New("reader stopped"))
		<-done
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
