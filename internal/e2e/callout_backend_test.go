// callout_backend_test.go: real Postfix -> pmult -> a callout backend
// (type = "callout"), probing fake SMTP targets on loopback addresses
// (port 25) found through a test DNS server (MX records): in process,
// through our calloutd protocol server, and through mailfromd's calloutd
// 8.15. Success, not_found, greylisting 450, a target that refuses the
// null sender, a slow target (soft-timeout tempfail, then the retry
// answered from the cache); two pmult processes sharing a Redis cache;
// the callout backend beside two real milters (the parallel envelope).

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/internal/realpeer"
)

// savWorld is a loopback block: DNS on IP(53):53, targets on port 25:
// ok.test at IP(2), nullrej.test at IP(3) (refuses MAIL FROM:<>),
// slow.test at IP(4) (1.5 s before every reply).
type savWorld struct {
	net      *callouttest.Net
	dns      *callouttest.DNSServer
	ok, slow *callouttest.SMTPServer
}

func startSAVWorld(t *testing.T) *savWorld {
	t.Helper()
	n := callouttest.NewNet()
	w := &savWorld{net: n}
	w.dns = callouttest.StartDNS(t, n.Addr(53, 53),
		"ok.test. 60 IN MX 10 mx.ok.test.", "mx.ok.test. 60 IN A "+n.IP(2),
		"nullrej.test. 60 IN MX 10 mx.nullrej.test.", "mx.nullrej.test. 60 IN A "+n.IP(3),
		"slow.test. 60 IN MX 10 mx.slow.test.", "mx.slow.test. 60 IN A "+n.IP(4),
		"nullmx.test. 60 IN MX 0 .",
	)
	w.ok = callouttest.StartSMTP(t, n.Addr(2, 25), callouttest.SMTPOptions{})
	callouttest.StartSMTP(t, n.Addr(3, 25), callouttest.SMTPOptions{RejectNullSender: true})
	w.slow = callouttest.StartSMTP(t, n.Addr(4, 25), callouttest.SMTPOptions{Delay: 1500 * time.Millisecond})
	return w
}

// keys are the callout backend keys probing the world in process.
func (w *savWorld) keys() string {
	return fmt.Sprintf(`dns_servers = [%q]
dns_timeout = "1s"
probe_networks = ["127.0.0.0/8"]
ehlo = "prober.e2e.test"
io_timeout = "1s"
hard_io_timeout = "5s"
`, w.dns.Addr)
}

// startPmultText runs pmult on a config of top-level text and backend
// tables written out in full.
func startPmultText(t *testing.T, body string) (string, *realpeer.Process) {
	t.Helper()
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	dir := realpeer.Dir(t)
	text := fmt.Sprintf("listen = [%q]\nshutdown_timeout = \"2s\"\n%s", spec, body)
	cfg := filepath.Join(dir, "pmult.toml")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p := realpeer.StartProcess(t, "pmult", exec.Command(pmultBin, "-c", cfg, "--debug=debug"))
	p.WaitReady(t, spec, 10*time.Second)
	logPmultOnFailure(t, p)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pmult config:\n%s", text)
		}
	})
	return spec, p
}

// savPostfix starts pmult with one callout backend (keys) and a Postfix
// whose only milter it is.
func savPostfix(t *testing.T, keys string) (*realpeer.Postfix, *realpeer.Process) {
	t.Helper()
	spec, p := startPmultText(t, "[[backend]]\nname = \"sav\"\ntype = \"callout\"\n"+keys)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	return pf, p
}

// sendFrom sends one message from sender and returns swaks's transcript.
func sendFrom(t *testing.T, pf *realpeer.Postfix, sender string) string {
	t.Helper()
	out, _ := pf.Send(t, "--from", sender, "--to", "rcpt@example.com")
	return out
}

// mailReply returns the server's reply to MAIL FROM in a swaks transcript.
func mailReply(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, "-> MAIL FROM:") {
			for _, r := range lines[i+1:] {
				if strings.Contains(r, "<-") || strings.Contains(r, "<**") {
					return strings.TrimSpace(r[strings.Index(r, " ")+1:])
				}
			}
		}
	}
	return ""
}

// checkSAV runs the common scenarios against a Postfix whose pmult has a
// callout backend; refusedNull is the reply to a sender whose domain
// refuses the null sender (nothing proven: accepted in process; calloutd
// says not_found, rejected).
func checkSAV(t *testing.T, pf *realpeer.Postfix, refusedNull string) {
	t.Helper()
	for _, c := range []struct{ sender, want string }{
		{"good@ok.test", "250 "},
		{"bad@ok.test", "550 5.1.7 "},
		{"grey@ok.test", "450 4.1.7 "},
		{"good@nullrej.test", refusedNull},
	} {
		if got := mailReply(sendFrom(t, pf, c.sender)); !strings.Contains(got, c.want) {
			t.Errorf("MAIL FROM:<%s>: Postfix answered %q, want %q", c.sender, got, c.want)
		}
	}
	want := map[string]bool{"good@ok.test": true}
	if refusedNull == "250 " {
		want["good@nullrej.test"] = true
	}
	ds := pf.WaitDelivered(t, len(want), deliverTimeout)
	for _, d := range ds {
		if !want[strings.Trim(d.ReturnPath, "<>")] {
			t.Errorf("delivered from %s", d.ReturnPath)
		}
	}
	if len(ds) != len(want) {
		t.Errorf("%d messages delivered, want %d:\n%s", len(ds), len(want), describe(ds))
	}
}

// In process: the results, then a slow target: the soft timeout answers
// 451 at once, the background probe (hard timeouts) caches the answer,
// and the sender's retry is accepted without a new probe.
func TestCalloutBackendInProcess(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks")
	w := startSAVWorld(t)
	pf, p := savPostfix(t, w.keys()+"cache = \"bolt\"\ncache_file = "+strconv.Quote(filepath.Join(realpeer.Dir(t), "sav.db"))+"\n")
	checkSAV(t, pf, "250 ")
	if l := logHas(p, `msg=callout`, "sender=bad@ok.test", "result=not_found", "verdict=reject"); l == "" {
		t.Errorf("no log line for the rejected sender")
	}

	start := time.Now()
	if got := mailReply(sendFrom(t, pf, "good@slow.test")); !strings.Contains(got, "451 4.1.7 ") {
		t.Fatalf("slow target: Postfix answered %q, want the soft-timeout 451 4.1.7", got)
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("the soft timeout took %v", el)
	}
	if waitLogLine(p, 20*time.Second, "background callout", "email=good@slow.test", "result=success") == "" {
		t.Fatalf("no background completion logged")
	}
	n := w.slow.Connections()
	if got := mailReply(sendFrom(t, pf, "good@slow.test")); !strings.Contains(got, "250 ") {
		t.Errorf("retry: Postfix answered %q, want 250 from the cache", got)
	}
	if w.slow.Connections() != n {
		t.Errorf("the retry probed the target again")
	}
	if logHas(p, "sender=good@slow.test", "cached=true") == "" {
		t.Errorf("the retry was not answered from the cache")
	}
}

// Through our calloutd protocol server (package callout's Server).
func TestCalloutBackendOurCalloutd(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks")
	w := startSAVWorld(t)
	v := &callout.Verifier{Prober: &smtpprobe.Prober{
		Resolver: &smtpprobe.Resolver{Servers: []string{w.dns.Addr}, Timeout: time.Second},
		Ehlo:     "calloutd.e2e.test",
	}}
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
	pf, _ := savPostfix(t, w.keys()+"calloutd = \"inet://"+ln.Addr().String()+"\"\n")
	checkSAV(t, pf, "550 5.1.7 ")
	// The soft timeout (calloutd's "RECV nothing") is the timeout verdict,
	// as in process (more in callout_calloutd_test.go).
	if got := mailReply(sendFrom(t, pf, "good@slow.test")); !strings.Contains(got, "451 4.1.7 ") {
		t.Errorf("slow target: Postfix answered %q, want the soft-timeout 451 4.1.7", got)
	}
}

// Through mailfromd's calloutd 8.15, the same protocol.
func TestCalloutBackendMailfromdCalloutd(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "calloutd")
	w := startSAVWorld(t)
	real := realpeer.StartCalloutd(t, realpeer.CalloutdOptions{Nameserver: w.net.IP(53)})
	pf, _ := savPostfix(t, w.keys()+"calloutd = \"inet://"+real.Addr+"\"\n")
	checkSAV(t, pf, "550 5.1.7 ")
}

// Two pmult processes share a Redis cache: what one learnt, the other
// answers without probing.
func TestCalloutBackendSharedRedis(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "redis-server")
	w := startSAVWorld(t)
	redis := realpeer.StartRedis(t)
	keys := w.keys() + "cache = \"redis\"\nredis_url = \"redis://" + redis + "/0\"\n"
	pf1, _ := savPostfix(t, keys)
	pf2, p2 := savPostfix(t, keys)
	if got := mailReply(sendFrom(t, pf1, "bad@ok.test")); !strings.Contains(got, "550 5.1.7 ") {
		t.Fatalf("first pmult: %q", got)
	}
	n := w.ok.Connections()
	if got := mailReply(sendFrom(t, pf2, "bad@ok.test")); !strings.Contains(got, "550 5.1.7 ") {
		t.Errorf("second pmult: %q", got)
	}
	if w.ok.Connections() != n || logHas(p2, "sender=bad@ok.test", "cached=true") == "" {
		t.Errorf("the second pmult probed again instead of reading the shared cache")
	}
}

// The callout backend beside two real milters that each take 3 s at
// MAIL, the probe taking ~1.5 s (slow target, generous soft timeout):
// MAIL costs the slowest (7.5 s), not the sum (13.5 s).
func TestCalloutBackendParallelEnvelope(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	w := startSAVWorld(t)
	slowMail := realpeer.PyPlan{Stages: map[string]realpeer.PyStage{"mail": {DelayMS: 3000}}}
	spec1, _ := realpeer.StartPyMilter(t, slowMail)
	spec2, _ := realpeer.StartPyMilter(t, slowMail)
	keys := strings.Replace(w.keys(), `io_timeout = "1s"`, `io_timeout = "5s"`, 1) + "cache = \"none\"\n"
	spec, _ := startPmultText(t, fmt.Sprintf(`[[backend]]
name = "py1"
address = %q
[[backend]]
name = "py2"
address = %q
[[backend]]
name = "sav"
type = "callout"
%s`, spec1, spec2, keys))
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	start := time.Now()
	out := sendFrom(t, pf, "good@slow.test")
	el := time.Since(start)
	if got := mailReply(out); !strings.Contains(got, "250 ") {
		t.Fatalf("MAIL: %q\n%s", got, out)
	}
	// The probe alone is 5 replies x 1.5 s = 7.5 s; the milters add 6 s
	// if run in turn.
	if el > 11*time.Second {
		t.Errorf("the message took %v: the envelope was not parallel", el)
	}
}

// Call-ahead at RCPT (a relay or backup MX asking the next hop): an
// unknown recipient is refused at RCPT with 550 5.1.1, a known one is
// delivered.
func TestCalloutBackendRecipientCallAhead(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks")
	w := startSAVWorld(t)
	pf, _ := savPostfix(t, w.keys()+fmt.Sprintf("cache = \"memory\"\nverify_recipients = true\nrecipient_mode = \"hostonly\"\nrecipient_host = %q\n", w.net.IP(2)))
	out, _ := pf.Send(t, "--from", "good@ok.test", "--to", "bad@relayed.example.com")
	if !strings.Contains(out, "<** 550 5.1.1 Recipient address rejected: unknown at the next hop") {
		t.Errorf("unknown recipient not refused at RCPT:\n%s", out)
	}
	if out, err := pf.Send(t, "--from", "good@ok.test", "--to", "good@relayed.example.com"); err != nil {
		t.Fatalf("known recipient: %v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 || ds[0].Recipient != "good@relayed.example.com" {
		t.Errorf("delivered:\n%s", describe(ds))
	}
}
