// fuzz_session_test.go: whole MTA sessions built from the fuzz input,
// through the front end and the engine, against in-process scripted
// backends. Invariants: no panic (not even one the session recovers from),
// every command that must be answered is answered with a reply valid for
// it (edits only those the MTA granted, at end of message), or the
// connection is closed with a log line; bounded time; no goroutine left
// after the session.

package milter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// fz reads the fuzz input; past its end every byte is 0.
type fz struct{ b []byte }

func (f *fz) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}
func (f *fz) u16() uint16 { return uint16(f.byte()) | uint16(f.byte())<<8 }
func (f *fz) u32() uint32 { return uint32(f.u16()) | uint32(f.u16())<<16 }
func (f *fz) bytes(n int) []byte {
	n = min(n, len(f.b))
	out := f.b[:n]
	f.b = f.b[n:]
	return out
}
func (f *fz) str() string { return string(f.bytes(int(f.byte() % 24))) }

// pipeListener hands out the server ends of net.Pipe connections.
type pipeListener struct {
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func (l *pipeListener) dial() (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case l.ch <- b:
		return a, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// fuzzBackend is an in-process backend whose answers come from the input.
type fuzzBackend struct {
	name    string
	caps    pmult.Caps
	openErr bool
	steps   [16]byte // per event kind: the answer
	edits   []pmult.Edit
}

func (b *fuzzBackend) Name() string { return b.name }

func (b *fuzzBackend) Open(ctx context.Context, info pmult.OpenInfo) (pmult.BackendSession, error) {
	if b.openErr {
		return nil, errors.New("scripted open failure")
	}
	return &fuzzBackendSession{b: b}, nil
}

type fuzzBackendSession struct {
	b      *fuzzBackend
	n      int
	closed bool
}

func (s *fuzzBackendSession) Caps() pmult.Caps { return s.b.caps }

func (s *fuzzBackendSession) Handle(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	answer, err := s.Post(ctx, ev)
	if err != nil || !answer {
		return pmult.Reply{}, err
	}
	return s.Await(ctx, ev)
}

func (s *fuzzBackendSession) Post(ctx context.Context, ev *pmult.Event) (bool, error) {
	if s.closed {
		return false, errors.New("post after close")
	}
	if ev.Kind == pmult.KindAbort || ev.Kind == pmult.KindQuit || ev.Kind == pmult.KindQuitNC || s.b.caps.NoReply.Has(ev.Kind) {
		return false, nil
	}
	return true, nil
}

func (s *fuzzBackendSession) Await(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	st := s.b.steps[int(ev.Kind)%len(s.b.steps)] ^ byte(s.n)
	s.n++
	if st >= 0xf8 {
		return pmult.Reply{}, errors.New("scripted backend failure")
	}
	r := pmult.Reply{Verdict: pmult.Verdict(st % 7), From: s.b.name}
	switch st >> 5 {
	case 1:
		r.Text = "550 5.7.1 no"
	case 2:
		r.Text = "451 4.7.1 later"
	case 3:
		r.Text = "bogus text"
	}
	if ev.Kind == pmult.KindEOM && r.Verdict == pmult.Continue {
		r.Edits = s.b.edits
	}
	return r, nil
}

func (s *fuzzBackendSession) Close() error {
	if s.closed {
		return errors.New("closed twice")
	}
	s.closed = true
	return nil
}

// backendsFrom builds 1 to 3 scripted backends from the input.
func backendsFrom(f *fz) []pmult.Slot {
	n := 1 + int(f.byte()%3)
	var slots []pmult.Slot
	for i := range n {
		b := &fuzzBackend{name: fmt.Sprintf("b%d", i+1)}
		b.caps.Actions = pmult.Actions(f.u16()) & 0x1ff
		b.caps.NoEvent = pmult.KindSet(f.u16()) << 1
		b.caps.NoReply = pmult.KindSet(f.u16()) << 1
		fl := f.byte()
		b.caps.Skip = fl&1 != 0
		b.caps.RejectedRcpts = fl&2 != 0
		b.caps.QuitNC = fl&4 != 0
		b.openErr = fl&0xf0 == 0xf0
		copy(b.steps[:], f.bytes(len(b.steps)))
		for range f.byte() % 4 {
			k := pmult.EditKind(1 + f.byte()%9)
			e := pmult.Edit{Kind: k, Name: "X-" + f.str(), Value: " " + f.str(), Index: int(f.byte() % 4),
				Addr: "<" + f.str() + ">", HasArgs: f.byte()&1 != 0}
			if k == pmult.EditReplaceBody {
				e.Body = bytes.Repeat([]byte("x"), int(f.u16())%(3*mp.MaxChunk))
			}
			b.edits = append(b.edits, e)
		}
		pol := pmult.Policy{}
		if a, err := pmult.ParseFailAction([]string{"accept", "tempfail", "reject", "discard"}[f.byte()%4]); err == nil {
			pol.OnFailure = a
		}
		slots = append(slots, pmult.Slot{Backend: b, Policy: pol})
	}
	return slots
}

var fuzzCmds = []byte{mp.CmdConnect, mp.CmdHelo, mp.CmdMail, mp.CmdRcpt, mp.CmdData, mp.CmdHeader, mp.CmdEOH,
	mp.CmdBody, mp.CmdEOB, mp.CmdMacro, mp.CmdAbort, mp.CmdUnknown, mp.CmdQuitNC, mp.CmdOptNeg, mp.CmdQuit}

// packetFrom builds one MTA packet: mostly a well-formed command, sometimes
// a raw code or raw data.
func packetFrom(f *fz) (byte, []byte) {
	c := f.byte()
	code := fuzzCmds[int(c&0x3f)%len(fuzzCmds)]
	if c&0x80 != 0 && c&0x40 != 0 {
		code = f.byte()
	}
	if c&0x40 != 0 {
		return code, f.bytes(int(f.byte()))
	}
	switch code {
	case mp.CmdConnect:
		fam := []byte{mp.FamilyInet, mp.FamilyInet6, mp.FamilyUnix, mp.FamilyUnknown}[f.byte()%4]
		return code, mp.Connect{Hostname: f.str(), Family: fam, Port: f.u16(), Address: f.str()}.Append(nil)
	case mp.CmdHelo, mp.CmdUnknown:
		return code, mp.AppendStrings(nil, f.str())
	case mp.CmdMail, mp.CmdRcpt:
		args := []string{"<" + f.str() + ">"}
		for range f.byte() % 3 {
			args = append(args, f.str())
		}
		return code, mp.AppendStrings(nil, args...)
	case mp.CmdHeader:
		return code, mp.AppendStrings(nil, f.str(), f.str())
	case mp.CmdBody:
		return code, bytes.Repeat([]byte{'b'}, int(f.u16())%(2*mp.MaxChunk))
	case mp.CmdMacro:
		return code, mp.AppendStrings([]byte{fuzzCmds[int(f.byte())%9]}, "{"+f.str()+"}", f.str())
	case mp.CmdOptNeg:
		return code, mp.OptNeg{Version: 2 + uint32(f.byte()%5), Actions: mp.Action(f.u16()), Protocol: mp.Protocol(f.u32())}.Append(nil)
	}
	return code, nil
}

var finalCodes = map[byte]bool{mp.RespContinue: true, mp.RespAccept: true, mp.RespReject: true, mp.RespTempfail: true,
	mp.RespDiscard: true, mp.RespReplyCode: true, mp.RespSkip: true, mp.RespShutdown: true}

var editAction = map[byte]mp.Action{mp.RespAddHeader: mp.ActAddHeaders, mp.RespInsHeader: mp.ActAddHeaders,
	mp.RespChgHeader: mp.ActChangeHeaders, mp.RespAddRcpt: mp.ActAddRcpt, mp.RespDelRcpt: mp.ActDelRcpt,
	mp.RespReplBody: mp.ActChangeBody, mp.RespChgFrom: mp.ActChangeFrom, mp.RespAddRcptPar: mp.ActAddRcptPar,
	mp.RespQuarantine: mp.ActQuarantine}

// fuzzTimeout bounds every wait of one session: a session that takes
// longer is wedged.
const fuzzTimeout = 10 * time.Second

func runFuzzSession(t *testing.T, data []byte) {
	f := &fz{b: data}
	before := runtime.NumGoroutine()
	lb := &logBuf{}
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo}))
	eng := &pmult.Engine{Log: log, Parallel: f.byte()&1 != 0, Slots: backendsFrom(f)}
	srv := &Server{Engine: eng, Log: log, NegotiateTimeout: fuzzTimeout, IdleTimeout: fuzzTimeout, WriteTimeout: fuzzTimeout}
	ln := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), fuzzTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v (a session was still open)", err)
		}
		<-served
		for deadline := time.Now().Add(fuzzTimeout); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines: %d before the session, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			}
		}
		if l := lb.String(); strings.Contains(l, "internal error") {
			t.Fatalf("the session panicked:\n%s", l)
		}
	}()
	c, err := ln.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := mp.NewReader(c, 64<<20)
	var proto mp.Protocol
	var acts mp.Action
	negotiated := false
	// closed reports whether the server closed the connection, and checks
	// that it said why (after QUIT it need not).
	quit := false
	closed := func(err error, what string) bool {
		if err == nil {
			return false
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
			// Wait for the session to end, then look for its line.
			for deadline := time.Now().Add(fuzzTimeout); srv.ActiveSessions() > 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: connection closed but the session did not end", what)
				}
			}
			if !quit && lb.String() == "" {
				t.Fatalf("%s: the server closed the connection without a log line", what)
			}
			return true
		}
		t.Fatalf("%s: %v (wedged: no answer within %s)\nlog:\n%s", what, err, fuzzTimeout, lb.String())
		return true
	}
	first := true
	for n := 0; len(f.b) > 0 && n < 64; n++ {
		var code byte
		var pdata []byte
		if first && f.byte()&0x0f != 0 { // mostly start with a real negotiation
			code = mp.CmdOptNeg
			pdata = mp.OptNeg{Version: 2 + uint32(f.byte()%5), Actions: mp.Action(f.u16()) & mp.ActAllMask,
				Protocol: mp.Protocol(f.u32()) & mp.ProtoAllMask}.Append(nil)
		} else {
			code, pdata = packetFrom(f)
		}
		first = false
		c.SetDeadline(time.Now().Add(fuzzTimeout))
		if closed(mp.WritePacket(c, code, pdata), "write "+mp.CmdName(code)) {
			return
		}
		answered := code == mp.CmdOptNeg || negotiated && proto.Replies(code)
		if code == mp.CmdQuit {
			// The server closes; nothing more to read.
			quit = true
			_, err := r.ReadPacket()
			if err == nil {
				t.Fatal("a packet after QUIT")
			}
			closed(err, "after QUIT")
			return
		}
		if !answered {
			continue
		}
		for {
			p, err := r.ReadPacket()
			if closed(err, "reply to "+mp.CmdName(code)) {
				return
			}
			if code == mp.CmdOptNeg {
				if p.Code != mp.RespOptNeg {
					t.Fatalf("OPTNEG answered %q", p.Code)
				}
				o, err := mp.ParseOptNeg(p.Data)
				if err != nil {
					t.Fatalf("bad OPTNEG reply: %v", err)
				}
				proto, acts, negotiated = o.Protocol, o.Actions, true
				break
			}
			if finalCodes[p.Code] {
				if p.Code == mp.RespSkip && (code != mp.CmdBody || proto&mp.ProtoSkip == 0) {
					t.Fatalf("SKIP answering %s (protocol 0x%x)", mp.CmdName(code), uint32(proto))
				}
				if p.Code == mp.RespReplyCode {
					text, err := mp.ParseString(p.Code, p.Data)
					if err != nil || mp.ValidReplyCode(strings.TrimRight(text, "\x00")) != nil {
						t.Fatalf("invalid reply text %q: %v", text, err)
					}
				}
				break
			}
			need, isEdit := editAction[p.Code]
			switch {
			case p.Code == mp.RespProgress && code == mp.CmdEOB:
			case isEdit && code == mp.CmdEOB:
				if acts&need == 0 {
					t.Fatalf("edit %q sent to an MTA that did not grant it (actions 0x%x)", p.Code, uint32(acts))
				}
			default:
				t.Fatalf("%q answering %s", p.Code, mp.CmdName(code))
			}
		}
	}
}

// FuzzMTASession drives whole MTA sessions through Server and the engine.
func FuzzMTASession(f *testing.F) {
	// Seeds: a clean session through one and two backends, a message with
	// edits, a session with garbage after negotiation.
	env := []byte{
		0x00,                // connect, well-formed
		0x03, 'h', 'o', 's', // (family, hostname...)
		0x01, 0x02, 'h', 'i', // helo
		0x02, 0x00, 0x03, 'a', '@', 'b', // mail
		0x03, 0x00, 0x03, 'c', '@', 'd', // rcpt
		0x04,                                      // data
		0x05, 0x04, 'S', 'u', 'b', 'j', 0x01, 'x', // header
		0x06,             // eoh
		0x07, 0x10, 0x00, // body
		0x08, // eob
		0x0e, // quit
	}
	for _, pre := range [][]byte{
		{0x00, 0x00, 0, 0, 0, 0, 0, 0, 0},
		{0x01, 0xff, 0x01, 0, 0, 0, 0, 0x01, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x03, 0x00, 0x03, 'N', 'e', 'w', 0x01, 'v'},
		{0x02, 0xff, 0x01, 0xff, 0xff, 0, 0, 0xf0},
	} {
		seed := append(append([]byte{}, pre...), 0x01, 0x04, 0xff, 0x01, 0xff, 0xff, 0x1f, 0x00)
		f.Add(append(seed, env...))
	}
	f.Add([]byte{0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x04, 0xff, 0x01, 0, 0, 0, 0, 0xc0, 'Z', 0x03, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		runFuzzSession(t, data)
	})
}
