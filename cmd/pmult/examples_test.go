// examples_test.go: every example configuration passes `pmult check`.

package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// notPmult are the examples that are not pmult's configuration, with
// where they are checked.
var notPmult = map[string]string{
	"calloutd.toml": "calloutd's (cmd/calloutd)",
}

// TestExamplesCheck runs `pmult check` on every examples/*.toml: each
// loads (conditions and rules compiled, every key known) and exits 0.
func TestExamplesCheck(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	// required are examples other tests read too: they must be checked here.
	required := map[string]bool{"conditions.toml": false, "smtp-before-queue.toml": false, "smtp-after-queue.toml": false}
	for _, f := range files {
		if _, skip := notPmult[filepath.Base(f)]; skip {
			continue
		}
		if _, ok := required[filepath.Base(f)]; ok {
			required[filepath.Base(f)] = true
		}
		var out, errb bytes.Buffer
		if code := run([]string{"check", "-c", f}, &out, &errb); code != 0 || !strings.Contains(out.String(), ": OK (") {
			t.Errorf("pmult check %s: exit %d\n%s%s", f, code, out.String(), errb.String())
		}
	}
	for name, seen := range required {
		if !seen {
			t.Errorf("examples/%s is missing", name)
		}
	}
}

// TestConditionsExample drives the chain of examples/conditions.toml: its
// rule filter as configured, each milter replaced by a fake of the same
// name and policy, through both listeners. Each example of the file does
// what its comment says.
func TestConditionsExample(t *testing.T) {
	cfg, err := config.Load("../../examples/conditions.toml")
	if err != nil {
		t.Fatal(err)
	}
	fakes := map[string]*pmulttest.Backend{}
	eng := &pmult.Engine{QuietDecisions: true}
	for _, b := range cfg.Backends {
		var be pmult.Backend
		if b.Type == "filter" {
			be = b.Settings.NewBackend(b.Name, 0, nil)
		} else {
			f := pmulttest.New(b.Name, pmult.Caps{Actions: pmult.ActAddHeaders})
			fakes[b.Name], be = f, f
		}
		act, _ := pmult.ParseFailAction(b.OnFailure)
		eng.Slots = append(eng.Slots, pmult.Slot{Backend: be, Policy: pmult.Policy{OnFailure: act,
			Evaluate: b.Mode == config.ModeEvaluate, Condition: b.If}})
	}
	session := func(listener, addr string) *pmulttest.Harness {
		for _, f := range fakes {
			f.Reset()
		}
		offer := pmulttest.AllOffer
		offer.Listener = listener
		h := pmulttest.Open(t, eng, offer)
		h.Do(&pmult.Event{Kind: pmult.KindConnect, Family: '4', Address: addr, Hostname: "client.example",
			Macros: []pmult.MacroSet{{For: pmult.KindConnect, Pairs: []string{"j", "mx.example.org", "{client_addr}", addr}}}})
		return h
	}
	gotEOM := func(name string) bool { return strings.HasSuffix(fakes[name].KindsString(), "eom") }

	// A blocked network on inbound: rejected at CONNECT, reply expanded.
	offer := pmulttest.AllOffer
	offer.Listener = "inbound"
	h := pmulttest.Open(t, eng, offer)
	r := h.Do(&pmult.Event{Kind: pmult.KindConnect, Family: '4', Address: "203.0.113.5",
		Macros: []pmult.MacroSet{{For: pmult.KindConnect, Pairs: []string{"{client_addr}", "203.0.113.5"}}}})
	if r.Verdict != pmult.Reject || r.Text != "554-5.7.1 client 203.0.113.5 blocked\r\n554 5.7.1 see https://example.org/policy" {
		t.Errorf("blocked client: %v %q", r.Verdict, r.Text)
	}
	h.S.Close()

	// Inbound mail: per-recipient refusal, forged results stripped, a
	// header added; verified, DMARC-checked, scanned; not signed.
	h = session("inbound", "198.51.100.1")
	h.Helo()
	h.Mail()
	if r := h.Rcpt("info@example.org"); r.Verdict != pmult.Reject || !strings.HasPrefix(r.Text, "550 5.1.1 ") {
		t.Errorf("info@example.org: %+v, want 550 5.1.1", r)
	}
	if r := h.Rcpt("a@example.com"); r.Verdict.Objects() {
		t.Errorf("a@example.com: %+v", r)
	}
	h.Data()
	rep := h.Message([]string{"Authentication-Results", " mx.example.org; dkim=pass", "Subject", " hello"}, "body\r\n")
	var edits []string
	for _, e := range rep.Edits {
		edits = append(edits, fmt.Sprintf("%s %s[%d]%s", e.Kind, e.Name, e.Index, e.Value))
	}
	if got := strings.Join(edits, "; "); !strings.Contains(got, "Authentication-Results[1]") || !strings.Contains(got, "X-Received-Via[0] inbound at mx.example.org") {
		t.Errorf("inbound edits %q", got)
	}
	for name, want := range map[string]bool{"opendkim-sign": false, "opendkim-verify": true, "opendmarc": true, "rspamd": true, "archive": true} {
		if gotEOM(name) != want {
			t.Errorf("inbound: %s got %q (end of message: want %v)", name, fakes[name].KindsString(), want)
		}
	}
	h.S.Close()

	// Submission from a trusted relay, authenticated, to another domain:
	// signed; not verified, no DMARC, not scanned, not archived.
	h = session("submission", "192.0.2.5")
	h.Helo()
	h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<alice@example.org>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"{auth_authen}", "alice"}}}})
	h.Rcpt("b@example.org")
	h.Data()
	if rep := h.Message([]string{"Subject", " report"}, "body\r\n"); rep.Verdict.Objects() {
		t.Errorf("submission: %+v", rep)
	}
	for name, want := range map[string]bool{"opendkim-sign": true, "opendkim-verify": false, "opendmarc": false, "rspamd": false, "archive": false} {
		if gotEOM(name) != want {
			t.Errorf("submission: %s got %q (end of message: want %v)", name, fakes[name].KindsString(), want)
		}
	}
	// header_checks: the next message's Subject is rejected at the end
	// of its headers.
	h.Mail()
	h.Rcpt("b@example.org")
	h.Data()
	if rep := h.Message([]string{"Subject", " cheap VIAGRA"}, "body\r\n"); rep.Verdict != pmult.Reject || !strings.Contains(rep.Text, "message content rejected") {
		t.Errorf("header_checks rule: %+v, want reject", rep)
	}
	h.S.Close()
}
