package smtp

import (
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

const msg1 = "From: a@example.org\r\nSubject: hello\r\n folded\r\n\r\nbody line\r\n..dot line\r\n"

func TestEventsAndRelay(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	f := startFront(t, nil, b)
	if err := f.send(t, "a@example.org", []string{"x@example.com", "y@example.com"}, msg1); err != nil {
		t.Fatal(err)
	}
	got := b.KindsString()
	want := "connect helo mail rcpt rcpt data header header eoh body eom"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	ev := b.Events()
	if ev[0].Address != "127.0.0.1" || ev[0].Family != '4' || ev[1].Arg != "client.test" {
		t.Errorf("connect/helo: %+v %+v", ev[0], ev[1])
	}
	if ev[2].Args[0] != "<a@example.org>" || ev[3].Args[0] != "<x@example.com>" {
		t.Errorf("mail/rcpt args %q %q", ev[2].Args, ev[3].Args)
	}
	if ev[7].Name != "Subject" || ev[7].Value != " hello\n folded" {
		t.Errorf("header %q %q", ev[7].Name, ev[7].Value)
	}
	if string(ev[9].Chunk) != "body line\r\n..dot line\r\n" {
		t.Errorf("body %q", ev[9].Chunk)
	}
	d := f.hop.delivered()
	if len(d) != 1 {
		t.Fatalf("%d delivered", len(d))
	}
	wantMsg := "From: a@example.org\r\nSubject: hello\r\n folded\r\nX-Mailmux-Filtered: mx.test\r\n\r\nbody line\r\n..dot line\r\n"
	if d[0].msg != wantMsg || d[0].from != "a@example.org" || strings.Join(d[0].rcpts, ",") != "x@example.com,y@example.com" {
		t.Errorf("relayed %q from %q to %q", d[0].msg, d[0].from, d[0].rcpts)
	}
}

func TestEditsApplied(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{Actions: pmult.ActModify})
	b.On[pmult.KindEOM] = pmulttest.Step{Edits: []pmult.Edit{
		{Kind: pmult.EditChangeHeader, Name: "Subject", Index: 1, Value: " changed"},
		{Kind: pmult.EditInsertHeader, Name: "X-Top", Index: 0, Value: " top"},
		{Kind: pmult.EditAddHeader, Name: "X-Multi", Value: " one\n two"},
		{Kind: pmult.EditChangeFrom, Addr: "<new@example.org>"},
		{Kind: pmult.EditDelRcpt, Addr: "<x@example.com>"},
		{Kind: pmult.EditAddRcpt, Addr: "<z@example.com>"},
		{Kind: pmult.EditReplaceBody, Body: []byte("new body\nsecond")},
	}}
	f := startFront(t, nil, b)
	if err := f.send(t, "a@example.org", []string{"x@example.com", "y@example.com"}, msg1); err != nil {
		t.Fatal(err)
	}
	d := f.hop.delivered()
	if len(d) != 1 {
		t.Fatalf("%d delivered", len(d))
	}
	want := "X-Top: top\r\nFrom: a@example.org\r\nSubject: changed\r\nX-Multi: one\r\n two\r\nX-Mailmux-Filtered: mx.test\r\n\r\nnew body\r\nsecond\r\n"
	if d[0].msg != want {
		t.Errorf("message\n%q\nwant\n%q", d[0].msg, want)
	}
	if d[0].resets != 1 || d[0].from != "new@example.org" || strings.Join(d[0].rcpts, ",") != "y@example.com,z@example.com" {
		t.Errorf("envelope: resets %d from %q rcpts %q", d[0].resets, d[0].from, d[0].rcpts)
	}
}

func TestVerdictsPerRecipientAndCustomText(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	b.Hook = func(ev *pmult.Event) (pmulttest.Step, bool) {
		if ev.Kind == pmult.KindRcpt && ev.Args[0] == "<bad@example.com>" {
			return pmulttest.Step{Verdict: pmult.Reject, Text: "550-5.7.1 first line\r\n550 5.7.1 second line"}, true
		}
		if ev.Kind == pmult.KindRcpt && ev.Args[0] == "<later@example.com>" {
			return pmulttest.Step{Verdict: pmult.Tempfail}, true
		}
		return pmulttest.Step{}, false
	}
	f := startFront(t, nil, b)
	r := dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO client.test")
	if got := r.cmd("MAIL FROM:<a@example.org>"); !strings.HasPrefix(got, "250") {
		t.Fatal(got)
	}
	if got := r.cmd("RCPT TO:<bad@example.com>"); got != "550-5.7.1 first line\n550 5.7.1 second line" {
		t.Errorf("reject: %q", got)
	}
	if got := r.cmd("RCPT TO:<later@example.com>"); got != "451 4.7.1 Service unavailable - try again later" {
		t.Errorf("tempfail: %q", got)
	}
	if got := r.cmd("RCPT TO:<good@example.com>"); !strings.HasPrefix(got, "250") {
		t.Errorf("good: %q", got)
	}
	r.cmd("DATA")
	if got := r.cmd("Subject: x\r\n\r\nbody\r\n."); !strings.HasPrefix(got, "250") {
		t.Fatalf("end of data: %q", got)
	}
	d := f.hop.delivered()
	// The next hop took the refused recipients while the backend looked
	// at them: the envelope was replayed without them.
	if len(d) != 1 || strings.Join(d[0].rcpts, ",") != "good@example.com" || d[0].resets != 1 {
		t.Fatalf("delivered %+v", d)
	}
}

func TestDiscardAndReject(t *testing.T) {
	for _, tc := range []struct {
		v     pmult.Verdict
		reply string
	}{{pmult.Discard, "250 2.0.0 Ok: discarded"}, {pmult.Reject, "550 5.7.1 Command rejected"}} {
		b := pmulttest.New("b", pmult.Caps{})
		b.On[pmult.KindEOM] = pmulttest.Step{Verdict: tc.v}
		f := startFront(t, nil, b)
		r := dialRaw(t, f.addr)
		r.reply()
		r.cmd("EHLO client.test")
		r.cmd("MAIL FROM:<a@example.org>")
		r.cmd("RCPT TO:<x@example.com>")
		r.cmd("DATA")
		if got := r.cmd("Subject: x\r\n\r\nbody\r\n."); got != tc.reply {
			t.Errorf("%s: %q, want %q", tc.v, got, tc.reply)
		}
		if d := f.hop.delivered(); len(d) != 0 {
			t.Errorf("%s: relayed %d", tc.v, len(d))
		}
		if tx := f.hop.txns; len(tx) != 1 || !tx[0].aborted {
			t.Errorf("%s: next-hop transaction not aborted", tc.v)
		}
	}
}

func TestQuarantineActions(t *testing.T) {
	for _, tc := range []struct {
		q       Quarantine
		reply   string
		relayed bool
	}{{QuarantineHeader, "250 ", true}, {QuarantineTempfail, "451 4.7.1", false}, {QuarantineReject, "550 5.7.1", false}} {
		b := pmulttest.New("b", pmult.Caps{Actions: pmult.ActQuarantine})
		b.On[pmult.KindEOM] = pmulttest.Step{Edits: []pmult.Edit{{Kind: pmult.EditQuarantine, Value: "looks bad"}}}
		f := startFront(t, func(s *Server) { s.Quarantine = tc.q }, b)
		r := dialRaw(t, f.addr)
		r.reply()
		r.cmd("EHLO client.test")
		r.cmd("MAIL FROM:<a@example.org>")
		r.cmd("RCPT TO:<x@example.com>")
		r.cmd("DATA")
		if got := r.cmd("Subject: x\r\n\r\nbody\r\n."); !strings.HasPrefix(got, tc.reply) {
			t.Errorf("quarantine %d: %q, want %q", tc.q, got, tc.reply)
		}
		d := f.hop.delivered()
		if (len(d) == 1) != tc.relayed {
			t.Fatalf("quarantine %d: relayed %d", tc.q, len(d))
		}
		if tc.relayed && !strings.Contains(d[0].msg, "X-Mailmux-Quarantine: looks bad\r\n") {
			t.Errorf("no quarantine header: %q", d[0].msg)
		}
	}
}

// The queue id the front gives (macro i, the 250 text) finds the
// message's decision record (pmult why).
func TestDecisionRecordByQueueID(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	rec := pmult.NewRecorder(10)
	f := startFront(t, func(s *Server) { s.Engine.Records = rec }, b)
	r := dialRaw(t, f.addr)
	r.reply()
	session(t, r, "EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.com>", "DATA")
	got := r.cmd("Subject: s\r\n\r\nb\r\n.")
	qid := strings.TrimPrefix(got, "250 2.0.0 Ok: queued as ")
	if qid == got || qid == "" {
		t.Fatalf("no queue id in %q", got)
	}
	recs := rec.Find(qid)
	if len(recs) != 1 || recs[0].Sender != "a@example.org" || recs[0].Addr != "127.0.0.1" {
		t.Fatalf("records for %s: %+v", qid, recs)
	}
}

// CONNECT and HELO verdicts answer MAIL (the events go out once the real
// client is known), for every MAIL of the session; a new HELO is judged
// anew.
func TestConnectAndHeloVerdicts(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	b.Hook = func(ev *pmult.Event) (pmulttest.Step, bool) {
		switch {
		case ev.Kind == pmult.KindHelo && ev.Arg == "bad.example":
			return pmulttest.Step{Verdict: pmult.Reject, Text: "550 5.7.1 bad helo"}, true
		case ev.Kind == pmult.KindConnect && ev.Hostname == "blocked.example":
			return pmulttest.Step{Verdict: pmult.Tempfail, Text: "421 4.7.0 go away"}, true
		}
		return pmulttest.Step{}, false
	}
	f := startFront(t, nil, b)
	r := dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO bad.example")
	for i := 0; i < 2; i++ {
		if got := r.cmd("MAIL FROM:<a@example.org>"); got != "550 5.7.1 bad helo" {
			t.Errorf("MAIL after a refused HELO: %q", got)
		}
	}
	r.cmd("EHLO good.example")
	if got := r.cmd("MAIL FROM:<a@example.org>"); !strings.HasPrefix(got, "250") {
		t.Errorf("MAIL after a new HELO: %q", got)
	}
	if len(f.hop.delivered()) != 0 {
		t.Error("delivered")
	}

	r = dialRaw(t, f.addr)
	r.reply()
	r.cmd("EHLO proxy.example")
	r.cmd("XCLIENT NAME=blocked.example ADDR=192.0.2.1")
	r.cmd("EHLO x.example")
	if got := r.cmd("MAIL FROM:<a@example.org>"); got != "421 4.7.0 go away" {
		t.Errorf("MAIL after a refused CONNECT: %q", got)
	}
	if got := r.reply(); got != "" {
		t.Errorf("421 did not close the connection: %q", got)
	}
}
