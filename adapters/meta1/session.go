// session.go: one SMTP session carried on an smtps connection: pmilter
// stages to engine events (connect, ehlo, mail, rcpt, data, the message
// chunks split into header, end-of-headers and body events, dot, abort,
// close), the macros pmult synthesises plus those MeTA1 sent, and merged
// replies back to pmilter reply codes and modifications.

package meta1

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// offer is what the pmilter side can carry out, as modelled: recipient
// add/delete, header changes, message replacement (no sender change, no
// quarantine). Header values reach the engine exactly.
var offer = pmult.Offer{
	Actions:      pmult.ActAddHeaders | pmult.ActChangeHeaders | pmult.ActAddRcpt | pmult.ActAddRcptPar | pmult.ActDelRcpt | pmult.ActChangeBody,
	LeadingSpace: true,
	// The model has no header hidden from filters above those shown.
	NoHiddenHeader: true,
}

type rcpt struct {
	addr string // without brackets
	idx  uint32
}

type session struct {
	c   *conn
	id  string
	log *slog.Logger
	in  chan pmilter.Record // written and closed by the reader with c.mu held

	gone bool // out of the map, in closed (c.mu)
	busy atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	eng    *pmult.Session

	st    macros.Meta1State
	ended bool // answered 421: ignore the rest

	// Message state.
	inData  bool
	split   splitter
	verdict pmult.Reply // an objecting verdict reached in the data stage
	rcpts   []rcpt
	nrcpt   uint32
	headers pmult.HeaderList // the message's headers as smtps has them (KeepName: the model changes values only)
	dataMac []pmult.MacroSet

	buf []byte
	enc pmilter.Encoder
}

func (c *conn) newSession(id string) *session {
	s := &session{c: c, id: id, in: make(chan pmilter.Record, orDefault(c.srv.QueueDepth, DefaultQueueDepth)),
		headers: pmult.HeaderList{KeepName: true}}
	s.ctx, s.cancel = context.WithCancel(c.ctx)
	s.log = c.log.With("session", id)
	s.st.SessionID = id
	s.st.Version = c.srv.Version
	s.split.max = orDefault(c.srv.MaxHeader, DefaultMaxHeader)
	return s
}

func (s *session) run() {
	defer s.c.wg.Done()
	defer s.c.srv.sessions.Add(-1)
	defer s.cancel()
	defer func() {
		if s.eng != nil {
			s.eng.Handle(context.WithoutCancel(s.ctx), &pmult.Event{Kind: pmult.KindQuit})
			s.eng.Close()
		}
		if s.c.srv.cs.Closing() {
			s.c.closeIfIdle()
		}
	}()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("internal error, session dropped", "panic", fmt.Sprint(v))
			s.c.writeSSD(s.id, "")
			s.c.sessionEnded(s)
			for range s.in {
			}
		}
	}()
	for rec := range s.in {
		if s.ended {
			continue
		}
		s.record(rec)
	}
}

// record runs one record and writes its reply.
func (s *session) record(rec pmilter.Record) {
	if rec.Type == pmilter.RTClose {
		return // run's deferred QUIT closes the backends
	}
	if rec.Type != pmilter.RTAbort {
		s.busy.Store(true)
		defer s.busy.Store(false)
	}
	rep, mods, err := s.handle(rec)
	if err != nil {
		s.log.Warn("bad record: session dropped with 421", "type", pmilter.TypeName(rec.Type), "err", err)
		s.end("")
		return
	}
	if rec.Type == pmilter.RTAbort {
		return
	}
	if s.ctx.Err() != nil {
		s.log.Info("no reply: smtps closed the session or the connection", "type", pmilter.TypeName(rec.Type))
		return
	}
	if rep.Verdict == pmult.Shutdown {
		s.end(s.text(rep, '4'))
		return
	}
	s.buf = s.appendReply(s.buf[:0], rep, mods)
	if err := s.c.write(s.buf); err != nil {
		s.log.Warn("cannot answer smtps", "err", err)
	}
}

// end answers 421 and ends the session.
func (s *session) end(text string) {
	s.ended = true
	s.c.writeSSD(s.id, text)
	s.c.sessionEnded(s)
	s.cancel()
}

// mods is what the dot stage sends besides the verdict.
type mods struct {
	hdr         []pmilter.HdrMod
	rcpts       []pmilter.Entry
	replacement []byte
}

func (s *session) macroSet(k pmult.Kind, st macros.Meta1Stage, rec pmilter.Record) ([]pmult.MacroSet, error) {
	pairs := macros.Meta1Synth(make([]string, 0, 24), st, &s.st)
	for _, en := range rec.Entries {
		if en.Tag != pmilter.FMacro {
			continue
		}
		id, val, err := pmilter.IntStringOf(en)
		if err != nil {
			return nil, err
		}
		name, ok := pmilter.MacroName(id)
		if !ok {
			s.log.Debug("macro with an unknown id ignored", "id", id)
			continue
		}
		pairs = append(pairs, macros.Wire(name), val)
	}
	return []pmult.MacroSet{{For: k, Pairs: pairs}}, nil
}

func (s *session) handle(rec pmilter.Record) (pmult.Reply, *mods, error) {
	ctx := s.ctx
	switch rec.Type {
	case pmilter.RTConnect:
		ev := &pmult.Event{Kind: pmult.KindConnect}
		for _, en := range rec.Entries {
			switch en.Tag {
			case pmilter.FClientAddr:
				a, err := pmilter.AddrOf(en)
				if err != nil {
					return pmult.Reply{}, nil, err
				}
				s.st.ClientAddr = a
			case pmilter.FClientPort:
				p, err := pmilter.Uint32Of(en)
				if err != nil || p > 65535 {
					return pmult.Reply{}, nil, fmt.Errorf("client port: %v %d", err, p)
				}
				s.st.ClientPort = int(p)
			case pmilter.FHostname:
				ev.Hostname = string(en.Val)
			}
		}
		ev.Family, ev.Address, ev.Port = 'U', "", uint16(s.st.ClientPort)
		if a := s.st.ClientAddr; a.IsValid() {
			ev.Address = a.String()
			ev.Family = '4'
			if a.Is6() {
				ev.Family = '6'
			}
		}
		if ev.Hostname == "" && ev.Address != "" {
			ev.Hostname = "[" + ev.Address + "]"
		}
		var err error
		if ev.Macros, err = s.macroSet(pmult.KindConnect, macros.M1Connect, rec); err != nil {
			return pmult.Reply{}, nil, err
		}
		s.eng = s.c.srv.currentEngine().NewSession(s.c.id+"/"+s.id, s.log)
		o := offer
		o.Front, o.Listener = "meta1", s.c.listener
		s.eng.Open(ctx, o, nil)
		return s.eng.Handle(ctx, ev), nil, nil
	case pmilter.RTEhlo:
		ev := &pmult.Event{Kind: pmult.KindHelo}
		for _, en := range rec.Entries {
			if en.Tag == pmilter.FHelo {
				ev.Arg = string(en.Val)
			}
		}
		s.st.Helo = ev.Arg
		var err error
		if ev.Macros, err = s.macroSet(pmult.KindHelo, macros.M1Helo, rec); err != nil {
			return pmult.Reply{}, nil, err
		}
		return s.eng.Handle(ctx, ev), nil, nil
	case pmilter.RTMail, pmilter.RTRcpt:
		k, st := pmult.KindMail, macros.M1Mail
		if rec.Type == pmilter.RTRcpt {
			k, st = pmult.KindRcpt, macros.M1Rcpt
		}
		ev := &pmult.Event{Kind: k}
		addr := ""
		idx := s.nrcpt
		for _, en := range rec.Entries {
			switch en.Tag {
			case pmilter.FAddr:
				addr = string(en.Val)
			case pmilter.FArg:
				ev.Args = append(ev.Args, string(en.Val))
			case pmilter.FRcptIdx:
				v, err := pmilter.Uint32Of(en)
				if err != nil {
					return pmult.Reply{}, nil, err
				}
				idx = v
			}
		}
		ev.Args = append([]string{addr}, ev.Args...)
		if k == pmult.KindMail {
			s.newMessage()
			s.st.From = macros.StripBrackets(addr)
		} else {
			s.st.RcptAddr = macros.StripBrackets(addr)
		}
		var err error
		if ev.Macros, err = s.macroSet(k, st, rec); err != nil {
			return pmult.Reply{}, nil, err
		}
		rep := s.eng.Handle(ctx, ev)
		if k == pmult.KindRcpt {
			s.nrcpt++
			if rep.Verdict.Objects() {
				s.st.NBadRcpts++
			} else {
				s.st.NRcpts++
				s.rcpts = append(s.rcpts, rcpt{addr: s.st.RcptAddr, idx: idx})
			}
		}
		return rep, nil, nil
	case pmilter.RTData:
		ms, err := s.macroSet(pmult.KindData, macros.M1Data, rec)
		if err != nil {
			return pmult.Reply{}, nil, err
		}
		s.inData = true
		s.split.reset()
		s.headers.Fields = s.headers.Fields[:0]
		s.verdict = pmult.Reply{}
		s.dataMac = ms
		return s.eng.Handle(ctx, &pmult.Event{Kind: pmult.KindData, Macros: ms}), nil, nil
	case pmilter.RTMsg:
		if !s.inData {
			return pmult.Reply{}, nil, fmt.Errorf("message chunk outside the data stage")
		}
		for _, en := range rec.Entries {
			if en.Tag == pmilter.FChunk {
				s.split.write(en.Val, s.emit)
			}
		}
		return s.verdict, nil, nil
	case pmilter.RTDot:
		if !s.inData {
			return pmult.Reply{}, nil, fmt.Errorf("dot outside the data stage")
		}
		s.split.finish(s.emit)
		s.inData = false
		ms, err := s.macroSet(pmult.KindEOM, macros.M1Dot, rec)
		if err != nil {
			return pmult.Reply{}, nil, err
		}
		var rep pmult.Reply
		if s.verdict.Verdict.Objects() {
			rep = s.verdict
			s.eng.Handle(ctx, &pmult.Event{Kind: pmult.KindAbort})
		} else {
			rep = s.eng.Handle(ctx, &pmult.Event{Kind: pmult.KindEOM, Macros: ms})
		}
		var m *mods
		if len(rep.Edits) > 0 && !rep.Verdict.Objects() {
			m = &mods{}
			m.hdr, m.rcpts, m.replacement = s.translate(rep.Edits)
		}
		s.resetMessage()
		return rep, m, nil
	case pmilter.RTAbort:
		if s.eng != nil {
			s.eng.Handle(ctx, &pmult.Event{Kind: pmult.KindAbort})
		}
		s.inData = false
		s.resetMessage()
		return pmult.Reply{}, nil, nil
	}
	return pmult.Reply{}, nil, fmt.Errorf("unexpected record type %s", pmilter.TypeName(rec.Type))
}

func (s *session) newMessage() {
	s.resetMessage()
	s.st.NRcpts, s.st.NBadRcpts, s.st.RcptAddr, s.nrcpt = 0, 0, "", 0
	s.rcpts = s.rcpts[:0]
}

func (s *session) resetMessage() {
	s.split.reset()
	s.headers.Fields = s.headers.Fields[:0]
	s.verdict = pmult.Reply{}
	s.dataMac = nil
}

// emit runs one event of the data stage, unless the message is decided.
func (s *session) emit(ev *pmult.Event) {
	if ev.Kind == pmult.KindHeader {
		s.headers.Fields = append(s.headers.Fields, pmult.Header{Name: ev.Name, Value: ev.Value})
	}
	if s.verdict.Verdict.Objects() {
		return
	}
	if ev.Kind == pmult.KindNone { // the splitter's "header too long"
		s.verdict = pmult.Reply{Verdict: pmult.Reject, Text: "552 5.3.4 Message header too long", From: "pmult"}
		s.log.Warn("header longer than max_header: message rejected", "max_header", s.split.max)
		return
	}
	if rep := s.eng.Handle(s.ctx, ev); rep.Verdict.Objects() {
		s.verdict = rep
	}
}

// text returns the custom reply text of rep when it is a valid SMTP reply
// starting with class (4 or 5), else "".
func (s *session) text(rep pmult.Reply, class byte) string {
	t := rep.Text
	if t == "" {
		return ""
	}
	if len(t) < 3 || t[0] != class || t[1] < '0' || t[1] > '9' || t[2] < '0' || t[2] > '9' ||
		(len(t) > 3 && t[3] != ' ' && t[3] != '-') {
		s.log.Warn("reply text does not fit the verdict, plain verdict sent", "backend", rep.From,
			"verdict", rep.Verdict.String(), "text", t)
		return ""
	}
	return t
}

// appendReply appends the reply record (and, for a message replacement,
// the replacement records before it).
func (s *session) appendReply(buf []byte, rep pmult.Reply, m *mods) []byte {
	code, text := pmilter.ReplyContinue, ""
	switch rep.Verdict {
	case pmult.Accept:
		code = pmilter.ReplyAccept
	case pmult.Reject:
		code, text = pmilter.ReplyReject, s.text(rep, '5')
	case pmult.Tempfail:
		code, text = pmilter.ReplyTempfail, s.text(rep, '4')
	case pmult.Discard:
		code = pmilter.ReplyDiscard
	}
	var hm []pmilter.HdrMod
	var rcptMods []pmilter.Entry
	var replacement []byte
	if m != nil {
		hm, rcptMods, replacement = m.hdr, m.rcpts, m.replacement
	}
	if replacement != nil {
		for off := 0; off < len(replacement) || off == 0; off += pmilter.ChunkSize {
			end := min(off+pmilter.ChunkSize, len(replacement))
			s.enc.Begin(buf, pmilter.RTMsgReplace, s.id)
			s.enc.Bytes(pmilter.FChunk, replacement[off:end])
			buf = s.enc.End()
			if end == len(replacement) {
				break
			}
		}
	}
	s.enc.Begin(buf, pmilter.RTReply, s.id)
	s.enc.Uint32(pmilter.FReplyCode, code)
	if text != "" {
		s.enc.String(pmilter.FReplyText, text)
	}
	for _, en := range rcptMods {
		s.enc.Bytes(en.Tag, en.Val)
	}
	if replacement != nil {
		s.enc.Uint32(pmilter.FMsgReplace, uint32(len(replacement)))
	} else {
		for _, h := range hm {
			s.enc.AppendHdrMod(h)
		}
	}
	return s.enc.End()
}

// translate turns engine edits into pmilter modifications: header edits
// to positional modifications against the header list as modified so far,
// recipient edits to add/delete fields, a body replacement to a complete
// replacement message (the edited headers, a blank line, the new body),
// which then carries the header edits itself.
func (s *session) translate(edits []pmult.Edit) (hm []pmilter.HdrMod, rcpts []pmilter.Entry, replacement []byte) {
	h := &s.headers
	var body []byte
	replaced := false
	for _, e := range edits {
		switch e.Kind {
		case pmult.EditAddHeader, pmult.EditInsertHeader, pmult.EditChangeHeader:
			switch c := h.Apply(e); c.Op {
			case pmult.HeaderNone:
				s.log.Info("header modification request does not match any header", "name", e.Name, "index", e.Index)
			case pmult.HeaderAppended:
				hm = append(hm, pmilter.HdrMod{Type: pmilter.HdrAppend, Pos: uint32(c.Pos), Name: e.Name, Value: wireValue(e.Value)})
			case pmult.HeaderInserted:
				hm = append(hm, pmilter.HdrMod{Type: pmilter.HdrInsert, Pos: uint32(c.Pos), Name: e.Name, Value: wireValue(e.Value)})
			case pmult.HeaderDeleted:
				hm = append(hm, pmilter.HdrMod{Type: pmilter.HdrRemove, Pos: uint32(c.Pos), Name: c.Field.Name})
			case pmult.HeaderChanged:
				hm = append(hm, pmilter.HdrMod{Type: pmilter.HdrReplace, Pos: uint32(c.Pos), Name: c.Field.Name, Value: wireValue(e.Value)})
			}
		case pmult.EditAddRcpt, pmult.EditAddRcptPar:
			v := make([]byte, 0, len(e.Addr)+1+len(e.Args))
			v = append(append(append(v, e.Addr...), 0), e.Args...)
			rcpts = append(rcpts, pmilter.Entry{Tag: pmilter.FRcptAdd, Val: v})
		case pmult.EditDelRcpt:
			idx := ^uint32(0)
			a := macros.StripBrackets(e.Addr)
			for _, r := range s.rcpts {
				if strings.EqualFold(r.addr, a) {
					idx = r.idx
					break
				}
			}
			v := pmilter.AppendUint32(nil, idx)
			rcpts = append(rcpts, pmilter.Entry{Tag: pmilter.FRcptDel, Val: append(v, e.Addr...)})
		case pmult.EditReplaceBody:
			body, replaced = e.Body, true
		default:
			s.log.Warn("modification pmilter cannot carry dropped", "edit", e.Kind.String(), "backend", "merged")
		}
	}
	if !replaced {
		return hm, rcpts, nil
	}
	n := len(body) + 2
	for _, f := range h.Fields {
		n += len(f.Name) + len(f.Value) + 3
	}
	replacement = make([]byte, 0, n)
	for _, f := range h.Fields {
		replacement = append(replacement, f.Name...)
		replacement = append(replacement, ':')
		replacement = append(replacement, wireValue(f.Value)...)
		replacement = append(replacement, '\r', '\n')
	}
	replacement = append(replacement, '\r', '\n')
	replacement = append(replacement, body...)
	return hm, rcpts, replacement
}

// wireValue turns an engine header value ("\n" between folded lines) into
// message text (CRLF between folded lines).
func wireValue(v string) string {
	if !strings.Contains(v, "\n") {
		return v
	}
	return strings.ReplaceAll(strings.ReplaceAll(v, "\r\n", "\n"), "\n", "\r\n")
}
