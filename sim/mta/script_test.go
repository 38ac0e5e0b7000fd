// script_test.go: the script line parser, the port syntax, message edits
// and the header diff; a fuzz test for the parser.

package mtasim

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/pmult"
)

func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		in    string
		admin byte
		verb  string
		args  []string
		bad   bool
	}{
		{in: "mail from:<a@b> SIZE=1", verb: "MAIL"},
		{in: "  ehlo x", verb: "EHLO"},
		{in: `\E250`, admin: 'E', args: []string{"250"}},
		{in: `\E 250`, admin: 'E', args: []string{"250"}},
		{in: `\e2`, admin: 'E', args: []string{"2"}},
		{in: `\E 2500`, bad: true},
		{in: `\E abc`, bad: true},
		{in: `\E`, bad: true},
		{in: `\Dclient_addr=1.2.3.4 f=a@b`, admin: 'D', args: []string{"client_addr=1.2.3.4", "f=a@b"}},
		{in: `\D {x}="a b"`, admin: 'D', args: []string{"{x}=a b"}},
		{in: `\D x="a b`, bad: true},
		{in: `\D novalue`, bad: true},
		{in: `\Ui j`, admin: 'U', args: []string{"i", "j"}},
		{in: `\U`, bad: true},
		{in: `\L`, admin: 'L'},
		{in: `\S inet relay.example 192.0.2.1 25`, admin: 'S', args: []string{"inet", "relay.example", "192.0.2.1", "25"}},
		{in: `\S inet relay.example 192.0.2.1`, bad: true},
		{in: `\S inet h 300.1.1.1 25`, bad: true},
		{in: `\S inet6 h 2001:db8::1 25`, admin: 'S', args: []string{"inet6", "h", "2001:db8::1", "25"}},
		{in: `\S unix h /tmp/s`, admin: 'S', args: []string{"unix", "h", "/tmp/s"}},
		{in: `\S0`, admin: 'S', args: []string{"0"}},
		{in: `\S bogus`, bad: true},
		{in: `\W0.01`, admin: 'W', args: []string{"0.01"}},
		{in: `\W x`, bad: true},
		{in: `\#anything at all`, admin: '#', args: []string{"anything", "at", "all"}},
		{in: `\Q`, bad: true},
		{in: `\`, bad: true},
	} {
		l, err := ParseLine(c.in)
		if c.bad {
			if err == nil || !errors.Is(err, ErrSyntax) {
				t.Errorf("ParseLine(%q) = %+v, %v; want a syntax error", c.in, l, err)
			}
			continue
		}
		if err != nil || l.Admin != c.admin || l.Verb != c.verb || !reflect.DeepEqual(l.Args, c.args) {
			t.Errorf("ParseLine(%q) = %+v, %v; want admin %q verb %q args %q", c.in, l, err, c.admin, c.verb, c.args)
		}
	}
}

func TestParsePort(t *testing.T) {
	p, err := ParsePort("inet:999@localhost")
	if err != nil || p.Address.Network != "tcp" || p.Address.Addr != "localhost:999" {
		t.Errorf("inet form: %+v, %v", p, err)
	}
	p, err = ParsePort("mailfrom, S=inet:999@127.0.0.1, F=T, T=C:100m;R:180s;S:5;E:1m")
	if err != nil || p.Name != "mailfrom" || p.Address.Addr != "127.0.0.1:999" || p.OnFailure != 'T' ||
		p.Connect != 100*time.Minute || p.Read != 180*time.Second || p.Write != 5*time.Second || p.EOM != time.Minute {
		t.Errorf("X form: %+v, %v", p, err)
	}
	p, err = ParsePort("Xfilt, S=unix:/tmp/x.sock")
	if err != nil || p.Name != "filt" || p.Address.Network != "unix" || p.OnFailure != 0 {
		t.Errorf("X form with X: %+v, %v", p, err)
	}
	if err := p.SetTimeouts("C=3,R=10s", ",", "="); err != nil || p.Connect != 3*time.Second || p.Read != 10*time.Second {
		t.Errorf("--milter-timeout: %+v, %v", p, err)
	}
	for _, bad := range []string{"", "bogus", "f, F=T", "f, S=inet:1@h, Q=1", "f, S=inet:1@h, T=Z:1s", "f, S=inet:1@h, F=Z", "f, S=inet:1@h, T=C:-1"} {
		if _, err := ParsePort(bad); err == nil {
			t.Errorf("ParsePort(%q) succeeded", bad)
		}
	}
}

func TestApplyAndDiff(t *testing.T) {
	hs, body := ParseContent([]byte("Subject: one\nX-A: 1\n  folded\nX-A: 2\n\nbody\n"))
	if len(hs) != 3 || hs[1].Value != " 1\n  folded" || string(body) != "body\r\n" {
		t.Fatalf("ParseContent: %q %q", hs, body)
	}
	m := &Message{From: "<a@b>", Rcpts: []Rcpt{{Addr: "<x@y>"}, {Addr: "<z@y>"}}, Headers: hs, Body: body}
	o := m.Clone()
	q := m.Apply([]pmult.Edit{
		{Kind: pmult.EditChangeHeader, Name: "x-a", Index: 2, Value: ""},
		{Kind: pmult.EditChangeHeader, Name: "Subject", Index: 0, Value: " two"},
		{Kind: pmult.EditInsertHeader, Index: 0, Name: "X-Top", Value: " t"},
		{Kind: pmult.EditAddHeader, Name: "X-End", Value: " e"},
		{Kind: pmult.EditChangeHeader, Name: "X-New", Index: 1, Value: " n"},
		{Kind: pmult.EditAddRcptPar, Addr: "<new@y>", Args: "NOTIFY=NEVER"},
		{Kind: pmult.EditDelRcpt, Addr: "x@Y"},
		{Kind: pmult.EditChangeFrom, Addr: "<c@d>", Args: "SIZE=1"},
		{Kind: pmult.EditReplaceBody, Body: []byte("new\r\n")},
		{Kind: pmult.EditQuarantine, Value: "held"},
	})
	if q != "held" || m.From != "<c@d>" || len(m.Rcpts) != 2 || m.Rcpts[1].Addr != "<new@y>" || string(m.Body) != "new\r\n" {
		t.Errorf("Apply: q=%q %+v", q, m)
	}
	want := []string{"- Subject: one", "+ X-Top: t", "+ Subject: two", "- X-A: 2", "+ X-End: e", "+ X-New: n"}
	got := HeaderDiff(o.Headers, m.Headers)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("HeaderDiff:\n got %q\nwant %q", got, want)
	}
	if len(o.Headers) != 3 || o.From != "<a@b>" {
		t.Errorf("Clone shares state: %+v", o)
	}
}

func TestReplyText(t *testing.T) {
	r := ParseReplyText("554-5.7.0 l1\r\n554 5.7.0 l2", 550)
	if r.Code != 554 || r.String() != "554-5.7.0 l1\r\n554 5.7.0 l2" {
		t.Errorf("ParseReplyText: %+v", r)
	}
	if !r.Matches("5") || !r.Matches("554") || r.Matches("550") {
		t.Errorf("Matches")
	}
}

// FuzzParseLine: no panics; accepted admin lines re-parse to the same thing.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{`\E250`, `\E 2`, `\Dx=1 {y}="a b"`, `\S inet h 1.2.3.4 25`, `\S inet6 h ::1 1`,
		`\W1.5`, `\Ua`, `\L`, `mail from:<a@b>`, `\`, `\D x="\"`, "\\S unix h /p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLine(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		if l.Admin == 'S' {
			if _, err := ParseSender(l.Args); err != nil {
				t.Fatalf("accepted \\S with bad sender: %v", err)
			}
		}
		if l.Admin == 'E' {
			if c, err := expectCode(l.Args); err != nil || len(c) == 0 {
				t.Fatalf("accepted \\E without a code")
			}
		}
	})
}
