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
	in  chan Record // written and closed by the reader with c.mu held

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
	headers []hfield
	dataMac []pmult.MacroSet

	buf []byte
	enc Encoder
}

func (c *conn) newSession(id string) *session {
	s := &session{c: c, id: id, in: make(chan Record, orDefault(c.srv.QueueDepth, DefaultQueueDepth))}
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
func (s *session) record(rec Record) {
	if rec.Type == RTClose {
		return // run's deferred QUIT closes the backends
	}
	if rec.Type != RTAbort {
		s.busy.Store(true)
		defer s.busy.Store(false)
	}
	rep, mods, err := s.handle(rec)
	if err != nil {
		s.log.Warn("bad record: session dropped with 421", "type", TypeName(rec.Type), "err", err)
		s.end("")
		return
	}
	if rec.Type == RTAbort {
		return
	}
	if s.ctx.Err() != nil {
		s.log.Info("no reply: smtps closed the session or the connection", "type", TypeName(rec.Type))
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
	hdr         []HdrMod
	rcpts       []Entry
	replacement []byte
}

func (s *session) macroSet(k pmult.Kind, st macros.Meta1Stage, rec Record) ([]pmult.MacroSet, error) {
	pairs := macros.Meta1Synth(make([]string, 0, 24), st, &s.st)
	for _, en := range rec.Entries {
		if en.Tag != FMacro {
			continue
		}
		id, val, err := IntStringOf(en)
		if err != nil {
			return nil, err
		}
		name, ok := MacroName(id)
		if !ok {
			s.log.Debug("macro with an unknown id ignored", "id", id)
			continue
		}
		pairs = append(pairs, macros.Wire(name), val)
	}
	return []pmult.MacroSet{{For: k, Pairs: pairs}}, nil
}

func (s *session) handle(rec Record) (pmult.Reply, *mods, error) {
	ctx := s.ctx
	switch rec.Type {
	case RTConnect:
		ev := &pmult.Event{Kind: pmult.KindConnect}
		for _, en := range rec.Entries {
			switch en.Tag {
			case FClientAddr:
				a, err := AddrOf(en)
				if err != nil {
					return pmult.Reply{}, nil, err
				}
				s.st.ClientAddr = a
			case FClientPort:
				p, err := Uint32Of(en)
				if err != nil || p > 65535 {
					return pmult.Reply{}, nil, fmt.Errorf("client port: %v %d", err, p)
				}
				s.st.ClientPort = int(p)
			case FHostname:
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
		s.eng.Open(ctx, offer, nil)
		return s.eng.Handle(ctx, ev), nil, nil
	case RTEhlo:
		ev := &pmult.Event{Kind: pmult.KindHelo}
		for _, en := range rec.Entries {
			if en.Tag == FHelo {
				ev.Arg = string(en.Val)
			}
		}
		s.st.Helo = ev.Arg
		var err error
		if ev.Macros, err = s.macroSet(pmult.KindHelo, macros.M1Helo, rec); err != nil {
			return pmult.Reply{}, nil, err
		}
		return s.eng.Handle(ctx, ev), nil, nil
	case RTMail, RTRcpt:
		k, st := pmult.KindMail, macros.M1Mail
		if rec.Type == RTRcpt {
			k, st = pmult.KindRcpt, macros.M1Rcpt
		}
		ev := &pmult.Event{Kind: k}
		addr := ""
		idx := s.nrcpt
		for _, en := range rec.Entries {
			switch en.Tag {
			case FAddr:
				addr = string(en.Val)
			case FArg:
				ev.Args = append(ev.Args, string(en.Val))
			case FRcptIdx:
				v, err := Uint32Of(en)
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
	case RTData:
		ms, err := s.macroSet(pmult.KindData, macros.M1Data, rec)
		if err != nil {
			return pmult.Reply{}, nil, err
		}
		s.inData = true
		s.split.reset()
		s.headers = s.headers[:0]
		s.verdict = pmult.Reply{}
		s.dataMac = ms
		return s.eng.Handle(ctx, &pmult.Event{Kind: pmult.KindData, Macros: ms}), nil, nil
	case RTMsg:
		if !s.inData {
			return pmult.Reply{}, nil, fmt.Errorf("message chunk outside the data stage")
		}
		for _, en := range rec.Entries {
			if en.Tag == FChunk {
				s.split.write(en.Val, s.emit)
			}
		}
		return s.verdict, nil, nil
	case RTDot:
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
	case RTAbort:
		if s.eng != nil {
			s.eng.Handle(ctx, &pmult.Event{Kind: pmult.KindAbort})
		}
		s.inData = false
		s.resetMessage()
		return pmult.Reply{}, nil, nil
	}
	return pmult.Reply{}, nil, fmt.Errorf("unexpected record type %s", TypeName(rec.Type))
}

func (s *session) newMessage() {
	s.resetMessage()
	s.st.NRcpts, s.st.NBadRcpts, s.st.RcptAddr, s.nrcpt = 0, 0, "", 0
	s.rcpts = s.rcpts[:0]
}

func (s *session) resetMessage() {
	s.split.reset()
	s.headers = s.headers[:0]
	s.verdict = pmult.Reply{}
	s.dataMac = nil
}

// emit runs one event of the data stage, unless the message is decided.
func (s *session) emit(ev *pmult.Event) {
	if ev.Kind == pmult.KindHeader {
		s.headers = append(s.headers, hfield{name: ev.Name, value: ev.Value})
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
	code, text := ReplyContinue, ""
	switch rep.Verdict {
	case pmult.Accept:
		code = ReplyAccept
	case pmult.Reject:
		code, text = ReplyReject, s.text(rep, '5')
	case pmult.Tempfail:
		code, text = ReplyTempfail, s.text(rep, '4')
	case pmult.Discard:
		code = ReplyDiscard
	}
	var hm []HdrMod
	var rcptMods []Entry
	var replacement []byte
	if m != nil {
		hm, rcptMods, replacement = m.hdr, m.rcpts, m.replacement
	}
	if replacement != nil {
		for off := 0; off < len(replacement) || off == 0; off += ChunkSize {
			end := min(off+ChunkSize, len(replacement))
			s.enc.Begin(buf, RTMsgReplace, s.id)
			s.enc.Bytes(FChunk, replacement[off:end])
			buf = s.enc.End()
			if end == len(replacement) {
				break
			}
		}
	}
	s.enc.Begin(buf, RTReply, s.id)
	s.enc.Uint32(FReplyCode, code)
	if text != "" {
		s.enc.String(FReplyText, text)
	}
	for _, en := range rcptMods {
		s.enc.Bytes(en.Tag, en.Val)
	}
	if replacement != nil {
		s.enc.Uint32(FMsgReplace, uint32(len(replacement)))
	} else {
		for _, h := range hm {
			s.enc.AppendHdrMod(h)
		}
	}
	return s.enc.End()
}

// hfield is one header of the message as smtps has it.
type hfield struct{ name, value string }

// translate turns engine edits into pmilter modifications: header edits
// to positional modifications against the header list as modified so far,
// recipient edits to add/delete fields, a body replacement to a complete
// replacement message (the edited headers, a blank line, the new body),
// which then carries the header edits itself.
func (s *session) translate(edits []pmult.Edit) (hm []HdrMod, rcpts []Entry, replacement []byte) {
	h := s.headers
	var body []byte
	replaced := false
	for _, e := range edits {
		switch e.Kind {
		case pmult.EditAddHeader:
			hm = append(hm, HdrMod{Type: HdrAppend, Pos: uint32(len(h)), Name: e.Name, Value: wireValue(e.Value)})
			h = append(h, hfield{e.Name, e.Value})
		case pmult.EditInsertHeader:
			pos := min(max(e.Index, 0), len(h))
			hm = append(hm, HdrMod{Type: HdrInsert, Pos: uint32(pos), Name: e.Name, Value: wireValue(e.Value)})
			h = append(h, hfield{})
			copy(h[pos+1:], h[pos:])
			h[pos] = hfield{e.Name, e.Value}
		case pmult.EditChangeHeader:
			i := nthHeader(h, e.Name, e.Index)
			switch {
			case i < 0 && e.Value == "":
				s.log.Info("header modification request does not match any header", "name", e.Name, "index", e.Index)
			case i < 0:
				hm = append(hm, HdrMod{Type: HdrAppend, Pos: uint32(len(h)), Name: e.Name, Value: wireValue(e.Value)})
				h = append(h, hfield{e.Name, e.Value})
			case e.Value == "":
				hm = append(hm, HdrMod{Type: HdrRemove, Pos: uint32(i), Name: h[i].name})
				h = append(h[:i], h[i+1:]...)
			default:
				hm = append(hm, HdrMod{Type: HdrReplace, Pos: uint32(i), Name: h[i].name, Value: wireValue(e.Value)})
				h[i].value = e.Value
			}
		case pmult.EditAddRcpt, pmult.EditAddRcptPar:
			v := make([]byte, 0, len(e.Addr)+1+len(e.Args))
			v = append(append(append(v, e.Addr...), 0), e.Args...)
			rcpts = append(rcpts, Entry{Tag: FRcptAdd, Val: v})
		case pmult.EditDelRcpt:
			idx := ^uint32(0)
			a := macros.StripBrackets(e.Addr)
			for _, r := range s.rcpts {
				if strings.EqualFold(r.addr, a) {
					idx = r.idx
					break
				}
			}
			v := byteOrder.AppendUint32(nil, idx)
			rcpts = append(rcpts, Entry{Tag: FRcptDel, Val: append(v, e.Addr...)})
		case pmult.EditReplaceBody:
			body, replaced = e.Body, true
		default:
			s.log.Warn("modification pmilter cannot carry dropped", "edit", e.Kind.String(), "backend", "merged")
		}
	}
	s.headers = h
	if !replaced {
		return hm, rcpts, nil
	}
	n := len(body) + 2
	for _, f := range h {
		n += len(f.name) + len(f.value) + 3
	}
	replacement = make([]byte, 0, n)
	for _, f := range h {
		replacement = append(replacement, f.name...)
		replacement = append(replacement, ':')
		replacement = append(replacement, wireValue(f.value)...)
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

func nthHeader(h []hfield, name string, n int) int {
	if n <= 0 {
		n = 1
	}
	for i := range h {
		if strings.EqualFold(h[i].name, name) {
			n--
			if n == 0 {
				return i
			}
		}
	}
	return -1
}
