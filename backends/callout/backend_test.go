// backend_test.go: the callout backend through the engine (pmulttest):
// verdicts per result, tag, skips, soft timeout then cache, call-ahead at
// RCPT, the internal-address guard, and a calloutd server (ours) that
// answers, is unreachable or answers garbage.

package callout

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// world is a loopback block with DNS and SMTP targets on port 2525:
// ok.test (IP 2), nullrej.test (IP 3, refuses the null sender), slow.test
// (IP 4, 300 ms before every reply), internal.test (MX at 10.1.2.3),
// nx.test (NXDOMAIN), nullmx.test (null MX).
type world struct {
	net  *callouttest.Net
	dns  *callouttest.DNSServer
	slow *callouttest.SMTPServer
	ok   *callouttest.SMTPServer
}

func newWorld(t *testing.T) *world {
	t.Helper()
	n := callouttest.NewNet()
	w := &world{net: n}
	w.dns = callouttest.StartDNS(t, n.Addr(53, 0),
		"ok.test. 60 IN MX 10 mx.ok.test.", "mx.ok.test. 60 IN A "+n.IP(2),
		"nullrej.test. 60 IN MX 10 mx.nullrej.test.", "mx.nullrej.test. 60 IN A "+n.IP(3),
		"slow.test. 60 IN MX 10 mx.slow.test.", "mx.slow.test. 60 IN A "+n.IP(4),
		"internal.test. 60 IN MX 10 mx.internal.test.", "mx.internal.test. 60 IN A 10.1.2.3",
		"nullmx.test. 60 IN MX 0 .",
	)
	w.ok = callouttest.StartSMTP(t, n.Addr(2, 2525), callouttest.SMTPOptions{})
	callouttest.StartSMTP(t, n.Addr(3, 2525), callouttest.SMTPOptions{RejectNullSender: true})
	w.slow = callouttest.StartSMTP(t, n.Addr(4, 2525), callouttest.SMTPOptions{Delay: 300 * time.Millisecond})
	return w
}

// conf is the TOML of a backend probing the world in process.
func (w *world) conf(extra string) string {
	return fmt.Sprintf(`
dns_servers = [%q]
smtp_port = 2525
probe_networks = ["127.0.0.0/8"]
ehlo = "prober.harness.test"
cache = "memory"
%s`, w.dns.Addr, extra)
}

// backend parses text as a callout backend's keys and builds it.
func backend(t *testing.T, text string) *Backend {
	t.Helper()
	s, errs := ParseConfig(func(v any) error { _, err := toml.Decode(text, v); return err })
	errs = append(errs, s.Validate()...)
	if len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	b := New(s.Config("sav", pmulttest.NewLog(&pmulttest.LogBuffer{})))
	t.Cleanup(b.Retire)
	return b
}

// openSession opens an engine session of b alone.
func openSession(t *testing.T, b pmult.Backend) *pmulttest.Harness {
	h := pmulttest.Open(t, &pmult.Engine{Slots: []pmult.Slot{{Backend: b}}}, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	return h
}

func mail(h *pmulttest.Harness, addr string, macros ...string) pmult.Reply {
	ev := &pmult.Event{Kind: pmult.KindMail, Args: []string{"<" + addr + ">"}}
	if len(macros) > 0 {
		ev.Macros = []pmult.MacroSet{{For: pmult.KindMail, Pairs: macros}}
	}
	return h.Do(ev)
}

func TestSenderVerdicts(t *testing.T) {
	w := newWorld(t)
	b := backend(t, w.conf(""))
	for _, c := range []struct {
		addr    string
		verdict pmult.Verdict
		text    string
	}{
		{"good@ok.test", pmult.Continue, ""},
		{"bad@ok.test", pmult.Reject, "550 5.1.7 "},
		{"grey@ok.test", pmult.Tempfail, "450 4.1.7 "},
		{"x@nx.test", pmult.Reject, "550 5.1.8 "},
		{"x@nullmx.test", pmult.Reject, "550 5.1.8 "},
		{"good@nullrej.test", pmult.Continue, ""},  // failure: proves nothing
		{"x@bad_domain..test", pmult.Continue, ""}, // malformed: failure
		{"x@internal.test", pmult.Tempfail, "450 4.1.7 "},
	} {
		h := openSession(t, b)
		r := mail(h, c.addr)
		if r.Verdict != c.verdict || !strings.HasPrefix(r.Text, c.text) {
			t.Errorf("MAIL FROM:<%s> = %v %q, want %v %q...", c.addr, r.Verdict, r.Text, c.verdict, c.text)
		}
		if strings.Contains(r.Text, "5.1.1") {
			t.Errorf("MAIL FROM:<%s>: sender rejected with 5.1.1: %q", c.addr, r.Text)
		}
	}
	// The answers were cached: a second bad@ok.test probes nothing.
	n := w.ok.Connections()
	if r := mail(openSession(t, b), "bad@ok.test"); r.Verdict != pmult.Reject {
		t.Errorf("cached bad@ok.test = %+v", r)
	}
	if w.ok.Connections() != n {
		t.Errorf("a cached answer probed again")
	}
}

func TestConfiguredVerdicts(t *testing.T) {
	w := newWorld(t)
	b := backend(t, w.conf(`
verdict_success = "accept"
verdict_failure = "reject 550 5.1.0 Sender validity not confirmed"
verdict_temp_failure = "tempfail 450 4.1.0 Try again later"
`))
	if r := mail(openSession(t, b), "good@ok.test"); r.Verdict != pmult.Accept {
		t.Errorf("success = %+v, want accept", r)
	}
	if r := mail(openSession(t, b), "good@nullrej.test"); r.Verdict != pmult.Reject || r.Text != "550 5.1.0 Sender validity not confirmed" {
		t.Errorf("failure = %+v", r)
	}
	if r := mail(openSession(t, b), "grey@ok.test"); r.Verdict != pmult.Tempfail || r.Text != "450 4.1.0 Try again later" {
		t.Errorf("temp_failure = %+v", r)
	}
}

func TestTag(t *testing.T) {
	w := newWorld(t)
	b := backend(t, w.conf(`verdict_not_found = "tag"`))
	h := openSession(t, b)
	if h.Neg.Actions&pmult.ActAddHeaders == 0 {
		t.Fatalf("negotiated %+v: no add-header action", h.Neg)
	}
	if r := mail(h, "bad@ok.test"); r.Verdict != pmult.Continue {
		t.Fatalf("MAIL = %+v", r)
	}
	h.Rcpt("b@example.net")
	h.Data()
	h.Header("Subject", " x")
	h.EOH()
	r := h.EOM()
	if len(r.Edits) != 1 || r.Edits[0].Kind != pmult.EditAddHeader || r.Edits[0].Name != "X-Sender-Verify" || r.Edits[0].Value != " not_found" {
		t.Errorf("EOM = %+v, want X-Sender-Verify: not_found", r)
	}
	// The next message of the session has a verified sender: no header.
	mail(h, "good@ok.test")
	h.Rcpt("b@example.net")
	h.Data()
	h.EOH()
	if r := h.EOM(); len(r.Edits) != 0 {
		t.Errorf("second EOM = %+v", r)
	}
	// Without tag verdicts the backend skips end of message.
	s, _ := backend(t, w.conf("")).Open(context.Background(), pmult.OpenInfo{})
	defer s.Close()
	if c := s.Caps(); !c.NoEvent.Has(pmult.KindEOM) || !c.NoEvent.Has(pmult.KindHeader) || !c.NoEvent.Has(pmult.KindBody) || c.Actions != 0 {
		t.Errorf("caps %+v", c)
	}
}

func TestSkips(t *testing.T) {
	w := newWorld(t)
	b := backend(t, w.conf(`
source_ip = "192.0.2.77"
skip_clients = ["198.51.100.0/24"]
skip_senders = ["bad@ok.test", ".trusted.test"]
skip_macro = "{spf_result}"
`))
	// Each would be rejected (bad@ok.test, or grey) if verified.
	probe := func(h *pmulttest.Harness, addr string, macros ...string) pmult.Reply { return mail(h, addr, macros...) }
	conn := func(addr, helo string) *pmulttest.Harness {
		h := pmulttest.Open(t, &pmult.Engine{Slots: []pmult.Slot{{Backend: b}}}, pmulttest.AllOffer)
		h.Do(&pmult.Event{Kind: pmult.KindConnect, Hostname: "c.example", Family: '4', Address: addr})
		h.Do(&pmult.Event{Kind: pmult.KindHelo, Arg: helo})
		return h
	}
	n := w.ok.Connections()
	for name, r := range map[string]pmult.Reply{
		"null sender":   probe(conn("192.0.2.1", "c.example"), ""),
		"auth_authen":   probe(conn("192.0.2.1", "c.example"), "grey@ok.test", "{auth_authen}", "joe"),
		"auth_type":     probe(conn("192.0.2.1", "c.example"), "grey@ok.test", "{auth_type}", "PLAIN"),
		"own address":   probe(conn("192.0.2.77", "c.example"), "grey@ok.test"),
		"own helo":      probe(conn("192.0.2.1", "PROBER.harness.test"), "grey@ok.test"),
		"client cidr":   probe(conn("198.51.100.9", "c.example"), "grey@ok.test"),
		"sender":        probe(conn("192.0.2.1", "c.example"), "Bad@OK.test"),
		"subdomain":     probe(conn("192.0.2.1", "c.example"), "grey@a.trusted.test"),
		"vouched macro": probe(conn("192.0.2.1", "c.example"), "grey@ok.test", "{spf_result}", "Pass"),
	} {
		if r.Verdict != pmult.Continue {
			t.Errorf("%s: %+v, want continue without a probe", name, r)
		}
	}
	if w.ok.Connections() != n {
		t.Errorf("%d probes of skipped senders", w.ok.Connections()-n)
	}
	if r := probe(conn("192.0.2.1", "c.example"), "grey@ok.test", "{spf_result}", "fail"); r.Verdict != pmult.Tempfail {
		t.Errorf("spf fail: %+v, want the probe's tempfail", r)
	}
}

// The soft timeout answers tempfail at once; the probe completes in the
// background with the hard timeouts and the retry is answered from the
// cache.
func TestSoftTimeoutThenCache(t *testing.T) {
	w := newWorld(t)
	b := backend(t, w.conf(`
io_timeout = "100ms"
hard_io_timeout = "5s"
`))
	if r := mail(openSession(t, b), "good@slow.test"); r.Verdict != pmult.Tempfail || !strings.HasPrefix(r.Text, "451 4.1.7 ") {
		t.Fatalf("first MAIL = %+v, want the soft-timeout tempfail", r)
	}
	v := b.Verifier()
	deadline := time.Now().Add(10 * time.Second)
	for v.Stats().BgDone == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("background completion did not finish: %+v", v.Stats())
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	n := w.slow.Connections()
	if r := mail(openSession(t, b), "good@slow.test"); r.Verdict != pmult.Continue {
		t.Errorf("retry = %+v, want the cached success", r)
	}
	if w.slow.Connections() != n || v.Stats().CacheHits == 0 {
		t.Errorf("the retry was not answered from the cache: %+v", v.Stats())
	}
}

// max_wait bounds the whole wait, whatever the per-stage timeouts.
func TestMaxWait(t *testing.T) {
	w := newWorld(t)
	b := backend(t, w.conf(`
io_timeout = "5s"
max_wait = "200ms"
`))
	if r := mail(openSession(t, b), "good@slow.test"); r.Verdict != pmult.Tempfail || !strings.HasPrefix(r.Text, "451 4.1.7 ") {
		t.Fatalf("MAIL = %+v, want the timeout tempfail", r)
	}
}

func TestRecipientCallAhead(t *testing.T) {
	w := newWorld(t)
	b := backend(t, w.conf(fmt.Sprintf(`
verify_recipients = true
recipient_mode = "hostonly"
recipient_host = %q
`, w.net.Addr(2, 2525))))
	h := openSession(t, b)
	mail(h, "good@ok.test")
	if r := h.Rcpt("good@relayed.test"); r.Verdict != pmult.Continue {
		t.Errorf("good rcpt = %+v", r)
	}
	if r := h.Rcpt("bad@relayed.test"); r.Verdict != pmult.Reject || !strings.HasPrefix(r.Text, "550 5.1.1 ") {
		t.Errorf("bad rcpt = %+v", r)
	}
}

// startCalloutd serves the calloutd protocol (ours) on a free port.
func startCalloutd(t *testing.T, w *world) string {
	t.Helper()
	cfg, _ := ParseConfig(func(v any) error { _, err := toml.Decode(w.conf(""), v); return err })
	c := cfg.Config("srv", nil)
	v := &callout.Verifier{Prober: c.Prober}
	srv := &callout.Server{Verifier: v, Logger: pmulttest.NewLog(&pmulttest.LogBuffer{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		v.Close()
	})
	return ln.Addr().String()
}

func TestCalloutd(t *testing.T) {
	w := newWorld(t)
	addr := startCalloutd(t, w)
	b := backend(t, w.conf(`calloutd = "inet://`+addr+`"`))
	h := openSession(t, b)
	if r := mail(h, "good@ok.test"); r.Verdict != pmult.Continue {
		t.Errorf("good = %+v", r)
	}
	if r := mail(h, "bad@ok.test"); r.Verdict != pmult.Reject || !strings.HasPrefix(r.Text, "550 5.1.7 ") {
		t.Errorf("bad = %+v", r)
	}
	if r := mail(h, "grey@ok.test"); r.Verdict != pmult.Tempfail {
		t.Errorf("grey = %+v", r)
	}
}

// An unreachable calloutd, or one answering garbage, is the backend's
// failure: the on_failure action (tempfail by default), with a log line.
func TestCalloutdOutage(t *testing.T) {
	w := newWorld(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	garbage, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	go func() {
		for {
			c, err := garbage.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HELLO I AM NOT CALLOUTD\r\n"))
			c.Close()
		}
	}()
	// slow greets, then never answers.
	slow, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	go func() {
		for {
			c, err := slow.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(callout.Greeting + "\r\n"))
			go func() {
				defer c.Close()
				c.Read(make([]byte, 4096))
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					if _, err := c.Read(make([]byte, 4096)); err != nil {
						return
					}
				}
			}()
		}
	}()
	for name, addr := range map[string]string{"unreachable": dead, "garbage": garbage.Addr().String(), "slow": slow.Addr().String()} {
		b := backend(t, w.conf(`calloutd = "inet://`+addr+`"`+"\nmax_wait = \"300ms\""))
		h := openSession(t, b)
		if r := mail(h, "good@ok.test"); r.Verdict != pmult.Tempfail {
			t.Errorf("%s: MAIL = %+v, want the on_failure tempfail", name, r)
		}
		if !strings.Contains(h.Log.String(), "calloutd inet:"+addr) {
			t.Errorf("%s: no log line naming the server:\n%s", name, h.Log.String())
		}
		// The breaker: the next session fails at once, without trying.
		h2 := openSession(t, b)
		if r := mail(h2, "good@ok.test"); r.Verdict != pmult.Tempfail || !strings.Contains(h2.Log.String(), pmult.ErrDown.Error()) {
			t.Errorf("%s: second MAIL = %+v, want a fast tempfail (backend down):\n%s", name, r, h2.Log.String())
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for text, want := range map[string]string{
		`probe_mode = "hostonly"`:                                         "probe_host",
		`probe_mode = "bogus"`:                                            "probe_mode",
		`verdict_not_found = "reject 450 x"`:                              "5xx",
		`verdict_temp_failure = "tempfail 550 x"`:                         "4xx",
		`verdict_success = "tag 250 x"`:                                   "only reject and tempfail",
		`cache = "redis"`:                                                 "redis_url",
		`skip_clients = ["300.1.1.1/8"]`:                                  "skip_clients[0]",
		`verify_recipients = true` + "\n" + `recipient_mode = "hostonly"`: "recipient_host",
		`calloutd = "bogus:x"`:                                            "calloutd",
	} {
		s, errs := ParseConfig(func(v any) error { _, err := toml.Decode(text, v); return err })
		errs = append(errs, s.Validate()...)
		if fmt.Sprint(errs) == "[]" || !strings.Contains(fmt.Sprint(errs), want) {
			t.Errorf("%s: errors %v, want one about %s", text, errs, want)
		}
	}
}

// endless is a target whose greeting never ends ("220-" lines forever).
func endless(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Write([]byte("220-and on and on\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// Bad DNS and bad targets: each a tempfail (never a permanent verdict on
// a failure to find out), and nothing left running afterwards.
func TestBadInput(t *testing.T) {
	w := newWorld(t)
	w.dns.Add(t, "servfail.test. 60 IN MX 10 mx.ok.test.", "hang.test. 60 IN MX 10 mx.ok.test.",
		"loop.test. 60 IN CNAME loop2.test.", "loop2.test. 60 IN CNAME loop.test.",
		"alias.test. 60 IN CNAME ok.test.",
		"drip.test. 60 IN MX 10 mx.drip.test.", "mx.drip.test. 60 IN A "+w.net.IP(5),
		"endless.test. 60 IN MX 10 mx.endless.test.", "mx.endless.test. 60 IN A "+w.net.IP(6))
	w.dns.ServFail("servfail.test")
	w.dns.Hang("hang.test")
	callouttest.StartSMTP(t, w.net.Addr(5, 2525), callouttest.SMTPOptions{Drip: 20 * time.Millisecond})
	endless(t, w.net.Addr(6, 2525))
	before := runtime.NumGoroutine()
	b := backend(t, w.conf(`
dns_timeout = "200ms"
io_timeout = "300ms"
greeting_timeout = "300ms"
hard_io_timeout = "600ms"
hard_connect_timeout = "600ms"
`))
	for _, addr := range []string{"x@servfail.test", "x@hang.test", "x@loop.test", "good@drip.test", "good@endless.test"} {
		h := openSession(t, b)
		if r := mail(h, addr); r.Verdict != pmult.Tempfail {
			t.Errorf("MAIL FROM:<%s> = %+v, want tempfail", addr, r)
		}
		h.S.Close()
	}
	// An alias is followed.
	h := openSession(t, b)
	if r := mail(h, "bad@alias.test"); r.Verdict != pmult.Reject || !strings.HasPrefix(r.Text, "550 5.1.7 ") {
		t.Errorf("bad@alias.test = %+v, want the target's not_found", r)
	}
	h.S.Close()
	// Background completions end within the hard timeouts; retiring the
	// backend stops everything.
	v := b.Verifier()
	deadline := time.Now().Add(10 * time.Second)
	for st := v.Stats(); st.BgDone < st.BgQueued; st = v.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("background probes outlived their hard timeouts: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := v.Stats(); st.PendingProbes != 0 {
		t.Errorf("pending probes left: %+v", st)
	}
	b.Retire()
	deadline = time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines left: %d, %d before\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The modes: hostonly asks the given host whatever the sender's domain;
// mxonly the MX hosts of the given domain.
func TestProbeModes(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct{ keys, addr string }{
		{fmt.Sprintf("probe_mode = \"hostonly\"\nprobe_host = %q", w.net.Addr(2, 2525)), "bad@elsewhere.test"},
		{"probe_mode = \"mxonly\"\nprobe_host = \"ok.test\"", "bad@elsewhere.test"},
		{"probe_mode = \"mxfirst\"", "bad@ok.test"},
	} {
		b := backend(t, w.conf(c.keys))
		n := w.ok.Rcpts()
		if r := mail(openSession(t, b), c.addr); r.Verdict != pmult.Reject || !strings.HasPrefix(r.Text, "550 5.1.7 ") {
			t.Errorf("%s: %s = %+v, want the target's not_found", c.keys, c.addr, r)
		}
		if w.ok.Rcpts() != n+1 {
			t.Errorf("%s: the target was not asked", c.keys)
		}
	}
}
