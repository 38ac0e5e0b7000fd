// server_test.go: the front end, engine and backend client together, with
// a raw-packet MTA on one side and test milters on the other.

package milter

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	backend "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

type slot struct {
	m      *testmilter.Server
	policy pmult.Policy
	read   time.Duration
	addr   string // overrides m (e.g. a dead address)
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startMux(t *testing.T, parallel bool, slots ...slot) (string, *logBuf) {
	t.Helper()
	addr, lb, _ := startMuxWith(t, parallel, nil, slots...)
	return addr, lb
}

// startMuxWith is startMux with a hook to set Server fields before it
// serves; it also returns the server.
func startMuxWith(t *testing.T, parallel bool, configure func(*Server), slots ...slot) (string, *logBuf, *Server) {
	t.Helper()
	eng := &pmult.Engine{Parallel: parallel}
	for i, s := range slots {
		addr := s.addr
		if addr == "" {
			a, err := s.m.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr = a.String()
			t.Cleanup(s.m.Stop)
		}
		eng.Slots = append(eng.Slots, pmult.Slot{
			Backend: backend.New(backend.Config{Name: "b" + string(rune('1'+i)), Network: "tcp", Address: addr,
				ReadTimeout: s.read, ConnectTimeout: 2 * time.Second}),
			Policy: s.policy,
		})
	}
	lb := &logBuf{}
	var w io.Writer = lb
	if testing.Verbose() {
		w = io.MultiWriter(lb, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	eng.Log = log
	srv := &Server{Engine: eng, Log: log, NegotiateTimeout: 500 * time.Millisecond}
	if configure != nil {
		configure(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String(), lb, srv
}

// mta is a raw-packet MTA.
type mta struct {
	t  *testing.T
	c  net.Conn
	r  *mp.Reader
	ng mp.OptNeg
}

func dialMTA(t *testing.T, addr string, version uint32, act mp.Action, proto mp.Protocol) *mta {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &mta{t: t, c: c, r: mp.NewReader(c, 1<<24)}
	m.send(mp.CmdOptNeg, mp.OptNeg{Version: version, Actions: act, Protocol: proto}.Append(nil))
	p := m.read()
	if p.Code != mp.RespOptNeg {
		t.Fatalf("optneg reply %q", p.Code)
	}
	m.ng, err = mp.ParseOptNeg(p.Data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *mta) send(code byte, data ...[]byte) {
	m.t.Helper()
	if err := mp.WritePacket(m.c, code, data...); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mta) read() mp.Packet {
	m.t.Helper()
	m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := m.r.ReadPacket()
	if err != nil {
		m.t.Fatalf("read: %v", err)
	}
	return p
}

// cmd sends a command and returns its reply (all packets up to the final
// one), or nothing for a command pmult negotiated no reply for (NR_*:
// pmult asks for no reply to headers, EOH and body chunks whenever the MTA
// offers it, see pmult's deferred kinds).
func (m *mta) cmd(code byte, data ...[]byte) []mp.Packet {
	m.t.Helper()
	m.send(code, data...)
	if !m.ng.Protocol.Replies(code) {
		return nil
	}
	var out []mp.Packet
	for {
		p := m.read()
		out = append(out, p)
		switch p.Code {
		case mp.RespContinue, mp.RespAccept, mp.RespReject, mp.RespTempfail, mp.RespDiscard,
			mp.RespReplyCode, mp.RespSkip, mp.RespShutdown:
			return out
		}
	}
}

// cont reports whether r is what a command the backends let through gets:
// CONTINUE, or no reply at all where none was negotiated.
func (m *mta) cont(r []mp.Packet, code byte) bool {
	if !m.ng.Protocol.Replies(code) {
		return len(r) == 0
	}
	return codes(r) == "c"
}

func codes(ps []mp.Packet) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteByte(p.Code)
	}
	return b.String()
}

var s = testmilter.Str

func envelope(m *mta) {
	m.t.Helper()
	if r := m.cmd(mp.CmdConnect, mp.Connect{Hostname: "client.example", Family: '4', Port: 1234, Address: "192.0.2.1"}.Append(nil)); codes(r) != "c" {
		m.t.Fatalf("connect: %s", codes(r))
	}
	if r := m.cmd(mp.CmdHelo, s("client.example")); codes(r) != "c" {
		m.t.Fatalf("helo: %s", codes(r))
	}
	if r := m.cmd(mp.CmdMail, s("<a@example.org>", "SIZE=100")); codes(r) != "c" {
		m.t.Fatalf("mail: %s", codes(r))
	}
}

const allProto = mp.ProtoAllMask

func TestEditsFromTwoBackendsSerial(t *testing.T) {
	var seen2 [][2]string
	var mu sync.Mutex
	b1 := &testmilter.Server{Actions: mp.ActAddHeaders | mp.ActChangeHeaders, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdEOB {
			return []mp.Packet{testmilter.Reply(mp.RespAddHeader, s("X-One", "1")),
				testmilter.Reply(mp.RespChgHeader, []byte{0, 0, 0, 1}, s("Subject", "changed")),
				{Code: mp.RespContinue}}
		}
		return nil
	}}
	b2 := &testmilter.Server{Actions: mp.ActAddHeaders | mp.ActAddRcpt, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdEOB {
			mu.Lock()
			seen2 = append([][2]string(nil), c.Headers...)
			mu.Unlock()
			return []mp.Packet{testmilter.Reply(mp.RespInsHeader, []byte{0, 0, 0, 1}, s("X-Two", "2")),
				testmilter.Reply(mp.RespAddRcpt, s("<new@example.com>")), {Code: mp.RespContinue}}
		}
		return nil
	}}
	addr, _ := startMux(t, false, slot{m: b1}, slot{m: b2})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	if m.ng.Version != 6 || m.ng.Actions != mp.ActAddHeaders|mp.ActChangeHeaders|mp.ActAddRcpt {
		t.Fatalf("negotiated %+v", m.ng)
	}
	envelope(m)
	m.cmd(mp.CmdRcpt, s("<b@example.com>"))
	m.cmd(mp.CmdData)
	m.cmd(mp.CmdHeader, s("Subject", " hello"))
	m.cmd(mp.CmdHeader, s("From", " a@example.org"))
	m.cmd(mp.CmdEOH)
	m.cmd(mp.CmdBody, []byte("body\r\n"))
	r := m.cmd(mp.CmdEOB)
	if got := codes(r); got != "hmi+c" {
		t.Fatalf("EOM replies %q, want hmi+c", got)
	}
	// The MTA negotiated HDR_LEADSPC, so values must carry their space.
	h, _ := mp.ParseHeader(r[0].Code, r[0].Data)
	if h.Value != " 1" {
		t.Errorf("added value %q, want %q", h.Value, " 1")
	}
	mu.Lock()
	defer mu.Unlock()
	want := [][2]string{{"Subject", "changed"}, {"From", "a@example.org"}, {"X-One", "1"}}
	if len(seen2) != len(want) {
		t.Fatalf("backend 2 saw %q, want %q", seen2, want)
	}
	for i := range want {
		if seen2[i] != want[i] {
			t.Fatalf("backend 2 saw %q, want %q", seen2, want)
		}
	}
}

func TestRcptRejectPerRecipientAndCustomText(t *testing.T) {
	b1 := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdRcpt && strings.Contains(string(p.Data), "bad") {
			return []mp.Packet{testmilter.Reply(mp.RespReplyCode, s("550-5.7.1 first line\r\n550 5.7.1 no bad users"))}
		}
		return nil
	}}
	b2 := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdRcpt && strings.Contains(string(p.Data), "temp") {
			return []mp.Packet{{Code: mp.RespTempfail}}
		}
		return nil
	}}
	addr, _ := startMux(t, false, slot{m: b1}, slot{m: b2})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	envelope(m)
	r := m.cmd(mp.CmdRcpt, s("<bad@example.com>"))
	if codes(r) != "y" || !strings.Contains(string(r[0].Data), "no bad users") {
		t.Fatalf("bad rcpt: %q %q", codes(r), r[0].Data)
	}
	if r := m.cmd(mp.CmdRcpt, s("<temp@example.com>")); codes(r) != "t" {
		t.Fatalf("temp rcpt: %q", codes(r))
	}
	if r := m.cmd(mp.CmdRcpt, s("<good@example.com>")); codes(r) != "c" {
		t.Fatalf("good rcpt: %q", codes(r))
	}
	// Both reject the same recipient: reject (5xx) beats tempfail.
}

func TestBackendFailures(t *testing.T) {
	cases := []struct {
		name    string
		handler testmilter.Handler
		action  pmult.FailAction
		want    string // reply to RCPT
		logWant string
	}{
		{"dies", func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdRcpt {
				return testmilter.Close
			}
			return nil
		}, pmult.FailTempfail, "t", "backend failed"},
		{"hangs", func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdRcpt {
				time.Sleep(2 * time.Second)
			}
			return nil
		}, pmult.FailReject, "r", "timeout"},
		{"garbage", func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdRcpt {
				c.Write([]byte{0, 0, 0, 0, 'x'})
				return []mp.Packet{}
			}
			return nil
		}, pmult.FailTempfail, "t", "packet length 0"},
		{"oversize", func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdRcpt {
				c.Write([]byte{0x7f, 0xff, 0xff, 0xff, 'c'})
				return []mp.Packet{}
			}
			return nil
		}, pmult.FailTempfail, "t", "packet too large"},
		{"unknown reply", func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdRcpt {
				return []mp.Packet{{Code: 'Z'}}
			}
			return nil
		}, pmult.FailDiscard, "d", "unexpected reply"},
		{"undeclared action", func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdRcpt {
				return []mp.Packet{testmilter.Reply(mp.RespAddHeader, s("X", "y")), {Code: mp.RespContinue}}
			}
			return nil
		}, pmult.FailAccept, "c", "protocol violation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			good := &testmilter.Server{}
			bad := &testmilter.Server{Handler: tc.handler}
			addr, logs := startMux(t, false, slot{m: good},
				slot{m: bad, policy: pmult.Policy{OnFailure: tc.action}, read: 300 * time.Millisecond})
			m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
			envelope(m)
			if r := m.cmd(mp.CmdRcpt, s("<x@example.com>")); codes(r) != tc.want {
				t.Fatalf("rcpt: %q, want %q", codes(r), tc.want)
			}
			// The session goes on; the failed backend keeps voting its action.
			if r := m.cmd(mp.CmdRcpt, s("<y@example.com>")); codes(r) != tc.want {
				t.Fatalf("second rcpt: %q, want %q", codes(r), tc.want)
			}
			if !strings.Contains(logs.String(), tc.logWant) || !strings.Contains(logs.String(), "backend=b2") {
				t.Fatalf("log lacks %q naming b2:\n%s", tc.logWant, logs.String())
			}
			// Another session works normally with the healthy backend.
			m2 := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
			envelope(m2)
		})
	}
}

func TestBackendDownAtConnect(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		action pmult.FailAction
		want   string
	}{{pmult.FailTempfail, "t"}, {pmult.FailAccept, "c"}, {pmult.FailReject, "r"}} {
		addr, _ := startMux(t, false, slot{m: &testmilter.Server{}}, slot{addr: dead, policy: pmult.Policy{OnFailure: tc.action}})
		m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
		r := m.cmd(mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil))
		if codes(r) != tc.want {
			t.Errorf("%s: connect answered %q, want %q", tc.action, codes(r), tc.want)
		}
	}
}

func TestPostfixOrderHeloAbortAndRepeatedAbort(t *testing.T) {
	b := &testmilter.Server{}
	addr, _ := startMux(t, false, slot{m: b})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	envelope(m)
	m.cmd(mp.CmdRcpt, s("<b@example.com>"))
	m.send(mp.CmdMacro, []byte{'H'})
	m.cmd(mp.CmdHelo, s("again"))
	m.send(mp.CmdAbort)
	m.send(mp.CmdAbort)
	m.send(mp.CmdMacro, []byte{'M'}, s("i", "ABC"))
	if r := m.cmd(mp.CmdMail, s("<c@example.org>")); codes(r) != "c" {
		t.Fatalf("mail after H A A: %q", codes(r))
	}
	m.send(mp.CmdQuit)
}

func TestNegotiationRules(t *testing.T) {
	// b1 wants no body and will not reply to headers; b2 likewise for
	// headers only: NR_HDR only if both; NOBODY only if both.
	b1 := &testmilter.Server{Actions: mp.ActAddHeaders, Protocol: mp.ProtoNoBody | mp.ProtoNRHeader | mp.ProtoNoUnknown}
	b2 := &testmilter.Server{Actions: mp.ActQuarantine, Protocol: mp.ProtoNRHeader | mp.ProtoNoUnknown, Version: 2}
	// b2 (read-only) first: after an editor it would get the content by
	// replay (pmult read_only = "in_order"), answering headers to pmult.
	addr, _ := startMux(t, false, slot{m: b2}, slot{m: b1})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	if m.ng.Actions != mp.ActAddHeaders|mp.ActQuarantine {
		t.Errorf("actions 0x%x", m.ng.Actions)
	}
	p := m.ng.Protocol
	if p&mp.ProtoNoBody != 0 {
		t.Error("NOBODY granted although b2 wants the body")
	}
	if p&mp.ProtoNoUnknown == 0 {
		t.Error("NOUNKNOWN not set although nobody wants UNKNOWN")
	}
	// Headers: b2 answers them, but the MTA acts on a header verdict only
	// at end of message, so it need not wait (pmult's deferred kinds).
	if p&mp.ProtoNRHeader == 0 {
		t.Error("NR_HDR not set although the engine defers header verdicts to EOM")
	}
	if p&(mp.ProtoNRConnect|mp.ProtoNRMail|mp.ProtoNRRcpt) != 0 {
		t.Error("envelope NR bits set although b2 (v2) must answer them")
	}
	if p&mp.ProtoHdrLeadSpc == 0 {
		t.Error("HDR_LEADSPC not requested")
	}
	// An old MTA (v2) gets version 2 and no v6 bits.
	m2 := dialMTA(t, addr, 2, mp.ActV2Mask, mp.ProtoV2Mask)
	if m2.ng.Version != 2 || m2.ng.Protocol&^mp.ProtoV2Mask != 0 || m2.ng.Actions&^mp.ActV2Mask != 0 {
		t.Errorf("v2 MTA got %+v", m2.ng)
	}
}

func TestSilentClientAndMalformedPackets(t *testing.T) {
	b := &testmilter.Server{}
	addr, logs := startMux(t, false, slot{m: b})
	silent, _ := net.Dial("tcp", addr)
	defer silent.Close()
	for _, bad := range [][]byte{
		{0, 0, 0, 0},         // zero length
		{0, 0, 0, 2, 'Z', 0}, // before OPTNEG
		{0xff, 0, 0, 0, 'O'}, // oversize
		append(mp.AppendPacket(nil, mp.CmdOptNeg, mp.OptNeg{Version: 6, Actions: 0x1ff, Protocol: 0x1fffff}.Append(nil)), mp.AppendPacket(nil, 'Z')...),
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(bad)
		waitServerClose(t, c)
		c.Close()
	}
	// The silent client is closed after NegotiateTimeout. Each connection
	// logs its reason before pmult closes it, so the log is complete once
	// every close is seen: no sleeping on timing.
	waitServerClose(t, silent)
	l := logs.String()
	for _, want := range []string{"packet length 0", "before SMFIC_OPTNEG", "packet too large", "unknown command code 0x5a", "no SMFIC_OPTNEG in time"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// Still serving.
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	envelope(m)
}

// waitServerClose reads from c until pmult closes it; a generous deadline
// only stops a broken test.
func waitServerClose(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("waiting for pmult to close the connection: %v", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	fdsBefore := openFDs(t)
	t.Run("sessions", func(t *testing.T) {
		b := &testmilter.Server{}
		hang := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			if p.Code == mp.CmdMail {
				time.Sleep(time.Second)
			}
			return nil
		}}
		addr, _ := startMux(t, false, slot{m: b}, slot{m: hang, read: 200 * time.Millisecond})
		for i := 0; i < 5; i++ {
			m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
			m.cmd(mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil))
			if r := m.cmd(mp.CmdMail, s("<a@b>")); codes(r) != "t" {
				t.Fatalf("mail with a hung backend: %q", codes(r))
			}
			m.send(mp.CmdQuit)
			m.c.Close()
		}
		// An MTA that disappears mid-session.
		m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
		m.cmd(mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil))
		m.c.Close()
	}) // the subtest's cleanups stop the servers and wait for their goroutines
	// Goroutines and descriptors go away a little after the servers stop
	// (closing is asynchronous under load): wait until both are back, the
	// deadline only bounds a real leak.
	var after, fds int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		after, fds = runtime.NumGoroutine(), openFDs(t)
		if after <= before && fds <= fdsBefore {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("goroutines: %d before, %d after; file descriptors: %d before, %d after\n%s",
		before, after, fdsBefore, fds, buf[:runtime.Stack(buf, true)])
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count fds: %v", err)
	}
	return len(ents)
}

func TestQuitNCThenNewSession(t *testing.T) {
	var mu sync.Mutex
	var log []string
	b := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		mu.Lock()
		log = append(log, string(p.Code))
		mu.Unlock()
		return nil
	}}
	addr, _ := startMux(t, false, slot{m: b})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	envelope(m)
	m.send(mp.CmdAbort)
	m.send(mp.CmdQuitNC)
	m.send(mp.CmdMacro, []byte{'C'}, s("j", "mx2"))
	if r := m.cmd(mp.CmdConnect, mp.Connect{Hostname: "second", Family: '4', Port: 25, Address: "192.0.2.2"}.Append(nil)); codes(r) != "c" {
		t.Fatalf("connect after QUIT_NC: %q", codes(r))
	}
	if r := m.cmd(mp.CmdMail, s("<x@example.org>")); codes(r) != "c" {
		t.Fatalf("mail after QUIT_NC: %q", codes(r))
	}
	mu.Lock()
	defer mu.Unlock()
	// After an ABORT libmilter ignores QUIT_NC: the engine closes that
	// backend session and opens a new one (O) for the new SMTP session.
	if got := strings.Join(log, ""); !strings.Contains(got, "A") || strings.Contains(got, "K") ||
		strings.Count(got, "O") != 2 || !strings.Contains(got, "DC") || !strings.HasSuffix(got, "M") {
		t.Fatalf("backend saw %q, want …A, no K, a new connection (O) with D C … M", got)
	}
}
