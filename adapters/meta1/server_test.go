// server_test.go: the MeTA1 front end driven by the simulator: stage
// mapping, macros, replies, modifications, multiplexing, timeouts, bad
// input, drain.

package meta1_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
	"github.com/mailmux/mailmux/sim/meta1"
)

var ctx = context.Background()

const testMsg = "From: a@example.org\r\nSubject: hello\r\n world\r\nTo: b@example.com\r\n\r\nbody line 1\r\nbody line 2\r\n"

// session runs a whole SMTP session and returns the dot reply.
func session(t *testing.T, c *meta1sim.Client, addr netip.Addr, rcpts []string, msg string) meta1sim.Reply {
	t.Helper()
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Macros["taid"] = "T42"
	s.Macros["msgid"] = "<m1@example.org>"
	s.Macros["auth_type"] = "PLAIN"
	s.Macros["hostname"] = "mx.example.net"
	must := func(r meta1sim.Reply, err error) meta1sim.Reply {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := must(s.Connect(ctx, addr, 40001, "client.example.org")); r.Objects() {
		return r
	}
	must(s.Ehlo(ctx, "client.example.org"))
	must(s.Mail(ctx, "<a@example.org>", "SIZE=100"))
	for i, r := range rcpts {
		must(s.Rcpt(ctx, i, r))
	}
	must(s.Data(ctx))
	return must(s.Message(ctx, []byte(msg), 7))
}

func TestStagesAndMacros(t *testing.T) {
	pmulttest.NoLeaks(t)
	f := newFake("f", nil)
	fx := start(t, func(s *m1.Server) {
		s.Macros[macros.M1Connect] = []string{"hostname"}
		s.Macros[macros.M1Mail] = []string{"taid", "auth_type"}
		s.Macros[macros.M1Dot] = []string{"msgid"}
	}, f)
	c := fx.dial(meta1sim.Config{})
	r := session(t, c, netip.MustParseAddr("192.0.2.7"), []string{"<b@example.com>", "<c@example.net>"}, testMsg)
	if r.Code != pmilter.ReplyContinue {
		t.Fatalf("dot reply %+v", r)
	}
	waitFor(t, func() bool { return strings.HasSuffix(f.KindsString(), "eom") })
	want := "connect helo mail rcpt rcpt data header header header eoh body body body body body body eom"
	got := f.KindsString()
	// Body chunking follows the 7-byte MSG chunks; compare the shape.
	if strings.Join(strings.Fields(strings.ReplaceAll(got, "body ", "")), " ") != strings.ReplaceAll(want, "body ", "") {
		t.Fatalf("events:\n got %s\nwant %s", got, want)
	}
	evs := f.Events()
	byKind := map[pmult.Kind][]pmult.Event{}
	for _, e := range evs {
		byKind[e.Kind] = append(byKind[e.Kind], e)
	}
	cn := byKind[pmult.KindConnect][0]
	if cn.Family != '4' || cn.Address != "192.0.2.7" || cn.Port != 40001 || cn.Hostname != "client.example.org" {
		t.Errorf("connect event %+v", cn)
	}
	check := func(e pmult.Event, name, want string) {
		t.Helper()
		if v, ok := macro(e, name); !ok || v != want {
			t.Errorf("%s: macro %s = %q (%v), want %q", e.Kind, name, v, ok, want)
		}
	}
	absent := func(e pmult.Event, name string) {
		t.Helper()
		if v, ok := macro(e, name); ok {
			t.Errorf("%s: macro %s = %q, want none", e.Kind, name, v)
		}
	}
	for _, k := range []pmult.Kind{pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindRcpt, pmult.KindData, pmult.KindEOM} {
		e := byKind[k][0]
		check(e, "client_addr", "192.0.2.7")
		check(e, "client_port", "40001")
		check(e, "r", "SMTP")
		check(e, "multiplexer", "pmult")
		check(e, "mult_version", "test-1")
		if e.Macros[0].For != k {
			t.Errorf("%s: macro set for %s", k, e.Macros[0].For)
		}
		if v, _ := macro(e, "i"); !strings.HasPrefix(v, "S") {
			t.Errorf("%s: i = %q", k, v)
		}
	}
	check(byKind[pmult.KindConnect][0], "hostname", "mx.example.net")
	absent(byKind[pmult.KindConnect][0], "s")
	check(byKind[pmult.KindHelo][0], "s", "client.example.org")
	m := byKind[pmult.KindMail][0]
	check(m, "f", "a@example.org")
	check(m, "ntries", "1")
	check(m, "nrcpts", "0")
	check(m, "nbadrcpts", "0")
	check(m, "taid", "T42")
	check(m, "auth_type", "PLAIN")
	if strings.Join(m.Args, " ") != "<a@example.org> SIZE=100" {
		t.Errorf("mail args %q", m.Args)
	}
	r2 := byKind[pmult.KindRcpt][1]
	check(r2, "rcpt_addr", "c@example.net")
	check(r2, "rcpt_host", "example.net")
	check(r2, "nrcpts", "1")
	absent(byKind[pmult.KindData][0], "nrcpts")
	absent(byKind[pmult.KindData][0], "rcpt_addr")
	check(byKind[pmult.KindEOM][0], "msgid", "<m1@example.org>")
	check(byKind[pmult.KindEOM][0], "f", "a@example.org")
	hs := byKind[pmult.KindHeader]
	if hs[1].Name != "Subject" || hs[1].Value != " hello\n world" {
		t.Errorf("folded header %q %q", hs[1].Name, hs[1].Value)
	}
	var body []byte
	for _, e := range byKind[pmult.KindBody] {
		body = append(body, e.Chunk...)
	}
	if string(body) != "body line 1\r\nbody line 2\r\n" {
		t.Errorf("body %q", body)
	}
}

func TestIPv6ClientAddr(t *testing.T) {
	f := newFake("f", nil)
	fx := start(t, nil, f)
	c := fx.dial(meta1sim.Config{})
	session(t, c, netip.MustParseAddr("2001:db8::25"), []string{"<b@example.com>"}, testMsg)
	e := f.Events()[0]
	if e.Family != '6' || e.Address != "2001:db8::25" {
		t.Errorf("connect %+v", e)
	}
	if v, _ := macro(e, "client_addr"); v != "2001:db8::25" {
		t.Errorf("client_addr %q", v)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReplies(t *testing.T) {
	plan := func(k pmult.Kind, match string, rep pmult.Reply) func(*pmult.Event) pmult.Reply {
		return func(ev *pmult.Event) pmult.Reply {
			if ev.Kind == k && (match == "" || strings.Contains(strings.Join(ev.Args, " ")+ev.Name+ev.Arg, match)) {
				return rep
			}
			return pmult.Reply{}
		}
	}
	cases := []struct {
		name   string
		answer func(*pmult.Event) pmult.Reply
		stage  string // where the verdict shows
		code   uint32
		text   string
	}{
		{"reject rcpt text", plan(pmult.KindRcpt, "bad", pmult.Reply{Verdict: pmult.Reject, Text: "550 5.1.1 No such user"}), "rcpt", pmilter.ReplyReject, "550 5.1.1 No such user"},
		{"tempfail mail", plan(pmult.KindMail, "", pmult.Reply{Verdict: pmult.Tempfail}), "mail", pmilter.ReplyTempfail, ""},
		{"tempfail multiline", plan(pmult.KindMail, "", pmult.Reply{Verdict: pmult.Tempfail, Text: "451-4.7.1 one\r\n451 4.7.1 two"}), "mail", pmilter.ReplyTempfail, "451-4.7.1 one\r\n451 4.7.1 two"},
		{"wrong class text dropped", plan(pmult.KindMail, "", pmult.Reply{Verdict: pmult.Tempfail, Text: "550 no"}), "mail", pmilter.ReplyTempfail, ""},
		{"discard at dot", plan(pmult.KindEOM, "", pmult.Reply{Verdict: pmult.Discard}), "dot", pmilter.ReplyDiscard, ""},
		{"reject at header", plan(pmult.KindHeader, "Subject", pmult.Reply{Verdict: pmult.Reject, Text: "554 5.7.1 spam"}), "msg", pmilter.ReplyReject, "554 5.7.1 spam"},
		{"accept at connect", plan(pmult.KindConnect, "", pmult.Reply{Verdict: pmult.Accept}), "connect", pmilter.ReplyAccept, ""},
		{"421 at helo", plan(pmult.KindHelo, "", pmult.Reply{Verdict: pmult.Shutdown, Text: "421 4.7.0 go away"}), "helo", pmilter.ReplySSD, "421 4.7.0 go away"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake("f", tc.answer)
			fx := start(t, nil, f)
			c := fx.dial(meta1sim.Config{})
			s, err := c.NewSession(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := map[string]meta1sim.Reply{}
			r, _ := s.Connect(ctx, netip.MustParseAddr("192.0.2.1"), 1, "h")
			got["connect"] = r
			r, _ = s.Ehlo(ctx, "h")
			got["helo"] = r
			if r.Code == pmilter.ReplySSD {
				// The session is over: a further record is for a session
				// pmult no longer has.
				if _, err := s.Mail(ctx, "<a@x>"); err != meta1sim.ErrClosed {
					t.Errorf("mail after 421: %v", err)
				}
			} else {
				r, _ = s.Mail(ctx, "<a@x>")
				got["mail"] = r
				r, _ = s.Rcpt(ctx, 0, "<bad@x>")
				got["rcpt"] = r
				r, _ = s.Rcpt(ctx, 1, "<good@x>")
				got["rcpt2"] = r
				s.Data(ctx)
				r, _ = s.Msg(ctx, []byte(testMsg))
				got["msg"] = r
				r, _ = s.Dot(ctx)
				got["dot"] = r
			}
			if g := got[tc.stage]; g.Code != tc.code || g.Text != tc.text {
				t.Errorf("%s: got %+v, want code %d text %q", tc.stage, g, tc.code, tc.text)
			}
			if tc.stage == "rcpt" && got["rcpt2"].Code != pmilter.ReplyContinue {
				t.Errorf("second rcpt: %+v", got["rcpt2"])
			}
			if tc.stage == "msg" && got["dot"].Code != tc.code {
				t.Errorf("dot after a rejected header: %+v", got["dot"])
			}
		})
	}
}

func TestModifications(t *testing.T) {
	edits := []pmult.Edit{
		{Kind: pmult.EditAddHeader, Name: "X-Added", Value: " yes"},
		{Kind: pmult.EditInsertHeader, Index: 0, Name: "X-Top", Value: " first"},
		{Kind: pmult.EditChangeHeader, Index: 1, Name: "Subject", Value: " changed\n folded"},
		{Kind: pmult.EditChangeHeader, Index: 1, Name: "To", Value: ""},
		{Kind: pmult.EditChangeHeader, Index: 2, Name: "Nope", Value: ""},
		{Kind: pmult.EditAddRcpt, Addr: "<new@example.com>"},
		{Kind: pmult.EditAddRcptPar, Addr: "<par@example.com>", Args: "NOTIFY=NEVER", HasArgs: true},
		{Kind: pmult.EditDelRcpt, Addr: "<c@example.net>"},
	}
	wantHeaders := "X-Top: first\r\nFrom: a@example.org\r\nSubject: changed\r\n folded\r\nX-Added: yes\r\n\r\n"
	for _, replace := range []bool{false, true} {
		t.Run(fmt.Sprint("replace=", replace), func(t *testing.T) {
			ed := edits
			if replace {
				ed = append(ed[:len(ed):len(ed)], pmult.Edit{Kind: pmult.EditReplaceBody, Body: []byte("new body\r\n")})
			}
			f := newFake("f", func(ev *pmult.Event) pmult.Reply {
				if ev.Kind == pmult.KindEOM {
					return pmult.Reply{Edits: ed}
				}
				return pmult.Reply{}
			})
			fx := start(t, nil, f)
			c := fx.dial(meta1sim.Config{})
			rcpts := []string{"<b@example.com>", "<c@example.net>"}
			r := session(t, c, netip.MustParseAddr("192.0.2.7"), rcpts, testMsg)
			tr := meta1sim.Transaction{Rcpts: append([]string(nil), rcpts...), Message: []byte(testMsg)}
			if err := tr.Apply(r); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(tr.Rcpts, " "); got != "<b@example.com> <new@example.com> <par@example.com>" {
				t.Errorf("recipients: %s", got)
			}
			if len(r.RcptAdd) != 2 || r.RcptAdd[1].Args != "NOTIFY=NEVER" || r.RcptDel[0].Index != 1 {
				t.Errorf("rcpt mods %+v %+v", r.RcptAdd, r.RcptDel)
			}
			body := "body line 1\r\nbody line 2\r\n"
			if replace {
				body = "new body\r\n"
				if r.HdrMods != nil {
					t.Errorf("header mods sent besides a replacement: %+v", r.HdrMods)
				}
			}
			if got := string(tr.Message); got != wantHeaders+body {
				t.Errorf("message:\n%q\nwant\n%q", got, wantHeaders+body)
			}
		})
	}
}

func TestManySessionsOneConnection(t *testing.T) {
	pmulttest.NoLeaks(t)
	f := newFake("f", func(ev *pmult.Event) pmult.Reply {
		if ev.Kind == pmult.KindEOM {
			return pmult.Reply{Edits: []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-Seen", Value: " 1"}}}
		}
		return pmult.Reply{}
	})
	fx := start(t, nil, f)
	c := fx.dial(meta1sim.Config{})
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.NewSession(ctx)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer s.Close()
			s.Connect(ctx, netip.MustParseAddr("192.0.2.9"), 25, "")
			s.Ehlo(ctx, fmt.Sprint("h", i))
			s.Mail(ctx, fmt.Sprintf("<s%d@x>", i))
			s.Rcpt(ctx, 0, "<r@x>")
			s.Data(ctx)
			r, err := s.Message(ctx, []byte(testMsg), 0)
			if err != nil || len(r.HdrMods) != 1 {
				errs <- fmt.Sprintf("session %d: %+v %v", i, r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := fx.srv.ActiveConnections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestTimeoutFlags(t *testing.T) {
	// slow answers RCPT of a "slow" address after 1.5 s.
	slow := func() *pmulttest.Backend {
		f := newFake("f", nil)
		f.Hook = func(ev *pmult.Event) (pmulttest.Step, bool) {
			if ev.Kind == pmult.KindRcpt && strings.Contains(ev.Args[0], "slow") {
				return pmulttest.Step{Delay: 1500 * time.Millisecond}, true
			}
			return pmulttest.Step{}, true
		}
		return f
	}
	t.Run("abort", func(t *testing.T) {
		pmulttest.NoLeaks(t)
		fx := start(t, nil, slow())
		c := fx.dial(meta1sim.Config{Timeout: 300 * time.Millisecond, Flags: meta1sim.FlagAbort})
		s, _ := c.NewSession(ctx)
		s.Connect(ctx, netip.MustParseAddr("192.0.2.1"), 1, "")
		s.Mail(ctx, "<a@x>")
		r, err := s.Rcpt(ctx, 0, "<slow@x>")
		if err != nil || !r.TimedOut || r.Code != pmilter.ReplySSD || !strings.HasPrefix(r.SMTP("250 ok"), "421") {
			t.Fatalf("rcpt: %+v %v", r, err)
		}
		// The next session on the same connection works.
		r2 := session(t, c, netip.MustParseAddr("192.0.2.2"), []string{"<b@x>"}, testMsg)
		if r2.Code != pmilter.ReplyContinue || c.Reconnects.Load() != 0 {
			t.Errorf("next session: %+v, reconnects %d", r2, c.Reconnects.Load())
		}
		waitFor(t, func() bool { return fx.srv.ActiveSessions() == 0 })
	})
	t.Run("accept_but_reconnect", func(t *testing.T) {
		pmulttest.NoLeaks(t)
		fx := start(t, nil, slow())
		c := fx.dial(meta1sim.Config{Timeout: 300 * time.Millisecond, Flags: meta1sim.FlagAcceptButReconnect})
		s, _ := c.NewSession(ctx)
		s.Connect(ctx, netip.MustParseAddr("192.0.2.1"), 1, "")
		s.Mail(ctx, "<a@x>")
		r, err := s.Rcpt(ctx, 0, "<slow@x>")
		if err != nil || !r.TimedOut || r.Code != pmilter.ReplyContinue {
			t.Fatalf("rcpt: %+v %v", r, err)
		}
		// The rest of the session goes on unfiltered.
		if r, _ := s.Data(ctx); r.Code != pmilter.ReplyContinue {
			t.Errorf("data: %+v", r)
		}
		s.Close()
		r2 := session(t, c, netip.MustParseAddr("192.0.2.2"), []string{"<b@x>"}, testMsg)
		if r2.Code != pmilter.ReplyContinue || c.Reconnects.Load() != 1 {
			t.Errorf("next session: %+v, reconnects %d", r2, c.Reconnects.Load())
		}
		waitFor(t, func() bool { return fx.srv.ActiveConnections() == 1 && fx.srv.ActiveSessions() == 0 })
	})
}

// rawConn is a hand-driven smtps connection.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	var e pmilter.Encoder
	e.Begin(nil, pmilter.RTNegotiate, "")
	rc.send(e.End())
	if rec := rc.read(); rec.Type != pmilter.RTNegReply {
		t.Fatalf("negotiation: %+v", rec)
	}
	return rc
}

func (rc *rawConn) send(b []byte) {
	if _, err := rc.nc.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) read() pmilter.Record {
	rc.t.Helper()
	rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	rec, err := pmilter.ReadRecord(rc.br, 0)
	if err != nil {
		rc.t.Fatalf("read: %v", err)
	}
	return rec
}

func code(t *testing.T, rec pmilter.Record) uint32 {
	for _, en := range rec.Entries {
		if en.Tag == pmilter.FReplyCode {
			v, _ := pmilter.Uint32Of(en)
			return v
		}
	}
	t.Fatalf("no reply code in %+v", rec)
	return 0
}

func rec(t uint32, session string, fields func(*pmilter.Encoder)) []byte {
	var e pmilter.Encoder
	e.Begin(nil, t, session)
	if fields != nil {
		fields(&e)
	}
	return e.End()
}

func TestBadInput(t *testing.T) {
	pmulttest.NoLeaks(t)
	f := newFake("f", nil)
	fx := start(t, nil, f)
	// A good session on its own connection runs through all of it.
	good := fx.dial(meta1sim.Config{})
	gs, _ := good.NewSession(ctx)
	if r, err := gs.Connect(ctx, netip.MustParseAddr("192.0.2.1"), 1, ""); err != nil || r.Code != 0 {
		t.Fatal(r, err)
	}
	rc := dialRaw(t, fx.addr)
	connect := func(id string) {
		rc.send(rec(pmilter.RTConnect, id, func(e *pmilter.Encoder) { e.Bytes(pmilter.FClientAddr, []byte{192, 0, 2, 3}) }))
		if c := code(t, rc.read()); c != pmilter.ReplyContinue {
			t.Fatalf("connect %s: %d", id, c)
		}
	}
	connect("A")
	connect("B")

	// Data for a session never opened: 421 for it.
	rc.send(rec(pmilter.RTMsg, "nope", func(e *pmilter.Encoder) { e.Bytes(pmilter.FChunk, []byte("x")) }))
	if r := rc.read(); r.Session != "nope" || code(t, r) != pmilter.ReplySSD {
		t.Errorf("never opened: %+v", r)
	}
	// An unknown record type drops that session with 421.
	rc.send(rec(0x7777, "A", nil))
	if r := rc.read(); r.Session != "A" || code(t, r) != pmilter.ReplySSD {
		t.Errorf("unknown type: %+v", r)
	}
	rc.send(rec(pmilter.RTEhlo, "A", func(e *pmilter.Encoder) { e.String(pmilter.FHelo, "h") }))
	if r := rc.read(); r.Session != "A" || code(t, r) != pmilter.ReplySSD {
		t.Errorf("after drop: %+v", r)
	}
	// A bogus entry length inside a sound frame: that session only.
	connect("C")
	b := rec(pmilter.RTEhlo, "C", func(e *pmilter.Encoder) { e.String(pmilter.FHelo, "hello") })
	b[len(b)-10] = 0xff // the helo entry's length now exceeds the record
	rc.send(b)
	if r := rc.read(); r.Session != "C" || code(t, r) != pmilter.ReplySSD {
		t.Errorf("bogus entry length: %+v", r)
	}
	// A bad field value (a 3-byte address) drops the session.
	rc.send(rec(pmilter.RTConnect, "D", func(e *pmilter.Encoder) { e.Bytes(pmilter.FClientAddr, []byte{1, 2, 3}) }))
	if r := rc.read(); r.Session != "D" || code(t, r) != pmilter.ReplySSD {
		t.Errorf("bad address: %+v", r)
	}
	// Session B is unaffected.
	rc.send(rec(pmilter.RTEhlo, "B", func(e *pmilter.Encoder) { e.String(pmilter.FHelo, "b.example") }))
	if r := rc.read(); r.Session != "B" || code(t, r) != pmilter.ReplyContinue {
		t.Errorf("B: %+v", r)
	}
	// A bogus frame length ends that connection only.
	rc.send([]byte{0xff, 0xff, 0xff, 0xff})
	rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.br.ReadByte(); err == nil {
		t.Error("connection still open after a bogus frame length")
	}
	// A truncated record on another connection: same.
	rc2 := dialRaw(t, fx.addr)
	rc2.send(rec(pmilter.RTConnect, "E", nil)[:10])
	rc2.nc.(*net.TCPConn).CloseWrite()
	if _, err := rc2.br.ReadByte(); err == nil {
		t.Error("truncated record answered")
	}
	// The good session goes on.
	if r, err := gs.Ehlo(ctx, "good"); err != nil || r.Code != pmilter.ReplyContinue {
		t.Errorf("good session: %+v %v", r, err)
	}
	gs.Close()
	waitFor(t, func() bool { return fx.srv.ActiveSessions() == 0 && fx.srv.ActiveConnections() == 1 })
}

func TestSessionLimit(t *testing.T) {
	fx := start(t, func(s *m1.Server) { s.MaxSessions = 1 }, newFake("f", nil))
	c := fx.dial(meta1sim.Config{})
	s1, _ := c.NewSession(ctx)
	if r, _ := s1.Connect(ctx, netip.Addr{}, 0, ""); r.Code != pmilter.ReplyContinue {
		t.Fatalf("first: %+v", r)
	}
	s2, _ := c.NewSession(ctx)
	if r, _ := s2.Connect(ctx, netip.Addr{}, 0, ""); r.Code != pmilter.ReplySSD {
		t.Fatalf("second: %+v", r)
	}
	s1.Close()
	waitFor(t, func() bool { return fx.srv.ActiveSessions() == 0 })
	s3, _ := c.NewSession(ctx)
	if r, _ := s3.Connect(ctx, netip.Addr{}, 0, ""); r.Code != pmilter.ReplyContinue {
		t.Fatalf("third: %+v", r)
	}
	s3.Close()
}

func TestDrain(t *testing.T) {
	pmulttest.NoLeaks(t)
	f := newFake("f", nil)
	fx := start(t, nil, f)
	c := fx.dial(meta1sim.Config{})
	s, _ := c.NewSession(ctx)
	s.Connect(ctx, netip.Addr{}, 0, "")
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		done <- fx.srv.Shutdown(sctx)
	}()
	waitFor(t, func() bool {
		s2, err := c.NewSession(ctx)
		if err != nil {
			return false
		}
		r, _ := s2.Connect(ctx, netip.Addr{}, 0, "")
		return r.Code == pmilter.ReplySSD
	})
	if r, err := s.Ehlo(ctx, "still here"); err != nil || r.Code != pmilter.ReplyContinue {
		t.Fatalf("open session during drain: %+v %v", r, err)
	}
	s.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
