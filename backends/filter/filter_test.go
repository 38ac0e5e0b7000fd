package filter_test

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/mailmux/mailmux/backends/filter"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

func parse(t testing.TB, text string) (*filter.Settings, []error) {
	t.Helper()
	var prim struct {
		Rule []map[string]any `toml:"rule"`
	}
	if _, err := toml.Decode(text, &prim); err != nil {
		t.Fatal(err)
	}
	return filter.ParseConfig(func(v any) error { _, err := toml.Decode(text, v); return err })
}

const rules = `
[[rule]]
match = { client = ["203.0.113.0/24", "2001:db8:bad::/48"] }
action = "reject"
code = "554"
xcode = "5.7.1"
text = "client ${client_addr} blocked\nsee https://example.org/policy"
[[rule]]
action = "delete_header"
name = "Authentication-Results"
value_regex = '^\s*mx\.example\.org;'
[[rule]]
match = { rcpt_domain = "example.com" }
action = "add_header"
name = "X-Filtered"
value = "yes"
[[rule]]
match = { header_regex = { Subject = "(?i)viagra" } }
action = "discard"
`

func TestFilter(t *testing.T) {
	s, errs := parse(t, rules)
	if errs != nil {
		t.Fatal(errs)
	}
	e := &pmult.Engine{Slots: []pmult.Slot{{Backend: s.NewBackend("rules", 0, nil)}}}

	// Rejected at CONNECT, multi-line, macro expanded.
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	r := h.Do(&pmult.Event{Kind: pmult.KindConnect, Family: '4', Address: "203.0.113.9", Hostname: "bad.example",
		Macros: []pmult.MacroSet{{For: pmult.KindConnect, Pairs: []string{"{client_addr}", "203.0.113.9"}}}})
	want := "554-5.7.1 client 203.0.113.9 blocked\r\n554 5.7.1 see https://example.org/policy"
	if r.Verdict != pmult.Reject || r.Text != want {
		t.Errorf("connect: %v %q, want reject %q", r.Verdict, r.Text, want)
	}

	// Forged Authentication-Results deleted (every one, last first), the
	// header added, and a real one kept.
	h = pmulttest.Open(t, e, pmulttest.AllOffer)
	h.EnvelopeToData()
	r = h.Message([]string{"Authentication-Results", " mx.example.org; spf=pass", "Authentication-Results", " other.example; dkim=pass",
		"Authentication-Results", " mx.example.org; dkim=pass", "Subject", " hi"}, "body\r\n")
	var idx []int
	for _, e := range r.Edits {
		if e.Kind != pmult.EditChangeHeader || e.Name != "Authentication-Results" || e.Value != "" {
			t.Errorf("unexpected edit %+v", e)
		}
		idx = append(idx, e.Index)
	}
	if len(idx) != 2 || idx[0] != 3 || idx[1] != 1 {
		t.Errorf("deleted occurrences %v, want [3 1] (the forged ones, last first)", idx)
	}

	// Recipient domain rule: X-Filtered added for example.com.
	h = pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	h.Rcpt("x@example.com")
	h.Data()
	r = h.Message([]string{"Subject", " hi"}, "body\r\n")
	if len(r.Edits) != 1 || r.Edits[0].Kind != pmult.EditAddHeader || r.Edits[0].Value != " yes" {
		t.Errorf("edits %+v, want X-Filtered: yes", r.Edits)
	}
	// Header rule: discard, first match wins at EOH.
	h.Mail()
	h.Rcpt("x@example.net")
	h.Data()
	if r := h.Message([]string{"Subject", " cheap VIAGRA"}, "body\r\n"); r.Verdict != pmult.Discard {
		t.Errorf("viagra: %v, want discard", r.Verdict)
	}
}

func TestFilterErrors(t *testing.T) {
	_, errs := parse(t, `
[[rule]]
action = "rejct"
[[rule]]
action = "reject"
code = "450"
[[rule]]
action = "delete_header"
value_regex = "("
[[rule]]
match = { client = "nope" }
action = "accept"
colour = "red"
`)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	got := strings.Join(all, "\n")
	for _, want := range []string{"rule[0].action", "rule[1].code: \"450\": want a 5xx", "rule[2].name: required",
		"rule[2].value_regex: bad regular expression", `rule[3].match.client[0]: "nope"`, "rule[3].colour: unknown key"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

// Envelope edits, quarantine, insert, and body_regex within its cap.
func TestFilterEditsAndBody(t *testing.T) {
	s, errs := parse(t, `
[[rule]]
body_regex = "BUY NOW"
body_max = 20
action = "reject"
text = "spam body"
[[rule]]
match = { sender_domain = "old.example" }
action = "change_sender"
addr = "bounce@new.example"
[[rule]]
match = { rcpt = "archive@example.org" }
action = "delete_rcpt"
addr = "archive@example.org"
[[rule]]
action = "add_rcpt"
addr = "copy@example.org"
[[rule]]
match = { header = "x-spam" }
action = "quarantine"
reason = "flagged ${i}"
[[rule]]
action = "insert_header"
name = "X-First"
value = "top"
`)
	if errs != nil {
		t.Fatal(errs)
	}
	e := &pmult.Engine{Slots: []pmult.Slot{{Backend: s.NewBackend("rules", 0, nil)}}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@old.example>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q7"}}}})
	h.Rcpt("archive@example.org")
	h.Data()
	// "BUY NOW" beyond the first 20 bytes: not seen.
	r := h.Message([]string{"X-Spam", " yes"}, "0123456789012345678901234 BUY NOW\r\n")
	if r.Verdict != pmult.Continue {
		t.Fatalf("EOM %v %q", r.Verdict, r.Text)
	}
	var got []string
	for _, e := range r.Edits {
		got = append(got, e.Kind.String()+":"+e.Addr+e.Name+e.Value)
	}
	want := "change_from:<bounce@new.example>|del_rcpt:<archive@example.org>|add_rcpt:<copy@example.org>|insert_header:X-First top|quarantine:flagged Q7"
	if strings.Join(got, "|") != want {
		t.Errorf("edits\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	h.Mail()
	h.Rcpt("b@example.net")
	h.Data()
	if r := h.Message([]string{"Subject", " x"}, "BUY NOW\r\n"); r.Verdict != pmult.Reject || !strings.Contains(r.Text, "spam body") {
		t.Errorf("body rule: %v %q", r.Verdict, r.Text)
	}
}
