package filter_test

import (
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/mailmux/mailmux/internal/cond"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// kindList names the kinds of a set, in protocol order.
func kindList(s pmult.KindSet) string {
	out := ""
	for k := pmult.KindConnect; k <= pmult.KindUnknown; k++ {
		if s.Has(k) {
			if out != "" {
				out += " "
			}
			out += k.String()
		}
	}
	return out
}

// The filter declares NoEvent and NoReply for the stages none of its
// rules needs, so the MTA (offering no reply for every event, as Postfix
// does) is asked for no more events than the rules read, and waits for
// answers only where a rule can answer.
func TestFilterNarrowsNegotiation(t *testing.T) {
	offer := pmulttest.AllOffer
	offer.NoReply = pmult.Kinds(pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindRcpt, pmult.KindData,
		pmult.KindHeader, pmult.KindEOH, pmult.KindBody, pmult.KindUnknown)
	for _, tc := range []struct {
		name, rules      string
		cond             string // the filter's own [backend.if], if any
		noEvent, noReply string
	}{
		{"client reject", `[[rule]]
match = { client = ["192.0.2.0/24"] }
action = "reject"`, "", "helo mail rcpt data header eoh body unknown", "helo mail rcpt data header eoh body unknown"},
		{"recipient reject", `[[rule]]
match = { rcpt_domain = "example.com" }
action = "reject"`, "", "header eoh body unknown", "header eoh body unknown"},
		{"header discard", `[[rule]]
match = { header_regex = { Subject = "(?i)viagra" } }
action = "discard"`, "", "body unknown", "header body unknown"},
		{"body regex", `[[rule]]
body_regex = "casino"
action = "reject"`, "", "helo mail rcpt data header eoh unknown", "helo mail rcpt data header eoh body unknown"},
		{"add header", `[[rule]]
action = "add_header"
name = "X-Filtered"
value = "yes"`, "", "connect helo mail rcpt data header eoh body unknown", "connect helo mail rcpt data header eoh body unknown"},
		{"delete header", `[[rule]]
action = "delete_header"
name = "Authentication-Results"
value_regex = '^\s*mx\.example\.org;'`, "", "connect helo mail rcpt data eoh body unknown", "connect helo mail rcpt data header eoh body unknown"},
		{"macro in a header value", `[[rule]]
action = "add_header"
name = "X-Filtered"
value = "by ${j}"`, "", "header eoh body unknown", "connect helo mail rcpt data header eoh body unknown"},
		{"sender edit", `[[rule]]
match = { sender_domain = "example.org" }
action = "add_header"
name = "X-Sender"
value = "ours"`, "", "rcpt data header eoh body unknown", "connect helo mail rcpt data header eoh body unknown"},
		// The filter's own condition is the engine's to decide: the engine
		// asks for the events it needs.
		{"add header for one domain", `[[rule]]
action = "add_header"
name = "X-Filtered"
value = "yes"`, `rcpt_domain = "example.com"`, "header eoh body unknown", "connect helo mail rcpt data header eoh body unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, errs := parse(t, tc.rules)
			if errs != nil {
				t.Fatal(errs)
			}
			p := pmult.Policy{}
			if tc.cond != "" {
				c, errs := cond.Compile("if", condTable(t, tc.cond))
				if errs != nil {
					t.Fatal(errs)
				}
				p.Condition = c
			}
			e := &pmult.Engine{Slots: []pmult.Slot{{Backend: s.NewBackend("rules", 0, nil), Policy: p}}}
			h := pmulttest.Open(t, e, offer)
			if got := kindList(h.Neg.NoEvent); got != tc.noEvent {
				t.Errorf("negotiated NoEvent %q, want %q", got, tc.noEvent)
			}
			if got := kindList(h.Neg.NoReply); got != tc.noReply {
				t.Errorf("negotiated NoReply %q, want %q", got, tc.noReply)
			}
		})
	}
}

// condTable decodes one TOML condition table body.
func condTable(t *testing.T, text string) any {
	t.Helper()
	var doc struct {
		If any `toml:"if"`
	}
	if _, err := toml.Decode("[if]\n"+text+"\n", &doc); err != nil {
		t.Fatal(err)
	}
	return doc.If
}

// A narrowed filter still works when it gets events it said it does not
// need (another backend wants them): it answers continue to them.
func TestNarrowedFilterGetsEverything(t *testing.T) {
	s, errs := parse(t, `[[rule]]
match = { client = ["192.0.2.0/24"] }
action = "reject"`)
	if errs != nil {
		t.Fatal(errs)
	}
	other := pmulttest.New("other", pmulttest.Reader)
	e := &pmult.Engine{Slots: []pmult.Slot{{Backend: s.NewBackend("rules", 0, nil)}, {Backend: other}}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	if h.Neg.NoEvent != 0 {
		t.Errorf("NoEvent %q with a backend that wants everything", kindList(h.Neg.NoEvent))
	}
	if r := h.Do(&pmult.Event{Kind: pmult.KindConnect, Family: '4', Address: "198.51.100.1"}); r.Verdict.Objects() {
		t.Fatalf("connect: %+v", r)
	}
	h.Helo()
	h.Mail()
	h.Rcpt("a@example.com")
	h.Data()
	if r := h.Message([]string{"Subject", " x"}, "body\r\n"); r.Verdict.Objects() {
		t.Errorf("eom: %+v", r)
	}
}

// Recipient rules answer per recipient at RCPT, as check_recipient_access:
// each recipient that matches gets the rule's reply (every time, not only
// the first), the others pass, and at DATA the rule is decided on the
// recipients the filter let through (the rejected ones are gone), so the
// message goes on.
func TestFilterPerRecipient(t *testing.T) {
	s, errs := parse(t, `[[rule]]
match = { rcpt = ["nobody@example.com", "gone@example.com"] }
action = "reject"
code = "550"
xcode = "5.1.1"
text = "no such user ${rcpt_addr}"
[[rule]]
match = { rcpt_domain = "busy.example" }
action = "tempfail"
text = "mailbox busy"
[[rule]]
match = { rcpt_domain = "example.com" }
action = "add_header"
name = "X-Local"
value = "yes"`)
	if errs != nil {
		t.Fatal(errs)
	}
	e := &pmult.Engine{Slots: []pmult.Slot{{Backend: s.NewBackend("rules", 0, nil)}}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	rcpt := func(addr string) pmult.Reply {
		return h.Do(&pmult.Event{Kind: pmult.KindRcpt, Args: []string{"<" + addr + ">"},
			Macros: []pmult.MacroSet{{For: pmult.KindRcpt, Pairs: []string{"{rcpt_addr}", addr}}}})
	}
	for _, tc := range []struct {
		addr string
		v    pmult.Verdict
		text string
	}{
		{"nobody@example.com", pmult.Reject, "550 5.1.1 no such user nobody@example.com"},
		{"alice@example.com", pmult.Continue, ""},
		{"gone@example.com", pmult.Reject, "550 5.1.1 no such user gone@example.com"},
		{"bob@busy.example", pmult.Tempfail, "451 4.7.1 mailbox busy"},
		{"nobody@example.com", pmult.Reject, "550 5.1.1 no such user nobody@example.com"},
		{"carol@example.net", pmult.Continue, ""},
	} {
		if r := rcpt(tc.addr); r.Verdict != tc.v || r.Text != tc.text {
			t.Errorf("RCPT %s: %v %q, want %v %q", tc.addr, r.Verdict, r.Text, tc.v, tc.text)
		}
	}
	if r := h.Data(); r.Verdict.Objects() {
		t.Errorf("DATA: %+v, want continue (the matching recipients were rejected one by one)", r)
	}
	r := h.Message([]string{"Subject", " x"}, "body\r\n")
	if r.Verdict.Objects() || len(r.Edits) != 1 || r.Edits[0].Name != "X-Local" {
		t.Errorf("EOM: %+v, want X-Local (alice@example.com)", r)
	}
}
