// cond_listeners_test.go: conditions (issue 11) through ONE real Postfix
// instance with several smtpd services, each pointed at its own named
// pmult listener by the master.cf "-o smtpd_milters=" lines `pmult
// mta-config postfix` prints; and a backend excluded by the client
// address at CONNECT that is never connected to.

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// mtaConfigServices runs `pmult mta-config postfix` on cfg and returns,
// per listener name, the master.cf override lines it prints for that
// listener's smtpd service (without the leading "#").
func mtaConfigServices(t *testing.T, cfg string) map[string][]string {
	t.Helper()
	path := filepath.Join(realpeer.Dir(t), "pmult.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pmultBin, "mta-config", "postfix", "-c", path).CombinedOutput()
	if err != nil {
		t.Fatalf("pmult mta-config postfix: %v\n%s", err, out)
	}
	head := regexp.MustCompile(`^# listener (\S+) \(`)
	got := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		if m := head.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if o, ok := strings.CutPrefix(line, "#   -o "); ok && cur != "" {
			got[cur] = append(got[cur], "-o "+o)
		}
	}
	if len(got) == 0 {
		t.Fatalf("no master.cf overrides in the mta-config output:\n%s", out)
	}
	return got
}

// TestCondTwoSmtpdServices: one Postfix instance, a port-25 style service
// (inbound) and a port-587 style one (submission), each on its own pmult
// listener, one pmult process. The chain per listener and per condition:
//   - the rule filter rejects a client network at CONNECT (inbound), deletes
//     every Authentication-Results claiming our authserv-id before the
//     verifier sees it, and adds a header (inbound);
//   - opendkim signs only on submission, opendkim verifies only on inbound;
//   - a pymilter applies only to mail for example.com, another (gate) only
//     on submission (never opened for inbound).
//
// Two more services of the same instance run Postfix's own chain of the
// signer alone and of the verifier alone: the signature and the
// verification result are the same as through pmult.
func TestCondTwoSmtpdServices(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "opendkim", "opendkim-genkey")
	key := realpeer.GenerateDKIMKey(t, "example.org", "test")
	signer := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "s", Key: key})
	verifier := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "v", Key: key})
	tagger, taggerLog := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Tagged", Value: "example.com"}},
	})
	gate, gateLog := realpeer.StartPyMilter(t, realpeer.PyPlan{ReadOnly: true})
	inbound := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	submission := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	cfg := fmt.Sprintf(`[milter]
listen = ["inbound=%s", "submission=%s"]
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
match = { listener = "inbound", client = ["127.0.0.3/32"] }
action = "reject"
code = "554"
xcode = "5.7.1"
text = "network blocked"
[[backend.rule]]
action = "delete_header"
name = "Authentication-Results"
value_regex = '^\s*(verifier\.test|mx\.test\.local);'
[[backend.rule]]
match = { listener = "inbound" }
action = "add_header"
name = "X-Filtered"
value = "inbound at ${j}"
[[backend]]
name = "signer"
address = %q
[backend.if]
listener = "submission"
[[backend]]
name = "verifier"
address = %q
[backend.if]
listener = "inbound"
[[backend]]
name = "tagger"
address = %q
[backend.if]
rcpt_domain = "example.com"
[[backend]]
name = "gate"
address = %q
[backend.if]
listener = "submission"
`, inbound, submission, signer, verifier, tagger, gate)
	svc := mtaConfigServices(t, cfg)
	p := startPmultConfig(t, cfg, submission)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Services: []realpeer.PostfixService{
		{Name: "inbound", Overrides: svc["inbound"]},
		{Name: "submission", Overrides: svc["submission"]},
		{Name: "chain-sub", Options: map[string]string{"smtpd_milters": realpeer.PostfixMilter(signer)}},
		{Name: "chain-in", Options: map[string]string{"smtpd_milters": realpeer.PostfixMilter(verifier)}},
	}})
	pf.WaitServices(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pmult log:\n%s", p.Output())
		}
	})
	for _, name := range []string{"inbound", "submission"} {
		if len(svc[name]) != 1 || !strings.HasPrefix(svc[name][0], "-o smtpd_milters=inet:127.0.0.1:") {
			t.Fatalf("mta-config for %s: %q", name, svc[name])
		}
	}
	verified := func(d realpeer.Delivered) []string {
		var out []string
		for _, v := range d.HeaderValues("Authentication-Results") {
			if strings.HasPrefix(v, "verifier.test;") {
				out = append(out, v)
			}
		}
		return out
	}

	// Submission: signed (through pmult and through the signer's own
	// chain alike), not verified, no filter header; the tagger applies.
	body := "signed body\nsecond line   with  spaces\n"
	if out, err := pf.SendVia(t, "submission", "--to", "a@example.com", "--header", "Subject: submitted", "--body", body); err != nil {
		t.Fatalf("submission: %v\n%s", err, out)
	}
	sub := pf.WaitDelivered(t, 1, deliverTimeout)[0]
	if out, err := pf.SendVia(t, "chain-sub", "--to", "a@example.com", "--header", "Subject: submitted", "--body", body); err != nil {
		t.Fatalf("chain-sub: %v\n%s", err, out)
	}
	chainSub := pf.WaitDelivered(t, 1, deliverTimeout)[0]
	for what, d := range map[string]realpeer.Delivered{"pmult submission": sub, "signer's chain": chainSub} {
		sigs := d.HeaderValues("DKIM-Signature")
		if len(sigs) != 1 || !strings.Contains(sigs[0], "d=example.org") || !strings.Contains(sigs[0], "s=test") {
			t.Errorf("%s: want one DKIM-Signature d=example.org s=test, got %q", what, sigs)
		}
	}
	if h, ch := dkimTag(sub.Header("DKIM-Signature"), "h"), dkimTag(chainSub.Header("DKIM-Signature"), "h"); h == "" || h != ch {
		t.Errorf("signed headers: pmult %q, chain %q", h, ch)
	}
	if ar := verified(sub); len(ar) != 0 {
		t.Errorf("submission was verified (%q): the verifier is for inbound only", ar)
	}
	if x := sub.HeaderValues("X-Filtered"); len(x) != 0 {
		t.Errorf("submission: X-Filtered %q, want none (inbound rule)", x)
	}
	if x := sub.HeaderValues("X-Tagged"); len(x) != 1 {
		t.Errorf("submission to example.com: X-Tagged %q, want one", x)
	}

	// Inbound: the signed message comes back with forged results that
	// claim our authserv-ids (the verifier's and the site's). The filter
	// deletes both before the verifier, which passes the signature, as the
	// verifier's own chain does. opendkim itself deletes a result with its
	// own authserv-id; the site's forged one stays in the chain.
	msg := resendable(sub, "Authentication-Results: verifier.test; dkim=pass header.d=evil.example",
		"Authentication-Results: mx.test.local; spf=pass smtp.mailfrom=evil.example")
	data := filepath.Join(realpeer.Dir(t), "inbound.eml")
	if err := os.WriteFile(data, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := pf.SendVia(t, "inbound", "--to", "b@example.net", "--data", data); err != nil {
		t.Fatalf("inbound: %v\n%s", err, out)
	}
	in := pf.WaitDelivered(t, 1, deliverTimeout)[0]
	if out, err := pf.SendVia(t, "chain-in", "--to", "b@example.net", "--data", data); err != nil {
		t.Fatalf("chain-in: %v\n%s", err, out)
	}
	chainIn := pf.WaitDelivered(t, 1, deliverTimeout)[0]
	ar := verified(in)
	if len(ar) != 1 || !strings.Contains(ar[0], "dkim=pass") || !strings.Contains(ar[0], "header.d=example.org") {
		t.Errorf("inbound: want only the verifier's dkim=pass result, got %q\n%s", ar, describe([]realpeer.Delivered{in}))
	}
	car := verified(chainIn)
	if len(ar) != 1 || len(car) != 1 || ar[0] != car[0] {
		t.Errorf("inbound result %q differs from the verifier's chain %q", ar, car)
	}
	if all := in.HeaderValues("Authentication-Results"); len(all) != 1 {
		t.Errorf("inbound: Authentication-Results %q, want the verifier's only", all)
	}
	if all := chainIn.HeaderValues("Authentication-Results"); len(all) != 2 || !strings.Contains(strings.Join(all, "\n"), "mx.test.local; spf=pass smtp.mailfrom=evil.example") {
		t.Errorf("verifier's chain: Authentication-Results %q, want the verifier's and the site's forged one", all)
	}
	if sigs := in.HeaderValues("DKIM-Signature"); len(sigs) != 1 {
		t.Errorf("inbound: %d DKIM-Signatures, want the one it came with (the signer is for submission only)", len(sigs))
	}
	if x := in.HeaderValues("X-Filtered"); len(x) != 1 || x[0] != "inbound at mta.test.local" {
		t.Errorf("inbound: X-Filtered %q, want one", x)
	}
	if x := in.HeaderValues("X-Tagged"); len(x) != 0 {
		t.Errorf("inbound to example.net: X-Tagged %q, want none", x)
	}
	eoms := 0
	for _, e := range pyEvents(t, taggerLog) {
		if e.Stage == "eom" {
			eoms++
		}
	}
	if eoms != 1 {
		t.Errorf("tagger got %d end of message, want 1 (only the example.com message)", eoms)
	}

	// A client in the blocked network is rejected at CONNECT on inbound.
	out, err := pf.SendVia(t, "inbound", "--local-interface", "127.0.0.3", "--header", "Subject: blocked")
	if err == nil || !strings.Contains(out, "<** 554 ") {
		t.Errorf("blocked client: want a 554 greeting (%v):\n%s", err, out)
	}
	if log := pf.Log(); !strings.Contains(log, "milter-reject: CONNECT from unknown[127.0.0.3]: 554 5.7.1 network blocked") {
		t.Errorf("want the filter's reply in Postfix's log:\n%s", log)
	}
	// The same client is no one's business on submission.
	if out, err := pf.SendVia(t, "submission", "--local-interface", "127.0.0.3", "--to", "c@example.net", "--header", "Subject: ok"); err != nil {
		t.Errorf("submission from 127.0.0.3: %v\n%s", err, out)
	}
	pf.WaitDelivered(t, 1, deliverTimeout)

	// The submission-only gate was never opened for an inbound session:
	// it saw the two submission sessions' CONNECT, not the three inbound
	// ones (and one negotiation more: the readiness probe of the
	// submission listener).
	connects := 0
	for _, e := range pyEvents(t, gateLog) {
		if e.Stage == "connect" {
			connects++
		}
	}
	if connects != 2 {
		t.Errorf("gate saw %d connections, want 2 (the submission sessions only): %+v", connects, pyEvents(t, gateLog))
	}
}

// TestCondExcludedClientNeverConnected: a pymilter whose condition
// excludes the client network at CONNECT is never connected to once pmult
// knows its capabilities (from the first session, a client it applies
// to): for the other clients' sessions its log gets no line at all (no
// negotiation, no close), and their mail is delivered without its header.
func TestCondExcludedClientNeverConnected(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks")
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuse=%v", reuse), func(t *testing.T) {
			t.Parallel()
			excludedNeverConnected(t, reuse)
		})
	}
}

func excludedNeverConnected(t *testing.T, reuse bool) {
	probe, probeLog := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Probe", Value: "seen"}},
	})
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	p := startPmultConfig(t, fmt.Sprintf(`[milter]
listen = [%q]
[[backend]]
name = "probe"
address = %q
reuse = %v
[backend.if]
client = ["127.0.0.2/32"]
`, spec, probe, reuse), spec)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	if out, err := pf.Send(t, "--local-interface", "127.0.0.2", "--header", "Subject: learn"); err != nil {
		t.Fatalf("from 127.0.0.2: %v\n%s", err, out)
	}
	if d := pf.WaitDelivered(t, 1, deliverTimeout)[0]; len(d.HeaderValues("X-Probe")) != 1 {
		t.Fatalf("the probe did not apply to 127.0.0.2:\n%s", describe([]realpeer.Delivered{d}))
	}
	before := len(probeLog())
	for i := range 3 {
		if out, err := pf.Send(t, "--header", fmt.Sprintf("Subject: excluded %d", i)); err != nil {
			t.Fatalf("from 127.0.0.1: %v\n%s", err, out)
		}
	}
	for _, d := range pf.WaitDelivered(t, 3, deliverTimeout) {
		if x := d.HeaderValues("X-Probe"); len(x) != 0 {
			t.Errorf("excluded client's mail has X-Probe %q", x)
		}
	}
	if lines := probeLog()[before:]; len(lines) != 0 {
		t.Errorf("the probe saw the excluded client's sessions: %q\npmult log:\n%s", lines, p.Output())
	}
	if n := strings.Count(settledLog(p), "backend not opened: its condition is false for this connection"); n != 3 {
		t.Errorf("%d debug lines for the skipped opens, want 3:\n%s", n, p.Output())
	}
	// The client it applies to again: opened at CONNECT, it gets the
	// whole session and adds its header.
	if out, err := pf.Send(t, "--local-interface", "127.0.0.2", "--header", "Subject: again"); err != nil {
		t.Fatalf("from 127.0.0.2: %v\n%s", err, out)
	}
	if d := pf.WaitDelivered(t, 1, deliverTimeout)[0]; len(d.HeaderValues("X-Probe")) != 1 {
		t.Errorf("the probe did not apply to 127.0.0.2 the second time:\n%s\npmult log:\n%s", describe([]realpeer.Delivered{d}), p.Output())
	}
}

// resendable returns d as a message to send again: the delivery headers
// (Return-Path, Delivered-To) and the tagger's (unsigned) X-Tagged
// dropped, extra header lines first.
func resendable(d realpeer.Delivered, extra ...string) []byte {
	var b strings.Builder
	for _, h := range extra {
		b.WriteString(h + "\n")
	}
	for _, h := range d.Headers {
		if strings.EqualFold(h[0], "Return-Path") || strings.EqualFold(h[0], "Delivered-To") || strings.EqualFold(h[0], "X-Tagged") {
			continue
		}
		b.WriteString(h[0] + ":" + h[1] + "\n")
	}
	b.WriteString("\n")
	b.Write(d.Body)
	return []byte(b.String())
}

// dkimTag returns the value of tag name of a DKIM-Signature, blanks removed.
func dkimTag(sig, name string) string {
	for _, part := range strings.Split(sig, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.TrimSpace(k) == name {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}
