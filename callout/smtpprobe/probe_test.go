// probe_test.go: the prober against scripted SMTP targets and an in-process
// DNS server on loopback: every result, the MX walk, STARTTLS, timeouts,
// slow and silent peers.

package smtpprobe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/callouttest"
)

const testPort = 2525

type env struct {
	net    *callouttest.Net
	dns    *callouttest.DNSServer
	prober *Prober
}

// newEnv starts a DNS server in a fresh loopback block and a prober that
// asks it and probes port testPort.
func newEnv(t *testing.T, records ...string) *env {
	t.Helper()
	n := callouttest.NewNet()
	d := callouttest.StartDNS(t, n.Addr(53, 0), records...)
	p := &Prober{
		Resolver: &Resolver{Servers: []string{d.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1},
		Port:     testPort,
		Ehlo:     "probe.test",
		Timeouts: Timeouts{Connect: time.Second, Initial: time.Second, Helo: time.Second, Mail: time.Second,
			Rcpt: time.Second, Rset: time.Second, Quit: time.Second},
	}
	return &env{net: n, dns: d, prober: p}
}

func (e *env) smtp(t *testing.T, i int, o callouttest.SMTPOptions) *callouttest.SMTPServer {
	return callouttest.StartSMTP(t, e.net.Addr(i, testPort), o)
}

func events(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s %s\n", e.Stage, e.Text)
	}
	return b.String()
}

func (e *env) probe(t *testing.T, req Request) (Outcome, string) {
	t.Helper()
	var evs []Event
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := e.prober.Probe(ctx, req, func(ev Event) { evs = append(evs, ev) })
	return out, events(evs)
}

func TestHostOnlyResults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.smtp(t, 2, callouttest.SMTPOptions{})
	e.smtp(t, 3, callouttest.SMTPOptions{Greeting: "421 4.3.2 busy"})
	e.smtp(t, 5, callouttest.SMTPOptions{Greeting: "554 5.7.1 no service"})
	e.smtp(t, 6, callouttest.SMTPOptions{Greeting: "220-fake multi\n220 second line"})
	h2, h3, h5, h6 := e.net.IP(2), e.net.IP(3), e.net.IP(5), e.net.IP(6)
	cases := []struct {
		req   Request
		want  Result
		retry bool
		evs   string // "" : not checked
	}{
		{Request{Email: "good@example.com", Host: h2}, Success, false,
			"INIT H\nGRTNG 220 fake-smtp.test ESMTP callouttest\nHELO 250-fake-smtp.test\nSENT RCPT TO:<good@example.com>\nRECV 250 2.1.5 Ok\n"},
		{Request{Email: "<good@Example.COM>", Host: h2}, Success, false, ""},
		{Request{Email: "bad@example.com", Host: h2}, NotFound, false,
			"INIT H\nGRTNG 220 fake-smtp.test ESMTP callouttest\nHELO 250-fake-smtp.test\nSENT RCPT TO:<bad@example.com>\nRECV 550 5.1.1 <bad>: Recipient address rejected: User unknown\n"},
		{Request{Email: "grey@example.com", Host: h2}, TempFailure, false, ""},
		{Request{Email: "perm@example.com", Host: h2}, NotFound, false, ""},
		{Request{Email: "multi@example.com", Host: h2}, NotFound, false, "INIT H\nGRTNG 220 fake-smtp.test ESMTP callouttest\nHELO 250-fake-smtp.test\nSENT RCPT TO:<multi@example.com>\nRECV 550-5.1.1 first line\n"},
		{Request{Email: "weird@example.com", Host: h2}, NotFound, false, ""},
		{Request{Email: "good@example.com", Host: h2, MailFrom: "rej@x.test"}, NotFound, false,
			"INIT H\nGRTNG 220 fake-smtp.test ESMTP callouttest\nHELO 250-fake-smtp.test\nSENT MAIL FROM:<rej@x.test>\nRECV 550 5.7.1 sender rejected\n"},
		{Request{Email: "good@example.com", Host: h2, MailFrom: "tmp@x.test"}, TempFailure, false, ""},
		{Request{Email: "good@example.com", Host: h2, Ehlo: "noehlo.test"}, Success, false,
			"INIT H\nGRTNG 220 fake-smtp.test ESMTP callouttest\nHELO 250 fake-smtp.test\nSENT RCPT TO:<good@example.com>\nRECV 250 2.1.5 Ok\n"},
		{Request{Email: "good@example.com", Host: h2, Ehlo: "rejhelo.test"}, NotFound, false,
			"INIT H\nGRTNG 220 fake-smtp.test ESMTP callouttest\nHELO 550 5.7.1 go away\nSENT HELO rejhelo.test\nRECV 550 5.7.1 go away\n"},
		{Request{Email: "good@example.com", Host: h2, Ehlo: "tmphelo.test"}, TempFailure, false,
			"INIT H\nGRTNG 220 fake-smtp.test ESMTP callouttest\nHELO 421 4.3.2 later\nSENT EHLO tmphelo.test\nRECV 421 4.3.2 later\n"},
		{Request{Email: "good@example.com", Host: h2, MailFrom: "dropm@x.test"}, TempFailure, true,
			"INIT H\nGRTNG 220 fake-smtp.test ESMTP callouttest\nHELO 250-fake-smtp.test\nSENT MAIL FROM:<dropm@x.test>\nRECV nothing\n"},
		{Request{Email: "drop@example.com", Host: h2}, TempFailure, true, ""},
		{Request{Email: "good@example.com", Host: h3}, TempFailure, false,
			"INIT H3\nGRTNG 421 4.3.2 busy\nSENT nothing\nRECV 421 4.3.2 busy\n"},
		{Request{Email: "good@example.com", Host: h5}, NotFound, false,
			"INIT H5\nGRTNG 554 5.7.1 no service\nSENT nothing\nRECV 554 5.7.1 no service\n"},
		{Request{Email: "good@example.com", Host: h6}, Success, false, ""},
		{Request{Email: "good@example.com", Host: e.net.IP(9)}, TempFailure, true, ""}, // refused: no lines
		{Request{Email: "good@example.com", Host: e.net.Addr(9, 1)}, TempFailure, true, ""},
		{Request{Email: "good@example.com", Host: h2 + ":" + fmt.Sprint(testPort)}, Success, false, ""},
		{Request{Email: "nobody", Host: h2}, NotFound, false, ""},
		{Request{Email: "x@", Mode: MXFirst}, Failure, false, ""},
		{Request{Email: "good@example.com", Host: "nx.test"}, Failure, true, ""},
	}
	for _, c := range cases {
		t.Run(c.req.Email+"/"+c.req.Host+c.req.MailFrom+c.req.Ehlo, func(t *testing.T) {
			if c.req.Host != "" && c.req.Mode == MXFirst && c.req.Email != "x@" {
				c.req.Mode = HostOnly
			}
			out, evs := e.probe(t, c.req)
			if out.Result != c.want || out.Retry != c.retry {
				t.Errorf("got %v retry=%v (%v), want %v retry=%v", out.Result, out.Retry, out.Err, c.want, c.retry)
			}
			if c.evs != "" {
				want := strings.NewReplacer("H3", h3, "H5", h5, "H\n", h2+"\n").Replace(c.evs)
				if evs != want {
					t.Errorf("events:\n%s\nwant:\n%s", evs, want)
				}
			}
		})
	}
}

func TestMXWalk(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.net
	e.dns.Add(t,
		"mx1.test. 60 IN MX 20 mxb.mx1.test.", "mx1.test. 60 IN MX 10 mxa.mx1.test.", // preference, not order
		"mxa.mx1.test. 60 IN A "+n.IP(3), "mxb.mx1.test. 60 IN A "+n.IP(7),
		"mx2.test. 60 IN MX 10 mxa.mx2.test.", "mx2.test. 60 IN MX 20 mxb.mx2.test.",
		"mxa.mx2.test. 60 IN A "+n.IP(9), "mxb.mx2.test. 60 IN A "+n.IP(7),
		"mx3.test. 60 IN MX 10 mxa.mx3.test.", "mx3.test. 60 IN MX 20 mxb.mx3.test.",
		"mxa.mx3.test. 60 IN A "+n.IP(2), "mxb.mx3.test. 60 IN A "+n.IP(6),
		"mx5.test. 60 IN MX 10 mxa.mx5.test.", "mx5.test. 60 IN MX 20 mxb.mx5.test.",
		"mxa.mx5.test. 60 IN A "+n.IP(5), "mxb.mx5.test. 60 IN A "+n.IP(7),
		"mx8.test. 60 IN MX 10 mxa.mx8.test.", "mx8.test. 60 IN MX 20 mxb.mx8.test.",
		"mxa.mx8.test. 60 IN A "+n.IP(8), "mxb.mx8.test. 60 IN A "+n.IP(7),
		"noaddr.test. 60 IN MX 10 gone.noaddr.test.", "noaddr.test. 60 IN MX 20 mxb.mx1.test.",
		"anoly.test. 60 IN A "+n.IP(7),
		"v6.test. 60 IN AAAA ::1",
		"multi.test. 60 IN A "+n.IP(9), "multi.test. 60 IN A "+n.IP(7),
		"nullmx.test. 60 IN MX 0 .",
		"nodata.test. 60 IN TXT \"x\"",
		"dead.test. 60 IN MX 10 mxa.mx2.test.",
	)
	e.dns.Hang("hang.test")
	e.dns.ServFail("sf.test")
	s2 := e.smtp(t, 2, callouttest.SMTPOptions{})
	s3 := e.smtp(t, 3, callouttest.SMTPOptions{Greeting: "421 4.3.2 busy"})
	e.smtp(t, 5, callouttest.SMTPOptions{Greeting: "554 5.7.1 no service"})
	s6 := e.smtp(t, 6, callouttest.SMTPOptions{CatchAll: true})
	s7 := e.smtp(t, 7, callouttest.SMTPOptions{})
	e.smtp(t, 8, callouttest.SMTPOptions{Greeting: "-"})

	cases := []struct {
		req      Request
		want     Result
		host     string
		dead     bool
		maxTime  time.Duration
		noSecond bool // the second MX (s6) must not be contacted
	}{
		{Request{Email: "good@mx1.test"}, Success, "mxb.mx1.test", false, 0, false},
		{Request{Email: "good@mx2.test"}, Success, "mxb.mx2.test", false, 0, false},
		{Request{Email: "bad@mx3.test"}, NotFound, "mxa.mx3.test", false, 0, true},
		{Request{Email: "grey@mx3.test"}, TempFailure, "mxa.mx3.test", false, 0, true},
		{Request{Email: "slow@mx3.test"}, TempFailure, "mxa.mx3.test", false, 3 * time.Second, true},
		{Request{Email: "good@mx5.test"}, NotFound, "mxa.mx5.test", false, 0, false},
		{Request{Email: "good@mx8.test"}, Success, "mxb.mx8.test", false, 4 * time.Second, false},
		{Request{Email: "good@noaddr.test"}, Success, "mxb.mx1.test", false, 0, false},
		{Request{Email: "good@anoly.test"}, Success, "anoly.test", false, 0, false},
		{Request{Email: "good@multi.test"}, Success, "multi.test", false, 0, false},
		{Request{Email: "good@nullmx.test"}, Failure, "", true, 0, false},
		{Request{Email: "good@nx.test"}, NotFound, "", true, 0, false},
		{Request{Email: "good@nodata.test"}, NotFound, "", true, 0, false},
		{Request{Email: "good@dead.test"}, TempFailure, "mxa.mx2.test", false, 0, false},
		{Request{Email: "good@hang.test"}, TempFailure, "", false, 2 * time.Second, false},
		{Request{Email: "good@sf.test"}, TempFailure, "", false, 0, false},
		{Request{Email: "good@x.test", Mode: MXOnly, Host: "anoly.test"}, NotFound, "", true, 0, false},
		{Request{Email: "good@x.test", Mode: MXOnly, Host: "mx1.test"}, Success, "mxb.mx1.test", false, 0, false},
		{Request{Email: "good@x.test", Mode: MXFirst, Host: "mx2.test"}, Success, "mxb.mx2.test", false, 0, false},
		{Request{Email: "good@x.test", Mode: HostFirst, Host: "mxa.mx2.test"}, TempFailure, "mxa.mx2.test", false, 0, false},
		{Request{Email: "good@x.test", Mode: HostFirst, Host: "mx1.test"}, Success, "mxb.mx1.test", false, 0, false},
		{Request{Email: "good@x.test", Mode: HostOnly, Host: "anoly.test"}, Success, "anoly.test", false, 0, false},
		{Request{Email: "good@x.test", Mode: MXOnly}, Failure, "", false, 0, false},
	}
	for _, c := range cases {
		t.Run(c.req.Email+"/"+c.req.Mode.String()+"/"+c.req.Host, func(t *testing.T) {
			before := s6.Connections()
			start := time.Now()
			out, evs := e.probe(t, c.req)
			el := time.Since(start)
			if out.Result != c.want || out.DomainDead != c.dead {
				t.Errorf("got %v dead=%v (%v), want %v dead=%v\n%s", out.Result, out.DomainDead, out.Err, c.want, c.dead, evs)
			}
			if c.host != "" && out.Host != c.host {
				t.Errorf("answer from %q, want %q\n%s", out.Host, c.host, evs)
			}
			if c.maxTime > 0 && el > c.maxTime {
				t.Errorf("took %v, limit %v", el, c.maxTime)
			}
			if c.noSecond && s6.Connections() != before {
				t.Errorf("the walk went on to the next MX after a definite answer\n%s", evs)
			}
		})
	}
	if s3.Connections() == 0 || s7.Connections() == 0 || s2.Connections() == 0 {
		t.Errorf("targets not used: %d %d %d", s3.Connections(), s7.Connections(), s2.Connections())
	}

	// calloutd's walk: a 4xx after the greeting moves on.
	p := &Prober{Resolver: e.prober.Resolver, Port: testPort, Timeouts: e.prober.Timeouts, ContinueAfterTempFail: true}
	before := s6.Connections()
	out := p.Probe(context.Background(), Request{Email: "grey@mx3.test"}, nil)
	if out.Result != TempFailure || s6.Connections() != before+1 {
		t.Errorf("ContinueAfterTempFail: %v, second MX connections %d→%d", out.Result, before, s6.Connections())
	}
}

func TestStartTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.smtp(t, 2, callouttest.SMTPOptions{RequireTLS: true})
	h := e.net.IP(2)
	for _, c := range []struct {
		policy StartTLS
		want   Result
		tls    bool
	}{
		{StartTLSDefault, Success, true}, // ondemand: after the 530
		{StartTLSOnDemand, Success, true},
		{StartTLSAlways, Success, true},
		{StartTLSNever, NotFound, false},
	} {
		before := len(s.Log())
		out, evs := e.probe(t, Request{Email: "good@example.com", Mode: HostOnly, Host: h, StartTLS: c.policy})
		log := strings.Join(s.Log()[before:], "\n")
		if out.Result != c.want || strings.Contains(log, "> STARTTLS") != c.tls {
			t.Errorf("%v: got %v (%v)\n%s\n%s", c.policy, out.Result, out.Err, evs, log)
		}
		// The server's 530 reply, not "530" anywhere: the log also has
		// the client's address and random port ("+ 10.0.0.1:45530").
		if c.policy == StartTLSAlways && strings.Contains(log, "< 530") {
			t.Errorf("always: MAIL FROM was sent before STARTTLS\n%s", log)
		}
	}
	// A server without TLS answering 530: STARTTLS is refused with 454.
	e.smtp(t, 3, callouttest.SMTPOptions{})
	out, evs := e.probe(t, Request{Email: "good@example.com", Mode: HostOnly, Host: e.net.IP(3), MailFrom: "tls@x.test"})
	if out.Result != Success {
		t.Errorf("plain server: %v\n%s", out.Result, evs)
	}
}

func TestCatchAllAndSourceIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := e.smtp(t, 2, callouttest.SMTPOptions{CatchAll: true})
	e.smtp(t, 3, callouttest.SMTPOptions{})
	e.prober.SourceIP = netip.MustParseAddr(e.net.IP(200))
	out, _ := e.probe(t, Request{Email: "good@example.com", Mode: HostOnly, Host: e.net.IP(2), CatchAll: true})
	if out.Result != Success || !out.CatchAll {
		t.Errorf("catch-all server: %+v", out)
	}
	out, _ = e.probe(t, Request{Email: "good@example.com", Mode: HostOnly, Host: e.net.IP(3), CatchAll: true})
	if out.Result != Success || out.CatchAll {
		t.Errorf("normal server: %+v", out)
	}
	if l := ca.Log(); len(l) == 0 || !strings.HasPrefix(l[0], "+ "+e.net.IP(200)+":") {
		t.Errorf("source IP not used: %v", l[:1])
	}
}

func TestSlowPeers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.smtp(t, 2, callouttest.SMTPOptions{Drip: time.Second}) // one byte a second
	e.smtp(t, 3, callouttest.SMTPOptions{Greeting: "-"})     // never greets
	e.smtp(t, 4, callouttest.SMTPOptions{Greeting: "x"})     // closes at once
	for i, want := range map[int]time.Duration{2: 1500 * time.Millisecond, 3: 1500 * time.Millisecond, 4: 500 * time.Millisecond} {
		start := time.Now()
		out, evs := e.probe(t, Request{Email: "good@example.com", Mode: HostOnly, Host: e.net.IP(i)})
		if el := time.Since(start); out.Result != TempFailure || !out.Retry || el > want {
			t.Errorf("host %d: %v retry=%v in %v (limit %v)\n%s", i, out.Result, out.Retry, el, want, evs)
		}
	}
	// The overall deadline gives timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	out := e.prober.Probe(ctx, Request{Email: "good@example.com", Mode: HostOnly, Host: e.net.IP(3)}, nil)
	if out.Result != Timeout || !errors.Is(out.Err, context.DeadlineExceeded) && out.Err == nil {
		t.Errorf("deadline: %+v", out)
	}
}

func TestParse(t *testing.T) {
	for _, r := range []Result{Success, NotFound, Failure, TempFailure, Timeout} {
		if got, err := ParseResult(r.String()); got != r || err != nil {
			t.Errorf("ParseResult(%v) = %v, %v", r, got, err)
		}
	}
	if _, err := ParseResult("ok"); err == nil {
		t.Error("ParseResult(ok) accepted")
	}
	if m, err := ParseMode("default"); m != MXFirst || err != nil {
		t.Error("default mode")
	}
	if _, err := ParseMode("HOSTONLY"); err == nil {
		t.Error("modes are case-sensitive in calloutd")
	}
	if l, d, ok := SplitAddress("<A.b@Ex.COM.>"); l != "A.b" || d != "ex.com" || !ok {
		t.Errorf("SplitAddress: %q %q %v", l, d, ok)
	}
	to := Timeouts{Connect: 1}.Or(SoftTimeouts())
	if to.Connect != 1 || to.Rcpt != 3*time.Second {
		t.Errorf("Or: %+v", to)
	}
}
