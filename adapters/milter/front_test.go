// front_test.go: the MTA side's keep-alive, MTA watch, macro bound, state
// machine and write buffer.

package milter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	backend "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
	"github.com/mailmux/mailmux/pmult"
)

// toEOH drives an MTA from CONNECT to the end of headers.
func toEOH(m *mta) {
	m.t.Helper()
	envelope(m)
	for _, st := range []struct {
		code byte
		data []byte
	}{{mp.CmdRcpt, s("<b@example.com>")}, {mp.CmdData, nil}, {mp.CmdHeader, s("Subject", " hi")}, {mp.CmdEOH, nil}} {
		if r := m.cmd(st.code, st.data); !m.cont(r, st.code) {
			m.t.Fatalf("%s: %q", mp.CmdName(st.code), codes(r))
		}
	}
}

// waitClosed reads from the MTA side until pmult closes the connection.
func waitClosed(t *testing.T, m *mta) {
	t.Helper()
	m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ne net.Error
	if _, err := io.Copy(io.Discard, m.c); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("pmult did not close the connection")
	}
}

// While a backend works at end of message, pmult sends SMFIR_PROGRESS to
// the MTA. The backend answers only once the MTA has seen one.
func TestProgressKeepAliveDuringEOM(t *testing.T) {
	release := make(chan struct{})
	b := &testmilter.Server{Actions: mp.ActAddHeaders, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdEOB {
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
			return []mp.Packet{testmilter.Reply(mp.RespAddHeader, s("X-Late", "1")), {Code: mp.RespContinue}}
		}
		return nil
	}}
	addr, _, _ := startMuxWith(t, false, func(s *Server) { s.ProgressInterval = 20 * time.Millisecond },
		slot{m: b, read: 30 * time.Second})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	toEOH(m)
	m.send(mp.CmdEOB)
	if p := m.read(); p.Code != mp.RespProgress {
		t.Fatalf("first packet at EOM %q, want SMFIR_PROGRESS", p.Code)
	}
	close(release)
	var got []byte
	for {
		p := m.read()
		if p.Code == mp.RespProgress {
			continue
		}
		got = append(got, p.Code)
		if p.Code == mp.RespContinue {
			break
		}
	}
	if string(got) != "hc" {
		t.Fatalf("EOM replies %q, want hc", got)
	}
	// No PROGRESS outside the end of message.
	if r := m.cmd(mp.CmdMail, s("<n@example.org>")); codes(r) != "c" {
		t.Fatalf("next MAIL: %q", codes(r))
	}
}

// rawBackend is a milter that answers CONTINUE to everything but end of
// message, where it never answers; atEOM is closed when the EOM arrives,
// closed when pmult closes the connection.
type rawBackend struct {
	ln            net.Listener
	atEOM, closed chan struct{}
}

func startRawBackend(t *testing.T) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{ln: ln, atEOM: make(chan struct{}), closed: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := mp.NewReader(nc, 0)
		for {
			nc.SetReadDeadline(time.Now().Add(time.Minute))
			p, err := r.ReadPacket()
			if err != nil {
				close(rb.closed)
				return
			}
			switch p.Code {
			case mp.CmdOptNeg:
				mp.WritePacket(nc, mp.RespOptNeg, mp.OptNeg{Version: 6}.Append(nil))
			case mp.CmdMacro, mp.CmdAbort, mp.CmdQuit, mp.CmdQuitNC:
			case mp.CmdEOB:
				close(rb.atEOM)
			default:
				mp.WritePacket(nc, mp.RespContinue)
			}
		}
	}()
	return rb
}

// An MTA that goes away during end of message: pmult stops waiting for a
// backend whose eom_timeout is an hour, closes its connection and ends the
// session, with one log line.
func TestMTAGoneDuringEOM(t *testing.T) {
	rb := startRawBackend(t)
	eng := &pmult.Engine{Slots: []pmult.Slot{{Backend: backend.New(backend.Config{Name: "hung", Network: "tcp",
		Address: rb.ln.Addr().String(), ConnectTimeout: 2 * time.Second, EOMTimeout: time.Hour})}}}
	lb := &logBuf{}
	eng.Log = slog.New(slog.NewTextHandler(lb, nil))
	srv := &Server{Engine: eng, Log: eng.Log}
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
	m := dialMTA(t, ln.Addr().String(), 6, mp.ActAllMask, allProto)
	toEOH(m)
	m.send(mp.CmdEOB)
	select {
	case <-rb.atEOM:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend never got the end of message")
	}
	m.c.Close()
	select {
	case <-rb.closed:
	case <-time.After(20 * time.Second):
		t.Fatalf("pmult kept the hung backend's connection after the MTA left\n%s", lb.String())
	}
	for deadline := time.Now().Add(10 * time.Second); srv.ActiveSessions() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the session did not end")
		}
	}
	if n := strings.Count(lb.String(), "MTA closed the connection during end of message"); n != 1 {
		t.Errorf("%d log lines about the MTA leaving, want 1:\n%s", n, lb.String())
	}
}

// Repeated macro packets keep only the last set per command letter; more
// pending macro data than one packet may hold closes the connection.
func TestMacroPacketsBounded(t *testing.T) {
	var mu sync.Mutex
	var seen map[string]string
	b := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdConnect {
			mu.Lock()
			seen = map[string]string{}
			for k, v := range c.Macros {
				seen[k] = v
			}
			mu.Unlock()
		}
		return nil
	}}
	addr, logs, _ := startMuxWith(t, false, func(s *Server) { s.MaxData = 1 << 16 }, slot{m: b})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	big := strings.Repeat("x", 30000)
	for i := 0; i < 100; i++ { // 3 MB in all, 30 kB pending at a time
		m.send(mp.CmdMacro, []byte{mp.CmdConnect}, s("j", "mx"+string(rune('0'+i%10)), "{big}", big))
	}
	if r := m.cmd(mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil)); codes(r) != "c" {
		t.Fatalf("connect after 100 macro packets: %q", codes(r))
	}
	mu.Lock()
	if seen["j"] != "mx9" {
		t.Errorf("backend saw j=%q, want the last set's mx9", seen["j"])
	}
	mu.Unlock()
	// Distinct letters: 3 × 30 kB > 64 KiB pending.
	for _, letter := range []byte{mp.CmdHelo, mp.CmdMail, mp.CmdRcpt} {
		m.send(mp.CmdMacro, []byte{letter}, s("{big}", big))
	}
	waitClosed(t, m)
	if !strings.Contains(logs.String(), "bytes of SMFIC_MACRO data pending before one command") {
		t.Errorf("log lacks the macro limit:\n%s", logs.String())
	}
}

// Commands out of the MTA-side order close the connection with one line
// naming the command and the state; the orders Postfix and Sendmail
// really use go through.
func TestOutOfOrderCommands(t *testing.T) {
	connect := func(m *mta) {
		m.t.Helper()
		if r := m.cmd(mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil)); codes(r) != "c" {
			m.t.Fatalf("connect: %q", codes(r))
		}
	}
	body := func(m *mta) { toEOH(m); m.cmd(mp.CmdBody, []byte("x\r\n")) }
	for _, tc := range []struct {
		name   string
		before func(*mta)
		code   byte
		data   []byte
		want   string
	}{
		{"body before MAIL", connect, mp.CmdBody, []byte("x"), "SMFIC_BODY outside a message"},
		{"EOM before MAIL", func(m *mta) { envelope(m); m.send(mp.CmdAbort) }, mp.CmdEOB, nil, "SMFIC_BODYEOB outside a message"},
		{"RCPT before MAIL", connect, mp.CmdRcpt, s("<b@example.com>"), "SMFIC_RCPT outside a message"},
		{"DATA without RCPT", envelope, mp.CmdData, nil, "SMFIC_DATA after MAIL"},
		{"header after body", body, mp.CmdHeader, s("X", "y"), "SMFIC_HEADER in the body"},
		{"EOH twice", toEOH, mp.CmdEOH, nil, "SMFIC_EOH after the end of headers"},
		{"second CONNECT", connect, mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil), "SMFIC_CONNECT outside a message"},
		{"QUIT_NC in the body", body, mp.CmdQuitNC, nil, "SMFIC_QUIT_NC in the body"},
		{"RCPT after QUIT_NC", func(m *mta) { envelope(m); m.send(mp.CmdAbort); m.send(mp.CmdQuitNC) }, mp.CmdRcpt, s("<b@example.com>"), "SMFIC_RCPT after QUIT_NC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, logs := startMux(t, false, slot{m: &testmilter.Server{}})
			m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
			tc.before(m)
			m.send(tc.code, tc.data)
			waitClosed(t, m)
			if n := strings.Count(logs.String(), "protocol violation: "+tc.want); n != 1 {
				t.Errorf("%d log lines %q, want 1:\n%s", n, tc.want, logs.String())
			}
			// Other sessions are served.
			envelope(dialMTA(t, addr, 6, mp.ActAllMask, allProto))
		})
	}
}

// The permissive orders: UNKNOWN in the envelope, no DATA (old MTAs),
// macros before every header, HELO in the middle of a message (an implicit
// abort, as libmilter), MAIL straight after OPTNEG (libmilter accepts it),
// stages the MTA was told to skip.
func TestPermissiveOrders(t *testing.T) {
	var mu sync.Mutex
	var got []byte
	b := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		mu.Lock()
		got = append(got, p.Code)
		mu.Unlock()
		return nil
	}}
	addr, _ := startMux(t, false, slot{m: b})
	m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	envelope(m)
	for _, st := range []struct {
		code byte
		data []byte
	}{{mp.CmdUnknown, s("XFOO")}, {mp.CmdRcpt, s("<b@example.com>")}, {mp.CmdUnknown, s("XBAR")},
		{mp.CmdHeader, s("Subject", " no DATA")}, {mp.CmdHeader, s("To", " b")}, {mp.CmdEOH, nil}, {mp.CmdBody, []byte("b\r\n")}} {
		m.send(mp.CmdMacro, []byte{st.code}, s("i", "Q1"))
		if r := m.cmd(st.code, st.data); !m.cont(r, st.code) {
			t.Fatalf("%s: %q", mp.CmdName(st.code), codes(r))
		}
	}
	if r := m.cmd(mp.CmdHelo, s("again")); codes(r) != "c" {
		t.Fatalf("HELO in the body: %q", codes(r))
	}
	m.send(mp.CmdAbort)
	if r := m.cmd(mp.CmdMail, s("<c@example.org>")); codes(r) != "c" {
		t.Fatalf("MAIL after HELO A: %q", codes(r))
	}
	m.send(mp.CmdQuit)
	waitClosed(t, m)
	// The backend saw the implicit abort before the HELO.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		seq := string(got)
		mu.Unlock()
		if i := strings.Index(seq, "BAH"); i >= 0 && strings.Contains(seq[i:], "M") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend saw %q, want …B A H … M", seq)
		}
	}

	// MAIL right after OPTNEG, and RCPT straight after CONNECT when the
	// MTA was told to send no MAIL.
	m2 := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
	if r := m2.cmd(mp.CmdMail, s("<a@example.org>")); codes(r) != "c" {
		t.Fatalf("MAIL after OPTNEG: %q", codes(r))
	}
	nomail := &testmilter.Server{Protocol: mp.ProtoNoMail}
	addr3, _ := startMux(t, false, slot{m: nomail})
	m3 := dialMTA(t, addr3, 6, mp.ActAllMask, allProto)
	if m3.ng.Protocol&mp.ProtoNoMail == 0 {
		t.Fatalf("NOMAIL not negotiated: 0x%x", m3.ng.Protocol)
	}
	m3.cmd(mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil))
	if r := m3.cmd(mp.CmdRcpt, s("<b@example.com>")); codes(r) != "c" {
		t.Fatalf("RCPT without MAIL under NOMAIL: %q", codes(r))
	}
}

// A body replacement of 1 MiB goes out in one write; the connection does
// not keep a buffer that large afterwards.
func TestLargeWriteBufferNotKept(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	b := &testmilter.Server{Actions: mp.ActChangeBody, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code != mp.CmdEOB {
			return nil
		}
		var out []mp.Packet
		for rest := body; len(rest) > 0; {
			n := min(len(rest), mp.MaxChunk)
			out = append(out, testmilter.Reply(mp.RespReplBody, rest[:n]))
			rest = rest[n:]
		}
		return append(out, mp.Packet{Code: mp.RespContinue})
	}}
	a, err := b.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	eng := &pmult.Engine{Slots: []pmult.Slot{{Backend: backend.New(backend.Config{Name: "b1", Network: "tcp",
		Address: a.String(), ConnectTimeout: 2 * time.Second})}}}
	srv := &Server{Engine: eng}
	srv.init()
	mtaSide, pmultSide := net.Pipe()
	c := srv.newConn(pmultSide)
	done := make(chan struct{})
	go func() { defer close(done); c.Serve(context.Background()) }()
	defer func() { mtaSide.Close(); <-done }()

	m := &mta{t: t, c: mtaSide, r: mp.NewReader(mtaSide, 1<<24)}
	m.send(mp.CmdOptNeg, mp.OptNeg{Version: 6, Actions: mp.ActAllMask, Protocol: allProto}.Append(nil))
	p := m.read()
	if p.Code != mp.RespOptNeg {
		t.Fatalf("optneg reply %q", p.Code)
	}
	if m.ng, err = mp.ParseOptNeg(p.Data); err != nil {
		t.Fatal(err)
	}
	toEOH(m)
	r := m.cmd(mp.CmdEOB)
	var got []byte
	for _, p := range r {
		if p.Code == mp.RespReplBody {
			got = append(got, p.Data...)
		}
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("replaced body: %d bytes, want %d", len(got), len(body))
	}
	// The reply was read, so pmult's goroutine is back to reading the next
	// command: its buffer is settled (the pipe orders the accesses).
	if n := cap(c.wbuf); n > maxKeptWriteBuf {
		t.Errorf("write buffer of %d bytes kept after the end of message, limit %d", n, maxKeptWriteBuf)
	}
	if r := m.cmd(mp.CmdMail, s("<n@example.org>")); codes(r) != "c" {
		t.Fatalf("next MAIL: %q", codes(r))
	}
}

// When a backend asks for a macro list, the list sent to the MTA is that
// list plus the stage's baseline: MTAMacros when set, else the MTA
// defaults; stages no backend asks for get no list. Names only pmult
// provides ({listener}, {multiplexer}) are not asked of the MTA.
func TestSymListBaseline(t *testing.T) {
	asks := &testmilter.Server{SymLists: []mp.SymList{{Stage: mp.StageConnect, Macros: "{my_macro} {listener}"},
		{Stage: mp.StageHelo, Macros: "{multiplexer}"}}}
	for _, tc := range []struct {
		name      string
		baseline  []string
		want, not string
	}{
		{"MTA defaults", nil, "{my_macro} j {daemon_name} {daemon_addr} v _ {if_name} {if_addr}", "{client_ptr}"},
		{"configured", []string{"j", "{client_ptr}"}, "{my_macro} j {client_ptr}", "{daemon_name}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _, _ := startMuxWith(t, false, func(s *Server) { s.MTAMacros[mp.StageConnect] = tc.baseline },
				slot{m: asks}, slot{m: &testmilter.Server{}})
			m := dialMTA(t, addr, 6, mp.ActAllMask, allProto)
			if len(m.ng.SymLists) != 1 || m.ng.SymLists[0].Stage != mp.StageConnect {
				t.Fatalf("symlists %+v, want one for connect", m.ng.SymLists)
			}
			if got := m.ng.SymLists[0].Macros; got != tc.want || strings.Contains(got, tc.not) {
				t.Errorf("connect list %q, want %q", got, tc.want)
			}
		})
	}
}

// An end of message that ends before the watch delay starts neither
// keepAlive nor watchMTA (no goroutines, no read on the MTA's socket).
func TestFastEOMStartsNoWatch(t *testing.T) {
	c := &conn{srv: &Server{ProgressInterval: time.Hour}}
	w := c.watchEOM()
	if w.after != maxWatchAfter {
		t.Errorf("watch delay %v, want %v", w.after, maxWatchAfter)
	}
	if w.stop() || w.started {
		t.Errorf("stopped at once: gone %v, started %v", w.gone, w.started)
	}
	w.start() // a timer that fired as stop ran: nothing starts
	if w.started {
		t.Error("started after stop")
	}
	if d := (&conn{srv: &Server{ProgressInterval: 100 * time.Millisecond}}).watchEOM(); d.after != 50*time.Millisecond {
		t.Errorf("watch delay with a 100 ms progress interval %v, want 50ms", d.after)
	} else {
		d.stop()
	}
}
