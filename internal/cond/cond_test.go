package cond_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/mailmux/mailmux/internal/cond"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// compile compiles the TOML text of an `if` table.
func compile(t *testing.T, text string) pmult.Condition {
	t.Helper()
	var doc struct {
		If any `toml:"if"`
	}
	if _, err := toml.Decode(text, &doc); err != nil {
		t.Fatal(err)
	}
	c, errs := cond.Compile("if", doc.If)
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs)
	}
	return c
}

func engine(slots ...pmult.Slot) *pmult.Engine { return &pmult.Engine{Slots: slots} }

// A backend whose condition is false for the listener is never opened;
// on the listener it names it is.
func TestListenerNeverOpened(t *testing.T) {
	c := compile(t, "[if]\nlistener = \"submission\"\n")
	for _, tc := range []struct {
		listener string
		opens    int
	}{{"inbound", 0}, {"submission", 1}} {
		a := pmulttest.New("a", pmulttest.Reader)
		b := pmulttest.New("b", pmulttest.Reader)
		offer := pmulttest.AllOffer
		offer.Listener = tc.listener
		h := pmulttest.Open(t, engine(pmult.Slot{Backend: a}, pmult.Slot{Backend: b, Policy: pmult.Policy{Condition: c}}), offer)
		h.EnvelopeToData()
		h.Message([]string{"Subject", " x"}, "body\r\n")
		if b.Opens() != tc.opens {
			t.Errorf("listener %s: b opened %d times, want %d", tc.listener, b.Opens(), tc.opens)
		}
		if tc.opens == 0 && b.KindsString() != "" {
			t.Errorf("b got %q", b.KindsString())
		}
		if !strings.Contains(a.KindsString(), "eom") {
			t.Errorf("a got %q", a.KindsString())
		}
	}
}

// A condition on the client address is decided at CONNECT: a false one
// means the backend gets no event and is closed; the merged answer
// accepts the connection when no backend is left.
func TestClientAddressAtConnect(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		want string
	}{{"192.0.2.0/24", "connect helo mail rcpt data header eoh body eom"}, {"198.51.100.0/24", ""}, {"2001:db8::/32", ""}} {
		b := pmulttest.New("b", pmulttest.Reader)
		c := compile(t, "[if]\nclient = [\""+tc.cidr+"\"]\n")
		h := pmulttest.Open(t, engine(pmult.Slot{Backend: b, Policy: pmult.Policy{Condition: c}}), pmulttest.AllOffer)
		r := h.Connect()
		if tc.want == "" {
			if r.Verdict != pmult.Accept {
				t.Errorf("%s: connect reply %v, want accept (no backend left)", tc.cidr, r.Verdict)
			}
			h.S.Close() // waits for the QUIT of the skipped backend
			if got := b.KindsString(); got != "" {
				t.Errorf("%s: skipped b got %q", tc.cidr, got)
			}
			if b.Closes() != 1 {
				t.Errorf("%s: b closed %d times, want 1", tc.cidr, b.Closes())
			}
			if !strings.Contains(h.Log.String(), "skipped by its condition") {
				t.Errorf("no debug line: %s", h.Log)
			}
			continue
		}
		h.Helo()
		h.Mail()
		h.Rcpt("x@example.net")
		h.Data()
		h.Message([]string{"Subject", " x"}, "body\r\n")
		if got := b.KindsString(); got != tc.want {
			t.Errorf("%s: b got %q, want %q", tc.cidr, got, tc.want)
		}
	}
}

// A recipient condition is decided when the recipients are complete (at
// DATA) unless a recipient decides it earlier: a backend for one domain
// leaves a message to another with ABORT and votes nothing at EOM.
func TestRecipientDomain(t *testing.T) {
	c := compile(t, "[if]\nrcpt_domain = [\"example.com\"]\n")
	for _, tc := range []struct {
		rcpts []string
		kinds string
		want  pmult.Verdict
	}{
		{[]string{"b@example.net"}, "connect helo mail rcpt abort", pmult.Continue},
		{[]string{"b@example.net", "c@EXAMPLE.com"}, "connect helo mail rcpt rcpt data header eoh body eom", pmult.Reject},
	} {
		b := pmulttest.New("b", pmulttest.Reader)
		b.On = map[pmult.Kind]pmulttest.Step{pmult.KindEOM: {Verdict: pmult.Reject}}
		a := pmulttest.New("a", pmulttest.Reader)
		h := pmulttest.Open(t, engine(pmult.Slot{Backend: a}, pmult.Slot{Backend: b, Policy: pmult.Policy{Condition: c}}), pmulttest.AllOffer)
		h.Connect()
		h.Helo()
		h.Mail()
		for _, r := range tc.rcpts {
			h.Rcpt(r)
		}
		h.Data()
		r := h.Message([]string{"Subject", " x"}, "body\r\n")
		if r.Verdict != tc.want {
			t.Errorf("%v: EOM %v, want %v", tc.rcpts, r.Verdict, tc.want)
		}
		if got := b.KindsString(); got != tc.kinds {
			t.Errorf("%v: b got %q, want %q", tc.rcpts, got, tc.kinds)
		}
		// The next message is decided again.
		h.Mail()
		h.Rcpt("d@example.com")
		h.Data()
		if r := h.Message([]string{"Subject", " y"}, "body\r\n"); r.Verdict != pmult.Reject {
			t.Errorf("second message: EOM %v, want reject", r.Verdict)
		}
	}
}

// Sender, auth, macro, header and size conditions, and all/any/not.
func TestEval(t *testing.T) {
	f := func(at pmult.Kind) *pmult.Facts {
		return &pmult.Facts{At: at, Listener: "inbound", Family: '6', Address: "2001:db8::5",
			Hostname: "mx.Example.org", Helo: "mx.example.org", Sender: "a@sub.example.org",
			Rcpts:   []string{"x@example.com", "y@example.net"},
			Headers: []pmult.Header{{Name: "Subject", Value: " [SPAM] hi"}},
			Size:    5000, Macros: map[string]string{"auth_authen": "alice", "daemon_name": "smtpd-in"}}
	}
	for _, tc := range []struct {
		cond string
		at   pmult.Kind
		want pmult.Tri
	}{
		{`client = "2001:db8::/32"`, pmult.KindConnect, pmult.Yes},
		{`client = "2001:db8::/32"`, pmult.KindNone, pmult.Unknown},
		{`client = ["10.0.0.0/8", "2001:db8::5"]`, pmult.KindConnect, pmult.Yes},
		{`client_name_suffix = ".example.org"`, pmult.KindConnect, pmult.Yes},
		{`client_name = "mx.example.org"`, pmult.KindConnect, pmult.Yes},
		{`client_name_regex = '^mx\.'`, pmult.KindConnect, pmult.Yes},
		{`helo_regex = 'example\.net$'`, pmult.KindHelo, pmult.No},
		{`auth = true`, pmult.KindHelo, pmult.Unknown},
		{`auth = true`, pmult.KindMail, pmult.Yes},
		{`auth = false`, pmult.KindMail, pmult.No},
		{`auth_user = "alice"`, pmult.KindMail, pmult.Yes},
		{`sender_domain = ".example.org"`, pmult.KindMail, pmult.Yes},
		{`sender_domain = "example.org"`, pmult.KindMail, pmult.No},
		{`sender = "A@sub.example.org"`, pmult.KindMail, pmult.Yes},
		{`sender_regex = '@sub\.'`, pmult.KindMail, pmult.Yes},
		{"rcpt_domain = \"example.com\"\nrcpt_match = \"all\"", pmult.KindRcpt, pmult.No},
		{"rcpt_domain = \"example.org\"", pmult.KindRcpt, pmult.Unknown},
		{"rcpt_domain = \"example.org\"", pmult.KindData, pmult.No},
		{`macro = { "{daemon_name}" = "smtpd-in" }`, pmult.KindConnect, pmult.Yes},
		{`macro_regex = { "{daemon_name}" = "^smtpd-out" }`, pmult.KindConnect, pmult.No},
		{`header = "subject"`, pmult.KindHeader, pmult.Yes},
		{`header = "x-spam"`, pmult.KindHeader, pmult.Unknown},
		{`header = "x-spam"`, pmult.KindEOH, pmult.No},
		{`header_regex = { Subject = '^\[SPAM\]' }`, pmult.KindHeader, pmult.Yes},
		{`size_over = 4000`, pmult.KindBody, pmult.Yes},
		{`size_under = 10000`, pmult.KindBody, pmult.Unknown},
		{`size_under = 10000`, pmult.KindEOM, pmult.Yes},
		{"not = { listener = \"inbound\" }", pmult.KindNone, pmult.No},
		{"[[if.any]]\nlistener = \"x\"\n[[if.any]]\nclient = \"2001:db8::/32\"", pmult.KindConnect, pmult.Yes},
		{"[[if.any]]\nlistener = \"x\"\n[[if.any]]\nclient = \"2001:db8::/32\"", pmult.KindNone, pmult.Unknown},
		{"[[if.all]]\nlistener = \"x\"\n[[if.all]]\nclient = \"2001:db8::/32\"", pmult.KindNone, pmult.No},
	} {
		text := "[if]\n" + tc.cond + "\n"
		if strings.HasPrefix(tc.cond, "[[") {
			text = tc.cond + "\n"
		}
		c := compile(t, text)
		if got := c.Eval(f(tc.at)); got != tc.want {
			t.Errorf("%s at %s: %v, want %v", tc.cond, tc.at, got, tc.want)
		}
	}
}

// List files: CIDRs and addresses or domains, one a line, comments.
func TestListFiles(t *testing.T) {
	dir := t.TempDir()
	nets := filepath.Join(dir, "nets")
	os.WriteFile(nets, []byte("# our networks\n10.0.0.0/8\n\n192.0.2.7 # one host\n2001:db8::/32\n"), 0o644)
	senders := filepath.Join(dir, "senders")
	os.WriteFile(senders, []byte("bad@example.org\n.spam.example\n"), 0o644)
	c := compile(t, "[if]\nclient_file = \""+nets+"\"\n")
	for addr, want := range map[string]pmult.Tri{"10.1.2.3": pmult.Yes, "192.0.2.7": pmult.Yes, "192.0.2.8": pmult.No,
		"2001:db8:1::1": pmult.Yes, "2001:db9::1": pmult.No, "::ffff:10.0.0.1": pmult.Yes} {
		if got := c.Eval(&pmult.Facts{At: pmult.KindConnect, Address: addr}); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	s := compile(t, "[if]\nsender_file = \""+senders+"\"\n")
	for addr, want := range map[string]pmult.Tri{"bad@example.org": pmult.Yes, "x@a.spam.example": pmult.Yes, "ok@example.org": pmult.No} {
		if got := s.Eval(&pmult.Facts{At: pmult.KindMail, Sender: addr}); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
}

// Every bad condition is reported, with its place, at once.
func TestCompileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("10.0.0.0/8\nnot-a-net\n"), 0o644)
	text := `[if]
client = ["10.0.0.0/33"]
client_file = "` + bad + `"
sender_regex = "a("
lisener = "x"
size_over = "big"
[[if.any]]
helo_regex = "[z-a]"
[[if.any]]
rcpt_file = "` + filepath.Join(dir, "missing") + `"
`
	var doc struct {
		If any `toml:"if"`
	}
	if _, err := toml.Decode(text, &doc); err != nil {
		t.Fatal(err)
	}
	_, errs := cond.Compile("if", doc.If)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	got := strings.Join(all, "\n")
	for _, want := range []string{
		`if.client[0]: "10.0.0.0/33": not an address or CIDR`,
		`if.client_file: ` + bad + `:2: "not-a-net"`,
		`if.sender_regex: bad regular expression`,
		`if.lisener: unknown condition (did you mean listener?)`,
		`if.size_over: want a number of bytes`,
		`if.any[0].helo_regex: bad regular expression`,
		`if.any[1].rcpt_file: open ` + filepath.Join(dir, "missing"),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

// Evaluation mode combines with conditions: an evaluated backend whose
// condition turns false leaves the message like any other; the decision
// record keeps the skip as a "condition" policy.
func TestEvaluateWithCondition(t *testing.T) {
	c := compile(t, "[if]\nrcpt_domain = \"example.com\"\n")
	b := pmulttest.New("b", pmulttest.Reader)
	b.On = map[pmult.Kind]pmulttest.Step{pmult.KindEOM: {Verdict: pmult.Reject}}
	rec := pmult.NewRecorder(10)
	e := &pmult.Engine{Records: rec, Slots: []pmult.Slot{{Backend: b, Policy: pmult.Policy{Evaluate: true, Condition: c}}}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q1"}}}})
	h.Rcpt("x@example.net")
	h.Data()
	h.Message([]string{"Subject", " x"}, "body\r\n")
	if got := b.KindsString(); got != "connect helo mail rcpt abort" {
		t.Errorf("b got %q", got)
	}
	if strings.Contains(h.Log.String(), "evaluation: backend would have answered") {
		t.Errorf("b voted after leaving:\n%s", h.Log)
	}
	var why strings.Builder
	if ok, err := rec.WriteWhy(&why, "Q1"); !ok || err != nil {
		t.Fatalf("no record: %v", err)
	}
	if !strings.Contains(why.String(), "condition b at data: skip") {
		t.Errorf("record lacks the condition policy:\n%s", why.String())
	}
}

// Envelope edits of the rule filter are covered in backends/filter; here:
// a condition on a macro that arrives at MAIL ({auth_authen}) decides there.
func TestAuthConditionAtMail(t *testing.T) {
	c := compile(t, "[if]\nauth = true\n")
	b := pmulttest.New("b", pmulttest.Reader)
	h := pmulttest.Open(t, engine(pmult.Slot{Backend: b, Policy: pmult.Policy{Condition: c}}), pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	h.Mail() // no {auth_authen}: not authenticated
	h.Rcpt("x@example.net")
	h.Data()
	h.Message([]string{"Subject", " x"}, "body\r\n")
	h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"{auth_authen}", "alice"}}}})
	h.Rcpt("x@example.net")
	if got := b.KindsString(); got != "connect helo mail rcpt" {
		t.Errorf("b got %q, want the authenticated message only from MAIL on", got)
	}
}

// After QUIT_NC, the new SMTP session's conditions do not see the old
// session's macros ({auth_authen}).
func TestQuitNCForgetsMacros(t *testing.T) {
	var f pmult.Facts
	f.Note(&pmult.Event{Kind: pmult.KindConnect, Address: "192.0.2.1"})
	f.Note(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@b>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"{auth_authen}", "alice"}}}})
	c := compile(t, "[if]\nauth = true\n")
	if c.Eval(&f) != pmult.Yes {
		t.Fatal("not authenticated")
	}
	f.Note(&pmult.Event{Kind: pmult.KindConnect, Address: "192.0.2.1"})
	f.Note(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@b>"}})
	if c.Eval(&f) != pmult.No {
		t.Error("the new session is authenticated by the old one's macro")
	}
}
