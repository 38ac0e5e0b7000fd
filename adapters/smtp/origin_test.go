package smtp

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

func session(t *testing.T, r *raw, lines ...string) {
	t.Helper()
	for _, l := range lines {
		got := r.cmd(l)
		if !strings.HasPrefix(got, "2") && !strings.HasPrefix(got, "3") {
			t.Fatalf("%q: %q", l, got)
		}
	}
}

func TestXCLIENTSetsTheClient(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	f := startFront(t, nil, b)
	r := dialRaw(t, f.addr)
	r.reply()
	if got := r.cmd("EHLO proxy.test"); !strings.Contains(got, "XCLIENT") {
		t.Fatalf("no XCLIENT offered to a trusted client: %q", got)
	}
	if got := r.cmd("XCLIENT ADDR=192.0.2.7 NAME=real.example PORT=4711 LOGIN=joe+40x"); !strings.HasPrefix(got, "220") {
		t.Fatalf("XCLIENT: %q", got)
	}
	session(t, r, "EHLO real-helo.example", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.com>", "DATA",
		"Subject: s\r\n\r\nb\r\n.")
	ev := b.Events()
	if ev[0].Kind != pmult.KindConnect || ev[0].Address != "192.0.2.7" || ev[0].Hostname != "real.example" || ev[0].Port != 4711 {
		t.Errorf("connect %+v", ev[0])
	}
	if ev[1].Arg != "real-helo.example" {
		t.Errorf("helo %q", ev[1].Arg)
	}
	found := false
	for _, m := range ev[2].Macros {
		for i := 0; i+1 < len(m.Pairs); i += 2 {
			found = found || m.Pairs[i] == "{auth_authen}" && m.Pairs[i+1] == "joe@x"
		}
	}
	if !found {
		t.Errorf("no {auth_authen} at MAIL: %+v", ev[2].Macros)
	}
	if o := f.hop.delivered()[0].origin; o.Addr != "192.0.2.7" || o.Name != "real.example" || o.Helo != "real-helo.example" || o.Proto != "ESMTP" {
		t.Errorf("origin %+v", o)
	}
}

func TestXFORWARDAndUntrusted(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	f := startFront(t, nil, b)
	r := dialRaw(t, f.addr)
	r.reply()
	session(t, r, "EHLO proxy.test", "XFORWARD ADDR=2001:db8::1 NAME=[UNAVAILABLE] HELO=h.example IDENT=ABC123",
		"MAIL FROM:<a@example.org>")
	ev := b.Events()
	if ev[0].Address != "2001:db8::1" || ev[0].Family != '6' || ev[0].Hostname != "[2001:db8::1]" || ev[1].Arg != "h.example" {
		t.Errorf("connect %+v helo %+v", ev[0], ev[1])
	}

	g := startFront(t, func(s *Server) { s.Trusted = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }, b)
	r = dialRaw(t, g.addr)
	r.reply()
	if got := r.cmd("EHLO proxy.test"); strings.Contains(got, "XCLIENT") || strings.Contains(got, "XFORWARD") {
		t.Errorf("XCLIENT offered to an untrusted client: %q", got)
	}
	if got := r.cmd("XCLIENT ADDR=192.0.2.7"); !strings.HasPrefix(got, "550 5.7.0") {
		t.Errorf("untrusted XCLIENT: %q", got)
	}
	if !strings.Contains(g.log.String(), "XCLIENT from an untrusted client refused") {
		t.Errorf("no log line: %s", g.log.String())
	}
}

func TestProxyProtocol(t *testing.T) {
	for _, version := range []byte{1, 2} {
		b := pmulttest.New("b", pmult.Caps{})
		f := &front{hop: &fakeHop{}, log: &pmulttest.LogBuffer{}}
		f.srv = &Server{Engine: &pmult.Engine{Slots: []pmult.Slot{{Backend: b}}}, Log: pmulttest.NewLog(f.log),
			NextHop: f.hop, Hostname: "mx.test", Proxy: map[string]bool{"": true}}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go f.srv.Serve(ln)
		r := dialRaw(t, ln.Addr().String())
		h := proxyproto.HeaderProxyFromAddrs(version, &net.TCPAddr{IP: net.ParseIP("198.51.100.9"), Port: 5555},
			&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 25})
		if version == 2 {
			// HAProxy's send-proxy-v2-ssl: the client's TLS details.
			tlv, err := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, TLV: []proxyproto.TLV{
				{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")},
				{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte("TLS_AES_256_GCM_SHA384")}}}.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			h.SetTLVs([]proxyproto.TLV{tlv})
		}
		if _, err := h.WriteTo(r.nc); err != nil {
			t.Fatal(err)
		}
		r.reply()
		session(t, r, "EHLO c.example", "MAIL FROM:<a@example.org>")
		ev := b.Events()
		if ev[0].Address != "198.51.100.9" || ev[0].Port != 5555 {
			t.Errorf("v%d: connect %+v", version, ev[0])
		}
		var helo []string
		for _, m := range ev[1].Macros {
			helo = append(helo, m.Pairs...)
		}
		if version == 2 && strings.Join(helo, " ") != "{tls_version} TLSv1.3 {cipher} TLS_AES_256_GCM_SHA384" {
			t.Errorf("v2: TLS macros at HELO %q", helo)
		}
		// Without the header, the connection is closed with a log line.
		r2 := dialRaw(t, ln.Addr().String())
		r2.write("EHLO c.example\r\n")
		if got := r2.reply(); got != "" {
			t.Errorf("v%d: no PROXY header, got %q", version, got)
		}
		if !strings.Contains(f.log.String(), "bad or missing PROXY protocol header") {
			t.Errorf("no log line: %s", f.log.String())
		}
		r.nc.Close()
		f.srv.Shutdown(t.Context())
	}
}

func TestUnknownCommandsGoToBackends(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	b.Hook = func(ev *pmult.Event) (pmulttest.Step, bool) {
		if ev.Kind == pmult.KindUnknown && strings.HasPrefix(ev.Arg, "ATRN") {
			return pmulttest.Step{Verdict: pmult.Reject, Text: "553 5.7.1 no ATRN for you"}, true
		}
		return pmulttest.Step{}, false
	}
	f := startFront(t, nil, b)
	r := dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO c.example")
	if got := r.cmd("ETRN example.org"); got != "502 5.5.2 Error: command not recognized" {
		t.Errorf("ETRN: %q", got)
	}
	if got := r.cmd("ATRN example.org"); got != "553 5.7.1 no ATRN for you" {
		t.Errorf("ATRN: %q", got)
	}
	var unk []string
	for _, ev := range b.Events() {
		if ev.Kind == pmult.KindUnknown {
			unk = append(unk, ev.Arg)
		}
	}
	if strings.Join(unk, "|") != "ETRN example.org|ATRN example.org" {
		t.Errorf("unknown events %q", unk)
	}
}

func TestLoopMarkerAfterQueue(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{Actions: pmult.ActAddHeaders})
	b.On[pmult.KindEOM] = pmulttest.Step{Edits: []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-Seen", Value: " yes"}}}
	for _, mode := range []Mode{AfterQueue, BeforeQueue} {
		b.Reset()
		f := startFront(t, func(s *Server) { s.Mode = mode }, b)
		msg := "X-Mailmux-Filtered: mx.test\r\nSubject: again\r\n\r\nbody\r\n"
		if err := f.send(t, "a@example.org", []string{"x@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
		d := f.hop.delivered()
		filtered := strings.Contains(d[0].msg, "X-Seen")
		if filtered != (mode == BeforeQueue) {
			t.Errorf("mode %s: filtered %v: %q", mode, filtered, d[0].msg)
		}
		// After the queue the marker is ours and is kept as it is (not
		// added a second time); before, it is the sender's, and ours
		// follows it.
		want := map[Mode]int{AfterQueue: 1, BeforeQueue: 2}[mode]
		if n := strings.Count(d[0].msg, "X-Mailmux-Filtered: mx.test\r\n"); n != want {
			t.Errorf("mode %s: %d loop markers, want %d: %q", mode, n, want, d[0].msg)
		}
	}
}

func TestNextHopFailures(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	f := startFront(t, nil, b)
	f.hop.beginEr = net.ErrClosed
	r := dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO c.example")
	if got := r.cmd("MAIL FROM:<a@example.org>"); got != "451 4.4.1 next hop down" {
		t.Errorf("next hop down at MAIL: %q", got)
	}
	f.hop.beginEr = nil
	f.hop.rcptErr["no@example.com"] = &gosmtpError550
	session(t, r, "MAIL FROM:<a@example.org>")
	if got := r.cmd("RCPT TO:<no@example.com>"); got != "550 5.1.1 no such user" {
		t.Errorf("refused by next hop: %q", got)
	}
	session(t, r, "RCPT TO:<x@example.com>", "DATA")
	f.hop.dataErr = net.ErrClosed
	if got := r.cmd("Subject: s\r\n\r\nb\r\n."); got != "451 4.4.1 next hop down" {
		t.Errorf("DATA failed: %q", got)
	}
	if !strings.Contains(f.log.String(), "next hop refused or failed") {
		t.Errorf("no log line")
	}
}

// A message relayed unfiltered because it carries our loop marker says so
// in its decision record (`pmult why`): policy loop_marker, not a bare
// abort.
func TestLoopMarkerDecisionRecord(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	rec := pmult.NewRecorder(10)
	f := startFront(t, func(s *Server) { s.Mode = AfterQueue; s.Engine.Records = rec }, b)
	r := dialRaw(t, f.addr)
	r.reply()
	session(t, r, "EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.com>", "DATA")
	got := r.cmd("X-Mailmux-Filtered: mx.test\r\nSubject: again\r\n\r\nbody\r\n.")
	qid := strings.TrimPrefix(got, "250 2.0.0 Ok: queued as ")
	if qid == got || qid == "" {
		t.Fatalf("no queue id in %q", got)
	}
	recs := rec.Find(qid)
	if len(recs) != 1 {
		t.Fatalf("records for %s: %+v", qid, recs)
	}
	want := pmult.RecPolicy{What: "loop_marker", Backend: "pmult", Stage: pmult.KindHeader, Action: "unfiltered"}
	if len(recs[0].Policy) != 1 || recs[0].Policy[0] != want {
		t.Errorf("policies %+v, want [%+v]", recs[0].Policy, want)
	}
	var w strings.Builder
	if err := recs[0].WriteText(&w); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.String(), "loop_marker pmult at header: unfiltered") {
		t.Errorf("why text:\n%s", w.String())
	}
	// The next message of the session, unmarked, has no such policy.
	session(t, r, "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.com>", "DATA")
	got = r.cmd("Subject: fresh\r\n\r\nbody\r\n.")
	qid = strings.TrimPrefix(got, "250 2.0.0 Ok: queued as ")
	if recs := rec.Find(qid); len(recs) != 1 || len(recs[0].Policy) != 0 {
		t.Errorf("second message %s: records %+v", qid, recs)
	}
}
