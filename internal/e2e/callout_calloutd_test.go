// callout_calloutd_test.go: real Postfix -> pmult -> a callout backend
// probing through a calloutd server, ours (package callout's Server) and
// mailfromd's calloutd 8.15: the soft timeout (the MTA gets the timeout
// verdict, 451, the server completes the probe with its hard timeouts,
// the sender's retry is answered from its cache without a new probe) and
// a sender domain without mail host (550 5.1.8, the no_mail_host
// verdict, not the not_found one).

package e2e

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/internal/realpeer"
)

// startOurCalloutd serves our calloutd protocol server, with a memory
// cache, probing the world; its hard timeouts are 5 s.
func startOurCalloutd(t *testing.T, w *savWorld) (string, *callout.Verifier) {
	t.Helper()
	v := &callout.Verifier{Prober: &smtpprobe.Prober{
		Resolver: &smtpprobe.Resolver{Servers: []string{w.dns.Addr}, Timeout: time.Second},
		Ehlo:     "calloutd.e2e.test",
	}, Cache: &cache.Cache{Store: &cache.Memory{}}, HardTimeouts: hardTimeouts(5 * time.Second)}
	srv := &callout.Server{Verifier: v}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		v.Close()
	})
	return ln.Addr().String(), v
}

func hardTimeouts(d time.Duration) smtpprobe.Timeouts {
	return smtpprobe.Timeouts{Connect: d, Initial: d, Helo: d, Mail: d, Rcpt: d, Rset: d, Quit: d}
}

// answered reports whether target answered RCPT TO:<addr> with 250.
func answered(target *callouttest.SMTPServer, addr string) bool {
	log := target.Log()
	for i, l := range log {
		if strings.Contains(l, "> RCPT TO:<"+addr+">") {
			for _, r := range log[i+1:] {
				if strings.Contains(r, "< ") {
					if strings.Contains(r, "< 250 ") {
						return true
					}
					break
				}
			}
		}
	}
	return false
}

// checkSoftTimeout: the first MAIL gets the soft-timeout 451 within the
// wait limit, the server completes the probe (done reports it), and the
// retry gets 250 without a new connection to the target.
func checkSoftTimeout(t *testing.T, w *savWorld, pf *realpeer.Postfix, p *realpeer.Process, done func() bool) {
	t.Helper()
	start := time.Now()
	if got := mailReply(sendFrom(t, pf, "good@slow.test")); !strings.Contains(got, "451 4.1.7 ") {
		t.Fatalf("slow target: Postfix answered %q, want the soft-timeout 451 4.1.7", got)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("the soft timeout took %v, more than max_wait", el)
	}
	if l := waitLogLine(p, 5*time.Second, "msg=callout", "sender=good@slow.test", "result=timeout", "verdict=tempfail"); l == "" {
		t.Errorf("no timeout verdict logged")
	}
	if !waitFor(30*time.Second, done) {
		t.Fatalf("the calloutd did not complete the probe in the background")
	}
	n := w.slow.Connections()
	if got := mailReply(sendFrom(t, pf, "good@slow.test")); !strings.Contains(got, "250 ") {
		t.Errorf("retry: Postfix answered %q, want 250 from the calloutd's cache", got)
	}
	if w.slow.Connections() != n {
		t.Errorf("the retry probed the target again (%d connections, %d before)", w.slow.Connections(), n)
	}
}

// The soft timeout through our calloutd.
func TestCalloutdSoftTimeoutOurs(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks")
	w := startSAVWorld(t)
	addr, v := startOurCalloutd(t, w)
	pf, p := savPostfix(t, w.keys()+"calloutd = \"inet://"+addr+"\"\n")
	checkSoftTimeout(t, w, pf, p, func() bool { return v.Stats().BgDone > 0 && answered(w.slow, "good@slow.test") })
	if waitLogLine(p, 5*time.Second, "sender=good@slow.test", "cached=true", "verdict=continue") == "" {
		t.Errorf("the retry was not answered from the calloutd's cache")
	}
}

// The soft timeout through mailfromd's calloutd 8.15.
func TestCalloutdSoftTimeoutMailfromd(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "calloutd")
	w := startSAVWorld(t)
	real := realpeer.StartCalloutd(t, realpeer.CalloutdOptions{Nameserver: w.net.IP(53)})
	pf, p := savPostfix(t, w.keys()+"calloutd = \"inet://"+real.Addr+"\"\n")
	checkSoftTimeout(t, w, pf, p, func() bool { return answered(w.slow, "good@slow.test") })
}

// checkNoMailHost: senders whose domain has no mail host (a null MX,
// NXDOMAIN) get the no_mail_host verdict (550 5.1.8, bad sender domain),
// twice (the second time from the calloutd's cache, ours, or a few
// seconds' memory, mailfromd's); a sender whose mailbox is unknown still
// gets 550 5.1.7, the first time and from the cache.
func checkNoMailHost(t *testing.T, pf *realpeer.Postfix) {
	t.Helper()
	for _, c := range []struct{ sender, want string }{
		{"someone@nullmx.test", "550 5.1.8 "},
		{"someone@nx.test", "550 5.1.8 "},
		{"bad@ok.test", "550 5.1.7 "},
		{"other@nullmx.test", "550 5.1.8 "},
		{"other@nx.test", "550 5.1.8 "},
		{"bad@ok.test", "550 5.1.7 "},
	} {
		if got := mailReply(sendFrom(t, pf, c.sender)); !strings.Contains(got, c.want) {
			t.Errorf("MAIL FROM:<%s>: Postfix answered %q, want %q", c.sender, got, c.want)
		}
	}
}

func TestCalloutdNoMailHostOurs(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks")
	w := startSAVWorld(t)
	addr, _ := startOurCalloutd(t, w)
	pf, p := savPostfix(t, w.keys()+"calloutd = \"inet://"+addr+"\"\n")
	checkNoMailHost(t, pf)
	if waitLogLine(p, 5*time.Second, "sender=other@nx.test", "result=no_mail_host", "cached=true") == "" {
		t.Errorf("the second sender of nx.test was not answered from the calloutd's domain entry")
	}
}

func TestCalloutdNoMailHostMailfromd(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "calloutd")
	w := startSAVWorld(t)
	real := realpeer.StartCalloutd(t, realpeer.CalloutdOptions{Nameserver: w.net.IP(53)})
	pf, _ := savPostfix(t, w.keys()+"calloutd = \"inet://"+real.Addr+"\"\n")
	checkNoMailHost(t, pf)
}
