package pmult_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/mailmux/mailmux/pmult"
)

// ---- Open and negotiation ----

func TestOpenNegotiation(t *testing.T) {
	a := newFake("a", Caps{
		Actions: ActAddHeaders,
		NoEvent: Kinds(KindHelo, KindUnknown, KindBody),
		NoReply: Kinds(KindConnect, KindHeader),
		Macros:  map[Kind][]string{KindMail: {"{auth_authen}", "i"}, KindRcpt: {"{rcpt_addr}"}},
	})
	b := newFake("b", Caps{
		Actions:       ActAddRcpt | ActQuarantine,
		NoEvent:       Kinds(KindHelo, KindUnknown, KindData),
		NoReply:       Kinds(KindConnect, KindHeader, KindRcpt),
		RejectedRcpts: true,
		Macros:        map[Kind][]string{KindMail: {"i", "{mail_addr}", "{auth_authen}"}},
	})
	c := newFake("c", Caps{ // evaluation mode: gets events, adds no actions
		Actions: ActChangeBody | ActChangeFrom,
		NoEvent: Kinds(KindHelo, KindUnknown, KindHeader),
		NoReply: Kinds(KindConnect),
		Macros:  map[Kind][]string{KindConnect: {"j"}},
	})
	e := &Engine{Parallel: true, Slots: []Slot{{Backend: a}, {Backend: b}, {Backend: c, Policy: Policy{Evaluate: true}}}}
	offer := allOffer
	offer.NoReply = Kinds(KindConnect, KindHelo, KindHeader, KindRcpt)
	h := open(t, e, offer)
	n := h.Neg
	if want := ActAddHeaders | ActAddRcpt | ActQuarantine | ActSetSymList; n.Actions != want {
		t.Errorf("Actions = %#x, want %#x", n.Actions, want)
	}
	if want := Kinds(KindHelo, KindUnknown); n.NoEvent != want {
		t.Errorf("NoEvent = %#x, want %#x (intersection)", n.NoEvent, want)
	}
	// Connect: nobody answers; Helo: nobody wants it; Header: c does not
	// want it and a, b do not answer; Rcpt: a answers.
	if want := Kinds(KindConnect, KindHelo, KindHeader); n.NoReply != want {
		t.Errorf("NoReply = %#x, want %#x", n.NoReply, want)
	}
	if !n.RejectedRcpts {
		t.Error("RejectedRcpts = false, want true (b asked, the MTA offers)")
	}
	want := map[Kind][]string{
		KindMail:    {"{auth_authen}", "i", "{mail_addr}"},
		KindRcpt:    {"{rcpt_addr}"},
		KindConnect: {"j"},
	}
	if !reflect.DeepEqual(n.Macros, want) {
		t.Errorf("Macros = %q, want %q", n.Macros, want)
	}
	if !reflect.DeepEqual(h.S.Negotiated(), n) {
		t.Error("Session.Negotiated differs from Open's result")
	}
	for _, f := range []*fakeBackend{a, b, c} {
		if len(f.Sessions()) != 1 || f.Sessions()[0].Offer().Actions != offer.Actions {
			t.Errorf("%s: not opened with the MTA's offer", f.Name())
		}
	}
}

func TestOpenNegotiationOfferLimits(t *testing.T) {
	a := newFake("a", Caps{
		Actions:       ActAddHeaders | ActChangeFrom,
		NoReply:       Kinds(KindConnect, KindRcpt),
		RejectedRcpts: true,
		Macros:        map[Kind][]string{KindMail: {"i"}},
	})
	offer := Offer{Actions: ActAddHeaders, NoReply: Kinds(KindRcpt)} // no symlist, no RCPT_REJ
	h := open(t, &Engine{Slots: slots(a)}, offer)
	n := h.Neg
	if n.Actions != ActAddHeaders {
		t.Errorf("Actions = %#x, want only what the MTA offered (%#x)", n.Actions, ActAddHeaders)
	}
	if n.Macros != nil {
		t.Errorf("Macros = %q without symlist in the offer", n.Macros)
	}
	if n.RejectedRcpts {
		t.Error("RejectedRcpts set though the MTA does not offer it")
	}
	if n.NoReply != Kinds(KindRcpt) {
		t.Errorf("NoReply = %#x, want only the offered %#x", n.NoReply, Kinds(KindRcpt))
	}
}

func TestOpenNoReplyNeedsEveryLiveReceiver(t *testing.T) {
	offer := allOffer
	offer.NoReply = Kinds(KindRcpt)
	for _, tc := range []struct {
		name string
		caps []Caps
		fail []bool
		want bool
	}{
		{"all NR", []Caps{{NoReply: Kinds(KindRcpt)}, {NoReply: Kinds(KindRcpt)}}, nil, true},
		{"one answers", []Caps{{NoReply: Kinds(KindRcpt)}, {}}, nil, false},
		{"one does not want it", []Caps{{NoReply: Kinds(KindRcpt)}, {NoEvent: Kinds(KindRcpt)}}, nil, true},
		{"the one answering is dead, failure action accept",
			[]Caps{{NoReply: Kinds(KindRcpt)}, {}}, []bool{false, true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{}
			for i, c := range tc.caps {
				f := newFake(fmt.Sprint("b", i), c)
				if tc.fail != nil && tc.fail[i] {
					f.OpenErr = errors.New("refused")
				}
				e.Slots = append(e.Slots, Slot{Backend: f, Policy: Policy{OnFailure: FailAccept}})
			}
			h := open(t, e, offer)
			if got := h.Neg.NoReply.Has(KindRcpt); got != tc.want {
				t.Errorf("NoReply has rcpt = %v, want %v", got, tc.want)
			}
		})
	}
}

// A backend that failed to open must be able to cast its vote at the first
// event, so the engine must not let the MTA skip reading its replies.
func TestOpenFailureKeepsReplies(t *testing.T) {
	good := newFake("good", Caps{NoReply: Kinds(KindConnect, KindHelo, KindMail, KindRcpt)})
	bad := newFake("bad", Caps{})
	bad.OpenErr = errors.New("connection refused")
	offer := allOffer
	offer.NoReply = Kinds(KindConnect, KindHelo, KindMail, KindRcpt)
	h := open(t, &Engine{Slots: slots(bad, good)}, offer)
	if h.Neg.NoReply.Has(KindConnect) {
		t.Errorf("NoReply = %#x: the failure vote at CONNECT would never reach the MTA", h.Neg.NoReply)
	}
	if r := h.Connect(); r.Verdict != Tempfail || r.From != "bad" {
		t.Errorf("connect = %+v, want tempfail from bad", r)
	}
}

func TestOpenEvaluateAddsNoActions(t *testing.T) {
	ev := newFake("shadow", editor)
	rd := newFake("reader", reader)
	ed := newFake("editor", editor)
	e := &Engine{Slots: []Slot{{Backend: ev, Policy: Policy{Evaluate: true}}, {Backend: rd}, {Backend: ed}}}
	h := open(t, e, allOffer)
	if h.Neg.Actions&ActModify != editor.Actions&ActModify {
		t.Errorf("Actions = %#x", h.Neg.Actions)
	}
	h2 := open(t, &Engine{Slots: []Slot{{Backend: newFake("s", editor), Policy: Policy{Evaluate: true}}, {Backend: newFake("r", reader)}}}, allOffer)
	if h2.Neg.Actions != 0 {
		t.Errorf("Actions = %#x, want 0: an evaluation backend adds none", h2.Neg.Actions)
	}
	// The shadow editor does not count as the first modifier: the real
	// editor sees the content live.
	h.EnvelopeToData()
	h.Header("Subject", " x")
	h.EOH()
	for _, f := range []*fakeBackend{ev, rd, ed} {
		if got := f.Headers(); !slices.Equal(got, []string{"Subject: x"}) {
			t.Errorf("%s got headers %q live", f.Name(), got)
		}
	}
}

func TestOpenFailureAction(t *testing.T) {
	for _, tc := range []struct {
		act           FailAction
		connect, mail Verdict
	}{
		{FailTempfail, Tempfail, Tempfail},
		{FailReject, Reject, Reject},
		{FailDiscard, Continue, Discard}, // no discard at CONNECT: at MAIL
		{FailAccept, Continue, Continue},
	} {
		t.Run(tc.act.String(), func(t *testing.T) {
			bad := newFake("bad", editor)
			bad.OpenErr = errors.New("dial: connection refused")
			good := newFake("good", editor)
			e := &Engine{Slots: []Slot{{Backend: good}, {Backend: bad, Policy: Policy{OnFailure: tc.act}}}}
			h := open(t, e, allOffer)
			if r := h.Connect(); r.Verdict != tc.connect {
				t.Errorf("connect = %v, want %v", r.Verdict, tc.connect)
			} else if tc.connect.Objects() && r.From != "bad" {
				t.Errorf("connect From = %q, want bad", r.From)
			}
			h.Helo()
			if r := h.Mail(); r.Verdict != tc.mail {
				t.Errorf("mail = %v, want %v", r.Verdict, tc.mail)
			}
			if r := h.Rcpt("x@example.net"); r.Verdict != tc.mail {
				t.Errorf("rcpt = %v, want %v (sticky)", r.Verdict, tc.mail)
			}
			h.Data()
			h.Message([]string{"Subject", " s"}, "body\r\n")
			h.Abort()
			h.Do(&Event{Kind: KindQuit})
			if bad.Opens() != 1 || len(bad.Sessions()) != 0 {
				t.Errorf("bad: %d opens, %d sessions", bad.Opens(), len(bad.Sessions()))
			}
			if !strings.Contains(h.Log.String(), "backend failed") || !strings.Contains(h.Log.String(), "stage=open") {
				t.Errorf("no failure log line:\n%s", h.Log)
			}
			if n := len(good.Events()); n == 0 {
				t.Error("the good backend got nothing")
			}
		})
	}
}

// ---- Envelope ----

func TestEnvelopeParallel(t *testing.T) {
	// Ordering: each backend holds its answer until all three got the event.
	var arrived atomic.Int32
	all := make(chan struct{})
	var fs []*fakeBackend
	for i := range 3 {
		f := newFake(fmt.Sprint("b", i), reader)
		f.Hook = func(ev *Event) (step, bool) {
			if ev.Kind != KindRcpt {
				return step{}, false
			}
			if arrived.Add(1) == 3 {
				close(all)
			}
			return step{Wait: all}, true
		}
		fs = append(fs, f)
	}
	h := open(t, &Engine{Slots: slots(fs...)}, allOffer)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.Ctx = ctx
	h.Connect()
	h.Helo()
	h.Mail()
	if r := h.Rcpt("x@example.net"); r.Verdict != Continue {
		t.Fatalf("rcpt = %+v (the backends were not asked in parallel: %s)", r, h.Log)
	}
}

func TestEnvelopeParallelTime(t *testing.T) {
	var elapsed time.Duration
	for try := 0; try < 3; try++ {
		var fs []*fakeBackend
		for i := range 3 {
			f := newFake(fmt.Sprint("b", i), reader)
			f.On[KindRcpt] = step{Delay: 50 * time.Millisecond}
			fs = append(fs, f)
		}
		h := open(t, &Engine{Slots: slots(fs...)}, allOffer)
		h.Connect()
		h.Helo()
		h.Mail()
		start := time.Now()
		h.Rcpt("x@example.net")
		elapsed = time.Since(start)
		if elapsed < 140*time.Millisecond {
			t.Logf("3 × 50 ms at RCPT took %v", elapsed)
			return
		}
	}
	t.Errorf("3 backends × 50 ms at RCPT took %v: not parallel", elapsed)
}

func TestEnvelopeStrongestWins(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
		want  Verdict
		from  string
		text  string
	}{
		{"all continue", []step{{}, {}, {}}, Continue, "", ""},
		{"reject beats tempfail", []step{{}, {Verdict: Tempfail}, {Verdict: Reject, Text: "550 5.7.1 no"}}, Reject, "c", "550 5.7.1 no"},
		{"discard beats reject", []step{{Verdict: Reject}, {Verdict: Discard}, {Verdict: Tempfail}}, Discard, "b", ""},
		{"tempfail beats continue", []step{{}, {}, {Verdict: Tempfail, Text: "451 4.7.1 later"}}, Tempfail, "c", "451 4.7.1 later"},
		{"tie: configured order", []step{{}, {Verdict: Reject, Text: "550 b"}, {Verdict: Reject, Text: "550 c"}}, Reject, "b", "550 b"},
		{"tie: first of three", []step{{Verdict: Tempfail, Text: "451 a"}, {Verdict: Tempfail, Text: "451 b"}, {Verdict: Tempfail}}, Tempfail, "a", "451 a"},
		{"shutdown between reject and tempfail", []step{{Verdict: Tempfail}, {Verdict: Shutdown}, {}}, Shutdown, "b", ""},
		{"reject beats shutdown", []step{{Verdict: Shutdown}, {Verdict: Reject}, {}}, Reject, "b", ""},
		{"one accept is not accept", []step{{Verdict: Accept}, {}, {}}, Continue, "", ""},
		{"all accept", []step{{Verdict: Accept}, {Verdict: Accept}, {Verdict: Accept}}, Accept, "", ""},
		{"accept and reject", []step{{Verdict: Accept}, {Verdict: Accept}, {Verdict: Reject}}, Reject, "c", ""},
		{"skip is not an objection", []step{{Verdict: Skip}, {}, {}}, Continue, "", ""},
	} {
		for _, k := range []Kind{KindMail, KindRcpt} {
			t.Run(tc.name+"/"+k.String(), func(t *testing.T) {
				var fs []*fakeBackend
				for i, st := range tc.steps {
					f := newFake(string(rune('a'+i)), reader)
					f.On[k] = st
					fs = append(fs, f)
				}
				h := open(t, &Engine{Slots: slots(fs...)}, allOffer)
				h.Connect()
				h.Helo()
				r := h.Mail()
				if k == KindRcpt {
					r = h.Rcpt("x@example.net")
				}
				if r.Verdict != tc.want || r.From != tc.from || r.Text != tc.text {
					t.Errorf("got %v from %q text %q, want %v from %q text %q", r.Verdict, r.From, r.Text,
						tc.want, tc.from, tc.text)
				}
			})
		}
	}
}

func TestRcptRejectKeepsEveryBackend(t *testing.T) {
	a, b, c := newFake("a", reader), newFake("b", reader), newFake("c", reader)
	a.Seq[KindRcpt] = []step{{Verdict: Reject, Text: "550 5.1.1 unknown user"}}
	b.Seq[KindRcpt] = []step{{}, {Verdict: Tempfail}}
	h := open(t, &Engine{Slots: slots(a, b, c)}, allOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	if r := h.Rcpt("one@example.net"); r.Verdict != Reject || r.Text != "550 5.1.1 unknown user" || r.From != "a" {
		t.Errorf("rcpt 1 = %+v", r)
	}
	if r := h.Rcpt("two@example.net"); r.Verdict != Tempfail || r.From != "b" {
		t.Errorf("rcpt 2 = %+v", r)
	}
	if r := h.Rcpt("three@example.net"); r.Verdict != Continue {
		t.Errorf("rcpt 3 = %+v", r)
	}
	if r := h.Data(); r.Verdict != Continue {
		t.Errorf("data = %+v", r)
	}
	want := "connect helo mail rcpt rcpt rcpt data"
	for _, f := range []*fakeBackend{a, b, c} {
		if got := f.KindsString(); got != want {
			t.Errorf("%s got %q, want %q", f.Name(), got, want)
		}
	}
}

func TestAcceptWithinMessage(t *testing.T) {
	a, b := newFake("a", reader), newFake("b", reader)
	a.Seq[KindRcpt] = []step{{Verdict: Accept}}
	h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	if r := h.Rcpt("one@example.net"); r.Verdict != Continue {
		t.Errorf("rcpt 1 = %v, want continue (b is not done)", r.Verdict)
	}
	h.Rcpt("two@example.net")
	h.Data()
	if r := h.Message([]string{"Subject", " s"}, "body"); r.Verdict != Continue {
		t.Errorf("eom = %+v", r)
	}
	if got, want := a.KindsString(), "connect helo mail rcpt"; got != want {
		t.Errorf("a got %q, want %q: no events after ACCEPT for the message", got, want)
	}
	if got, want := b.KindsString(), "connect helo mail rcpt rcpt data header eoh body eom"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	// The next message goes to a again.
	h.Abort()
	h.Mail()
	h.Rcpt("three@example.net")
	if got, want := a.KindsString(), "connect helo mail rcpt abort mail rcpt"; got != want {
		t.Errorf("a got %q, want %q", got, want)
	}
}

func TestAcceptAtConnect(t *testing.T) {
	for _, at := range []Kind{KindConnect, KindHelo} {
		t.Run(at.String(), func(t *testing.T) {
			a, b := newFake("a", editor), newFake("b", editor)
			a.On[at] = step{Verdict: Accept}
			h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
			h.Connect()
			h.Helo()
			h.Helo()
			h.Mail()
			h.Rcpt("x@example.net")
			h.Abort()
			h.Mail()
			h.Rcpt("x@example.net")
			h.Data()
			h.Message([]string{"Subject", " s"}, "body")
			h.Abort()
			h.Do(&Event{Kind: KindUnknown, Arg: "FOO"})
			want := "connect"
			if at == KindHelo {
				want = "connect helo"
			}
			if got := a.KindsString(); got != want {
				t.Errorf("a got %q, want %q: done for the connection", got, want)
			}
			if len(b.Events()) < 10 {
				t.Errorf("b got %q", b.KindsString())
			}
			h.Do(&Event{Kind: KindQuit})
			if a.Closes() != 1 {
				t.Errorf("a closed %d times", a.Closes())
			}
		})
	}
}

func TestUpstreamAccept(t *testing.T) {
	t.Run("all accept at rcpt", func(t *testing.T) {
		a, b := newFake("a", reader), newFake("b", reader)
		a.On[KindRcpt] = step{Verdict: Accept}
		b.On[KindRcpt] = step{Verdict: Accept}
		h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
		h.Connect()
		h.Helo()
		h.Mail()
		if r := h.Rcpt("x@example.net"); r.Verdict != Accept {
			t.Errorf("rcpt = %v, want accept", r.Verdict)
		}
		// A new message: not done any more.
		h.Abort()
		a.On[KindRcpt] = step{}
		if r := h.Mail(); r.Verdict != Continue {
			t.Errorf("mail = %v", r.Verdict)
		}
	})
	t.Run("accepts at different stages", func(t *testing.T) {
		a, b := newFake("a", reader), newFake("b", reader)
		a.On[KindMail] = step{Verdict: Accept}
		b.On[KindRcpt] = step{Verdict: Accept}
		h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
		h.Connect()
		h.Helo()
		if r := h.Mail(); r.Verdict != Continue {
			t.Errorf("mail = %v", r.Verdict)
		}
		if r := h.Rcpt("x@example.net"); r.Verdict != Accept {
			t.Errorf("rcpt = %v, want accept", r.Verdict)
		}
	})
	t.Run("all accept at connect", func(t *testing.T) {
		a, b := newFake("a", reader), newFake("b", reader)
		a.On[KindConnect] = step{Verdict: Accept}
		b.On[KindConnect] = step{Verdict: Accept}
		h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
		if r := h.Connect(); r.Verdict != Accept {
			t.Errorf("connect = %v, want accept", r.Verdict)
		}
		if r := h.Mail(); r.Verdict != Accept {
			t.Errorf("mail = %v, want accept", r.Verdict)
		}
	})
	t.Run("dead backend objects", func(t *testing.T) {
		a, b, c := newFake("a", reader), newFake("b", reader), newFake("c", reader)
		a.On[KindRcpt] = step{Verdict: Accept}
		b.On[KindRcpt] = step{Verdict: Accept}
		c.On[KindMail] = step{Err: errors.New("broken pipe")}
		e := &Engine{Slots: []Slot{{Backend: a}, {Backend: b}, {Backend: c, Policy: Policy{OnFailure: FailTempfail}}}}
		h := open(t, e, allOffer)
		h.Connect()
		h.Helo()
		if r := h.Mail(); r.Verdict != Tempfail {
			t.Errorf("mail = %v", r.Verdict)
		}
		if r := h.Rcpt("x@example.net"); r.Verdict != Tempfail {
			t.Errorf("rcpt = %v, want tempfail: c's failure is sticky", r.Verdict)
		}
	})
	t.Run("dead backend with accept action", func(t *testing.T) {
		a, c := newFake("a", reader), newFake("c", reader)
		a.On[KindRcpt] = step{Verdict: Accept}
		c.On[KindMail] = step{Err: errors.New("broken pipe")}
		e := &Engine{Slots: []Slot{{Backend: a}, {Backend: c, Policy: Policy{OnFailure: FailAccept}}}}
		h := open(t, e, allOffer)
		h.Connect()
		h.Helo()
		if r := h.Mail(); r.Verdict != Continue {
			t.Errorf("mail = %v", r.Verdict)
		}
		if r := h.Rcpt("x@example.net"); r.Verdict != Accept {
			t.Errorf("rcpt = %v, want accept", r.Verdict)
		}
	})
}

// DISCARD at CONNECT or HELO has no message to discard: Postfix logs a
// warning and goes on as if the milter had said continue (measured:
// TestEngineDiscardAtConnect); so does the engine, with one log line. It
// is no discard of every message of the connection.
func TestDiscardAtConnect(t *testing.T) {
	for _, at := range []Kind{KindConnect, KindHelo} {
		t.Run(at.String(), func(t *testing.T) {
			a, b := newFake("a", reader), newFake("b", reader)
			a.On[at] = step{Verdict: Discard}
			e := &Engine{Slots: []Slot{{Backend: a}, {Backend: b}}}
			h := open(t, e, allOffer)
			for _, r := range []Reply{h.Connect(), h.Helo(), h.Mail(), h.Rcpt("x@example.net")} {
				if r.Verdict != Continue {
					t.Errorf("reply %+v, want continue", r)
				}
			}
			h.Data()
			if r := h.Message(origHeaders, "x"); r.Verdict != Continue {
				t.Errorf("eom = %+v, want continue (no discard of the message)", r)
			}
			if got := a.Kinds(); !slices.Contains(got, "eom") {
				t.Errorf("a got %q: it stays in the session", got)
			}
			if n := strings.Count(h.Log.String(), "DISCARD at connect or helo"); n != 1 ||
				!strings.Contains(h.Log.String(), "stage="+at.String()) || strings.Contains(h.Log.String(), "backend failed") {
				t.Errorf("want one warning at %s:\n%s", at, h.Log)
			}
		})
	}
}

func TestSkip(t *testing.T) {
	a := newFake("a", Caps{Skip: true})
	b := newFake("b", Caps{Skip: false}) // did not negotiate SKIP: ignored
	c := newFake("c", Caps{Skip: true})
	a.Seq[KindRcpt] = []step{{Verdict: Skip}}
	b.Seq[KindRcpt] = []step{{Verdict: Skip}}
	h := open(t, &Engine{Slots: slots(a, b, c)}, allOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	if r := h.Rcpt("one@example.net"); r.Verdict != Continue {
		t.Errorf("rcpt = %v", r.Verdict)
	}
	h.Rcpt("two@example.net")
	h.Rcpt("three@example.net")
	h.Data()
	if got, want := a.KindsString(), "connect helo mail rcpt data"; got != want {
		t.Errorf("a got %q, want %q", got, want)
	}
	if got, want := b.KindsString(), "connect helo mail rcpt rcpt rcpt data"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	// Body: upstream SKIP only when everyone who still gets BODY skipped.
	a.On[KindBody] = step{Verdict: Skip}
	c.Seq[KindBody] = []step{{}, {Verdict: Skip}}
	b.On[KindBody] = step{Verdict: Accept}
	h.Header("Subject", " s")
	h.EOH()
	if r := h.Body("1"); r.Verdict != Continue {
		t.Errorf("body 1 = %v, want continue (c did not skip)", r.Verdict)
	}
	if r := h.Body("2"); r.Verdict != Skip {
		t.Errorf("body 2 = %v, want skip", r.Verdict)
	}
	h.EOM()
	if got, want := a.Body(), "1"; got != want {
		t.Errorf("a got body %q, want %q", got, want)
	}
	if got := a.Kinds(); got[len(got)-1] != "eom" {
		t.Errorf("a got %q: EOM goes out after a skip", got)
	}
}

func TestSkipNotOfferedUpstream(t *testing.T) {
	a := newFake("a", Caps{Skip: true})
	a.On[KindBody] = step{Verdict: Skip}
	offer := allOffer
	offer.Skip = false
	h := open(t, &Engine{Slots: slots(a)}, offer)
	h.EnvelopeToData()
	h.EOH()
	if r := h.Body("x"); r.Verdict != Continue {
		t.Errorf("body = %v: the MTA does not understand skip", r.Verdict)
	}
}

func TestRejectedRcpt(t *testing.T) {
	a := newFake("a", Caps{RejectedRcpts: true})
	b := newFake("b", Caps{})
	h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	h.Do(&Event{Kind: KindRcpt, Args: []string{"<bad@example.net>"}, RejectedRcpt: true})
	h.Rcpt("good@example.net")
	if got, want := a.KindsString(), "connect helo mail rcpt(rej) rcpt"; got != want {
		t.Errorf("a got %q, want %q", got, want)
	}
	if got, want := b.KindsString(), "connect helo mail rcpt"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
}

func TestBackendFailure(t *testing.T) {
	for _, tc := range []struct {
		act  FailAction
		want Verdict
	}{
		{FailTempfail, Tempfail},
		{FailReject, Reject},
		{FailDiscard, Discard},
		{FailAccept, Continue},
	} {
		t.Run(tc.act.String(), func(t *testing.T) {
			a, b := newFake("a", reader), newFake("b", reader)
			b.Seq[KindRcpt] = []step{{Err: errors.New("read: connection reset")}}
			e := &Engine{Slots: []Slot{{Backend: a}, {Backend: b, Policy: Policy{OnFailure: tc.act}}}}
			h := open(t, e, allOffer)
			h.Connect()
			h.Helo()
			h.Mail()
			r := h.Rcpt("one@example.net")
			if r.Verdict != tc.want {
				t.Errorf("rcpt 1 = %v, want %v", r.Verdict, tc.want)
			}
			if tc.want.Objects() && r.From != "b" {
				t.Errorf("From = %q", r.From)
			}
			for _, r := range []Reply{h.Rcpt("two@example.net"), h.Data()} {
				if r.Verdict != tc.want {
					t.Errorf("later = %v, want %v (sticky)", r.Verdict, tc.want)
				}
			}
			h.Abort()
			if r := h.Mail(); r.Verdict != tc.want {
				t.Errorf("next message mail = %v, want %v (sticky for the session)", r.Verdict, tc.want)
			}
			if got, want := b.KindsString(), "connect helo mail rcpt"; got != want {
				t.Errorf("b got %q, want %q", got, want)
			}
			waitFor(t, func() bool { return b.Closes() == 1 }, "failed backend closed")
			log := h.Log.String()
			if !strings.Contains(log, "backend failed, dropped from session") || !strings.Contains(log, "connection reset") ||
				!strings.Contains(log, "action="+tc.act.String()) {
				t.Errorf("log:\n%s", log)
			}
			h.Do(&Event{Kind: KindQuit})
			if b.Closes() != 1 {
				t.Errorf("b closed %d times", b.Closes())
			}
		})
	}
}

func TestEvaluateMode(t *testing.T) {
	shadow := newFake("shadow", editor)
	shadow.On[KindRcpt] = step{Verdict: Reject, Text: "550 5.7.1 shadow says no"}
	shadow.On[KindEOM] = step{Verdict: Discard, Edits: []Edit{{Kind: EditAddHeader, Name: "X-Shadow", Value: " 1"}}}
	real := newFake("real", reader)
	e := &Engine{Slots: []Slot{{Backend: shadow, Policy: Policy{Evaluate: true, OnFailure: FailReject}}, {Backend: real}}}
	h := open(t, e, allOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	if r := h.Rcpt("x@example.net"); r.Verdict != Continue {
		t.Errorf("rcpt = %+v, want continue", r)
	}
	h.Data()
	if r := h.Message([]string{"Subject", " s"}, "b"); r.Verdict != Continue || len(r.Edits) != 0 {
		t.Errorf("eom = %+v, want continue without edits", r)
	}
	log := h.Log.String()
	for _, want := range []string{
		`msg="evaluation: backend would have answered" backend=shadow stage=rcpt verdict=reject text="550 5.7.1 shadow says no"`,
		`msg="evaluation: backend would have answered" backend=shadow stage=eom verdict=discard`,
		`msg="evaluation: backend would have edited" backend=shadow edit=add_header name=X-Shadow`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	// A shadow backend's failure has no effect either.
	h.Abort()
	shadow.On[KindMail] = step{Err: errors.New("timeout")}
	if r := h.Mail(); r.Verdict != Continue {
		t.Errorf("mail = %+v after the shadow backend failed", r)
	}
	if r := h.Rcpt("y@example.net"); r.Verdict != Continue {
		t.Errorf("rcpt = %+v after the shadow backend failed", r)
	}
	if !strings.Contains(h.Log.String(), "evaluation mode: no effect") {
		t.Errorf("log:\n%s", h.Log)
	}
}

// ---- Content, serial mode ----

var origHeaders = []string{"From", " a@example.org", "Subject", " hello", "X-Old", " 1", "To", " b@example.net"}

func TestSerialReplayHeaders(t *testing.T) {
	a := newFake("a", editor) // first modifier: live
	r := newFake("r", reader) // read-only: live
	b := newFake("b", editor) // replay
	c := newFake("c", editor) // replay
	aEdits := []Edit{
		{Kind: EditAddHeader, Name: "X-Added", Value: " yes"},
		{Kind: EditInsertHeader, Index: 1, Name: "X-Ins1", Value: " one"},
		{Kind: EditInsertHeader, Index: 0, Name: "X-Ins0", Value: " zero"},
		{Kind: EditChangeHeader, Index: 1, Name: "subject", Value: " changed"},
		{Kind: EditChangeHeader, Index: 1, Name: "X-Old", Value: ""},
	}
	bEdits := []Edit{
		{Kind: EditChangeHeader, Index: 1, Name: "X-Ins1", Value: " by b"},
		{Kind: EditAddRcpt, Addr: "<c@example.net>"},
	}
	a.On[KindEOM] = step{Edits: aEdits}
	b.On[KindEOM] = step{Edits: bEdits}
	h := open(t, &Engine{Slots: slots(a, r, b, c), ReadOnlyLive: true}, allOffer)
	h.EnvelopeToData()
	for i := 0; i < len(origHeaders); i += 2 {
		h.Header(origHeaders[i], origHeaders[i+1])
	}
	h.EOH()
	h.Body("line 1\r\n")
	h.Body("line 2\r\n")
	live := []string{"From: a@example.org", "Subject: hello", "X-Old: 1", "To: b@example.net"}
	for _, f := range []*fakeBackend{a, r} {
		if got := f.Headers(); !slices.Equal(got, live) {
			t.Errorf("%s got headers %q live", f.Name(), got)
		}
		if got, want := f.KindsString(), "connect helo mail rcpt data header header header header eoh body body"; got != want {
			t.Errorf("%s got %q, want %q", f.Name(), got, want)
		}
	}
	for _, f := range []*fakeBackend{b, c} {
		if got, want := f.KindsString(), "connect helo mail rcpt data"; got != want {
			t.Errorf("%s got %q before EOM, want %q", f.Name(), got, want)
		}
	}
	rep := h.EOM()
	if rep.Verdict != Continue {
		t.Fatalf("eom = %+v", rep)
	}
	// A change takes the edit's name ("subject"), as Postfix does.
	bView := []string{"X-Ins0: zero", "X-Ins1: one", "From: a@example.org", "subject: changed", "To: b@example.net", "X-Added: yes"}
	if got := b.Headers(); !slices.Equal(got, bView) {
		t.Errorf("b saw\n %q\nwant\n %q", got, bView)
	}
	cView := []string{"X-Ins0: zero", "X-Ins1: by b", "From: a@example.org", "subject: changed", "To: b@example.net", "X-Added: yes"}
	if got := c.Headers(); !slices.Equal(got, cView) {
		t.Errorf("c saw\n %q\nwant\n %q", got, cView)
	}
	for _, f := range []*fakeBackend{b, c} {
		if got, want := f.Body(), "line 1\r\nline 2\r\n"; got != want {
			t.Errorf("%s got body %q, want %q", f.Name(), got, want)
		}
		if got, want := f.KindsString(), "connect helo mail rcpt data header header header header header header eoh body body eom"; got != want {
			t.Errorf("%s got %q, want %q", f.Name(), got, want)
		}
	}
	if want := append(slices.Clone(aEdits), bEdits...); !reflect.DeepEqual(rep.Edits, want) {
		t.Errorf("edits\n %+v\nwant\n %+v", rep.Edits, want)
	}

	// The next message starts from a clean model.
	a.On[KindEOM] = step{}
	b.On[KindEOM] = step{}
	b.Reset()
	h.Abort()
	h.Mail()
	h.Rcpt("x@example.net")
	h.Data()
	if rep := h.Message([]string{"Subject", " two"}, "x"); len(rep.Edits) != 0 {
		t.Errorf("second message edits %+v", rep.Edits)
	}
	if got := b.Headers(); !slices.Equal(got, []string{"Subject: two"}) {
		t.Errorf("b saw %q in the second message", got)
	}
}

func TestSerialReplayBody(t *testing.T) {
	a, b, c := newFake("a", editor), newFake("b", editor), newFake("c", editor)
	a.On[KindEOM] = step{Edits: []Edit{{Kind: EditReplaceBody, Body: []byte("from a\r\n")}}}
	b.On[KindEOM] = step{Edits: []Edit{{Kind: EditReplaceBody, Body: []byte("from b\r\n")}}}
	h := open(t, &Engine{Slots: slots(a, b, c)}, allOffer)
	h.EnvelopeToData()
	rep := h.Message(origHeaders, "original\r\n")
	if got := b.Body(); got != "from a\r\n" {
		t.Errorf("b got body %q, want a's replacement", got)
	}
	if got := c.Body(); got != "from b\r\n" {
		t.Errorf("c got body %q, want b's replacement", got)
	}
	if len(rep.Edits) != 1 || rep.Edits[0].Kind != EditReplaceBody || string(rep.Edits[0].Body) != "from b\r\n" {
		t.Errorf("edits = %+v, want one body replacement (b's)", rep.Edits)
	}
}

// A big replaced body is replayed whole (as one chunk: a backend with a
// chunk limit re-chunks; see backends/milter TestBodyRechunked).
func TestSerialReplayBigBody(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	big := strings.Repeat("0123456789abcde\n", 10000) // 160000 bytes
	a.On[KindEOM] = step{Edits: []Edit{{Kind: EditReplaceBody, Body: []byte(big)}}}
	h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
	h.EnvelopeToData()
	h.Message(origHeaders, "small")
	// Replayed with the MTA's CRLF line ends (see TestReplayBodyCRLF).
	if want := strings.ReplaceAll(big, "\n", "\r\n"); b.Body() != want {
		t.Errorf("b got %d bytes of body, want %d", len(b.Body()), len(want))
	}
}

func TestSerialEditOrder(t *testing.T) {
	a, r, b := newFake("a", editor), newFake("r", Caps{Actions: ActQuarantine}), newFake("b", editor)
	a.On[KindEOM] = step{Edits: []Edit{
		{Kind: EditReplaceBody, Body: []byte("A")},
		{Kind: EditAddHeader, Name: "H1", Value: " 1"},
		{Kind: EditQuarantine, Value: "qa"},
		{Kind: EditAddRcpt, Addr: "<r1@example.net>"},
	}}
	r.On[KindEOM] = step{Edits: []Edit{{Kind: EditQuarantine, Value: "qr"}}}
	b.On[KindEOM] = step{Edits: []Edit{
		{Kind: EditChangeFrom, Addr: "<new@example.org>", Args: "RET=HDRS", HasArgs: true},
		{Kind: EditReplaceBody, Body: []byte("B")},
		{Kind: EditQuarantine, Value: "qb"},
		{Kind: EditInsertHeader, Index: 1, Name: "H2", Value: " 2"},
		{Kind: EditDelRcpt, Addr: "<r0@example.net>"},
	}}
	h := open(t, &Engine{Slots: slots(a, r, b)}, allOffer)
	h.EnvelopeToData()
	rep := h.Message(origHeaders, "body")
	var got []string
	for _, e := range rep.Edits {
		got = append(got, e.Kind.String()+":"+e.Name+e.Addr+e.Value+string(e.Body))
	}
	want := []string{
		"add_header:H1 1", "add_rcpt:<r1@example.net>",
		"change_from:<new@example.org>", "insert_header:H2 2", "del_rcpt:<r0@example.net>",
		"quarantine:qa", "replace_body:B",
	}
	if !slices.Equal(got, want) {
		t.Errorf("edits\n %q\nwant\n %q", got, want)
	}
	if r.Kinds()[5] != "header" {
		t.Errorf("the quarantine-only backend is read-only and gets content live: %q", r.Kinds())
	}
}

func TestSerialReplayReject(t *testing.T) {
	for _, at := range []Kind{KindHeader, KindEOH, KindBody, KindEOM} {
		t.Run(at.String(), func(t *testing.T) {
			a, b, c := newFake("a", editor), newFake("b", editor), newFake("c", editor)
			a.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-A", Value: " 1"}}}
			b.On[at] = step{Verdict: Reject, Text: "550 5.7.0 b rejects"}
			h := open(t, &Engine{Slots: slots(a, b, c)}, allOffer)
			h.EnvelopeToData()
			rep := h.Message(origHeaders, "body")
			if rep.Verdict != Reject || rep.From != "b" || rep.Text != "550 5.7.0 b rejects" || len(rep.Edits) != 0 {
				t.Errorf("eom = %+v, want b's reject and no edits", rep)
			}
			if got, want := c.KindsString(), "connect helo mail rcpt data"; got != want {
				t.Errorf("c got %q, want %q: the message ended", got, want)
			}
			if got := b.Kinds(); got[len(got)-1] != at.String() {
				t.Errorf("b got %q: the replay goes on after its reject", got)
			}
		})
	}
}

func TestSerialReplayAccept(t *testing.T) {
	a, b, c := newFake("a", editor), newFake("b", editor), newFake("c", editor)
	b.On[KindHeader] = step{Verdict: Accept}
	c.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-C", Value: " 1"}}}
	h := open(t, &Engine{Slots: slots(a, b, c)}, allOffer)
	h.EnvelopeToData()
	rep := h.Message(origHeaders, "body")
	if rep.Verdict != Continue || len(rep.Edits) != 1 {
		t.Errorf("eom = %+v", rep)
	}
	if got, want := b.KindsString(), "connect helo mail rcpt data header"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	if c.Body() != "body" {
		t.Errorf("c got body %q", c.Body())
	}
}

// A replay backend that accepted at CONNECT is done for the connection:
// it gets no replay either.
func TestSerialReplayDoneForConnection(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	b.On[KindConnect] = step{Verdict: Accept}
	h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
	h.EnvelopeToData()
	h.Message(origHeaders, "body")
	if got, want := b.KindsString(), "connect"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
}

func TestUnnegotiatedEdit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		replay bool
		act    FailAction
		want   Verdict
	}{
		{"live/tempfail", false, FailTempfail, Tempfail},
		{"live/accept", false, FailAccept, Continue},
		{"replay/reject", true, FailReject, Reject},
		{"replay/accept", true, FailAccept, Continue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newFake("a", editor)
			a.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-A", Value: " 1"}}}
			bad := newFake("bad", Caps{Actions: ActAddHeaders})
			if !tc.replay {
				bad.Caps = Caps{} // read-only, live
			}
			bad.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-Ok", Value: " 1"}, {Kind: EditDelRcpt, Addr: "<b@example.net>"}}}
			e := &Engine{Slots: []Slot{{Backend: a}, {Backend: bad, Policy: Policy{OnFailure: tc.act}}}}
			h := open(t, e, allOffer)
			h.EnvelopeToData()
			rep := h.Message(origHeaders, "body")
			if rep.Verdict != tc.want {
				t.Errorf("eom = %+v, want %v", rep, tc.want)
			}
			if tc.want.Objects() {
				if rep.From != "bad" || len(rep.Edits) != 0 {
					t.Errorf("eom = %+v", rep)
				}
			} else if len(rep.Edits) != 1 || rep.Edits[0].Name != "X-A" {
				t.Errorf("edits = %+v, want only a's", rep.Edits)
			}
			if !strings.Contains(h.Log.String(), "protocol violation") {
				t.Errorf("log:\n%s", h.Log)
			}
			waitFor(t, func() bool { return bad.Closes() == 1 }, "bad backend closed")
			h.Abort()
			h.Mail()
			if n := len(bad.Events()); bad.Kinds()[n-1] == "mail" {
				t.Error("the failed backend still gets events")
			}
		})
	}
}

// Edits the MTA cannot carry out are not the backend's to make, even if
// the backend claims the action.
func TestEditNotOffered(t *testing.T) {
	a := newFake("a", Caps{Actions: ActAddHeaders | ActChangeFrom})
	a.On[KindEOM] = step{Edits: []Edit{{Kind: EditChangeFrom, Addr: "<x@example.org>"}}}
	offer := allOffer
	offer.Actions = ActAddHeaders
	h := open(t, &Engine{Slots: []Slot{{Backend: a, Policy: Policy{OnFailure: FailAccept}}}}, offer)
	h.EnvelopeToData()
	rep := h.Message(origHeaders, "body")
	for _, e := range rep.Edits {
		if e.Kind == EditChangeFrom {
			t.Errorf("edit %v passed on though the MTA did not offer it", e.Kind)
		}
	}
}

// The front end may reuse its buffer once Handle returns: the engine keeps
// its own copy of the body for the replay.
func TestReplayBodyNotAliased(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
	h.EnvelopeToData()
	h.EOH()
	buf := []byte("first chunk\r\n")
	h.Do(&Event{Kind: KindBody, Chunk: buf})
	copy(buf, "XXXXXXXXXXXXX")
	h.Do(&Event{Kind: KindBody, Chunk: buf[:6]})
	h.EOM()
	if got, want := b.Body(), "first chunk\r\nXXXXXX"; got != want {
		t.Errorf("b got body %q, want %q", got, want)
	}
}

func TestContentRejectEndsMessage(t *testing.T) {
	a, r := newFake("a", editor), newFake("r", reader)
	r.Seq[KindHeader] = []step{{}, {Verdict: Reject, Text: "550 bad header"}}
	h := open(t, &Engine{Slots: slots(a, r), ReadOnlyLive: true}, allOffer)
	h.EnvelopeToData()
	h.Header("A", " 1")
	if rep := h.Header("B", " 2"); rep.Verdict != Reject || rep.Text != "550 bad header" {
		t.Errorf("header = %+v", rep)
	}
	h.Header("C", " 3")
	h.EOH()
	if rep := h.EOM(); rep.Verdict != Reject || rep.From != "r" {
		t.Errorf("eom = %+v", rep)
	}
	if got, want := a.KindsString(), "connect helo mail rcpt data header header"; got != want {
		t.Errorf("a got %q, want %q", got, want)
	}
}

// ---- Content, parallel mode ----

func TestParallelEveryoneSeesOriginal(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	a.On[KindEOM] = step{Edits: []Edit{{Kind: EditChangeHeader, Index: 1, Name: "Subject", Value: " a"},
		{Kind: EditReplaceBody, Body: []byte("A")}}}
	b.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-B", Value: " b"}}}
	h := open(t, &Engine{Parallel: true, Slots: slots(a, b)}, allOffer)
	h.EnvelopeToData()
	rep := h.Message(origHeaders, "original")
	want := []string{"From: a@example.org", "Subject: hello", "X-Old: 1", "To: b@example.net"}
	for _, f := range []*fakeBackend{a, b} {
		if !slices.Equal(f.Headers(), want) || f.Body() != "original" {
			t.Errorf("%s saw %q / %q", f.Name(), f.Headers(), f.Body())
		}
	}
	var got []string
	for _, e := range rep.Edits {
		got = append(got, e.Kind.String()+":"+e.Name)
	}
	if !slices.Equal(got, []string{"change_header:Subject", "add_header:X-B", "replace_body:"}) {
		t.Errorf("edits %q", got)
	}
}

func TestParallelDeleteThenChange(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	a.On[KindEOM] = step{Edits: []Edit{{Kind: EditChangeHeader, Index: 1, Name: "Subject"}}}
	b.On[KindEOM] = step{Edits: []Edit{{Kind: EditChangeHeader, Index: 1, Name: "Subject", Value: " b"},
		{Kind: EditAddHeader, Name: "X-B", Value: " b"}}}
	h := open(t, &Engine{Parallel: true, Slots: slots(a, b)}, allOffer)
	h.EnvelopeToData()
	rep := h.Message(origHeaders, "x")
	want := []Edit{{Kind: EditChangeHeader, Index: 1, Name: "Subject"}, {Kind: EditAddHeader, Name: "X-B", Value: " b"}}
	if !reflect.DeepEqual(rep.Edits, want) {
		t.Errorf("edits %+v, want %+v", rep.Edits, want)
	}
	if log := h.Log.String(); !strings.Contains(log, "header edit dropped") || !strings.Contains(log, "backend=b") {
		t.Errorf("log:\n%s", log)
	}
}

func TestParallelIndexTranslated(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	a.On[KindEOM] = step{Edits: []Edit{{Kind: EditInsertHeader, Index: 1, Name: "X", Value: " new"}}}
	b.On[KindEOM] = step{Edits: []Edit{
		{Kind: EditChangeHeader, Index: 2, Name: "X", Value: " b"},
		{Kind: EditInsertHeader, Index: 2, Name: "Y", Value: " y"},
	}}
	h := open(t, &Engine{Parallel: true, Slots: slots(a, b)}, allOffer)
	h.EnvelopeToData()
	rep := h.Message([]string{"X", " 1", "Subject", " s", "X", " 2"}, "x")
	want := []Edit{
		{Kind: EditInsertHeader, Index: 1, Name: "X", Value: " new"},
		{Kind: EditChangeHeader, Index: 3, Name: "X", Value: " b"},
		{Kind: EditInsertHeader, Index: 3, Name: "Y", Value: " y"},
	}
	if !reflect.DeepEqual(rep.Edits, want) {
		t.Errorf("edits\n %+v\nwant\n %+v", rep.Edits, want)
	}
}

// With one header editor in parallel mode nothing needs translating, and
// the engine may not even have the headers (nobody asked for them).
func TestParallelSingleEditorUntranslated(t *testing.T) {
	a := newFake("a", Caps{Actions: ActAddHeaders | ActChangeHeaders, NoEvent: Kinds(KindHeader, KindEOH, KindBody)})
	r := newFake("r", Caps{NoEvent: Kinds(KindHeader, KindEOH, KindBody)})
	edits := []Edit{
		{Kind: EditInsertHeader, Index: 5, Name: "X-Ins", Value: " i"},
		{Kind: EditChangeHeader, Index: 2, Name: "Subject", Value: " second"},
	}
	a.On[KindEOM] = step{Edits: edits}
	h := open(t, &Engine{Parallel: true, Slots: slots(a, r)}, allOffer)
	if !h.Neg.NoEvent.Has(KindHeader) {
		t.Fatalf("NoEvent = %#x: headers should not be asked for", h.Neg.NoEvent)
	}
	h.EnvelopeToData()
	rep := h.EOM()
	if !reflect.DeepEqual(rep.Edits, edits) {
		t.Errorf("edits\n %+v\nwant\n %+v", rep.Edits, edits)
	}
}

func TestParallelNoReplay(t *testing.T) {
	a, b := newFake("a", editor), newFake("b", editor)
	h := open(t, &Engine{Parallel: true, Slots: slots(a, b)}, allOffer)
	if h.Neg.NoEvent.Has(KindHeader) {
		t.Error("two header editors in parallel: the engine needs the headers")
	}
	h.EnvelopeToData()
	h.Message(origHeaders, "x")
	if got, want := b.KindsString(), "connect helo mail rcpt data header header header header eoh body eom"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
}

// ---- ABORT, QUIT, QUIT_NC ----

func TestAbort(t *testing.T) {
	a, b, c, dead := newFake("a", reader), newFake("b", Caps{Skip: true}), newFake("c", reader), newFake("dead", reader)
	c.On[KindConnect] = step{Verdict: Accept}
	dead.On[KindRcpt] = step{Err: errors.New("gone")}
	b.On[KindRcpt] = step{Verdict: Skip}
	a.On[KindRcpt] = step{Verdict: Accept}
	e := &Engine{Slots: []Slot{{Backend: a}, {Backend: b}, {Backend: c}, {Backend: dead, Policy: Policy{OnFailure: FailAccept}}}}
	h := open(t, e, allOffer)
	h.Connect()
	h.Helo()
	h.Abort() // not in a message: nobody gets it
	for _, f := range []*fakeBackend{a, b, c, dead} {
		if slices.Contains(f.Kinds(), "abort") {
			t.Errorf("%s got ABORT outside a message", f.Name())
		}
	}
	h.Mail()
	h.Rcpt("x@example.net")
	if !h.S.BackendStates()[0].DoneMsg || h.S.BackendStates()[1].Skip != KindRcpt {
		t.Fatal("setup: a not done or b not skipping")
	}
	h.Abort()
	h.Abort() // a second one goes nowhere
	for i, b := range h.S.BackendStates() {
		if b.Dead {
			continue
		}
		if b.DoneMsg || b.Skip != KindNone || b.InMsg {
			t.Errorf("backend %d after ABORT: done %v skip %v inMsg %v", i, b.DoneMsg, b.Skip, b.InMsg)
		}
	}
	if got, want := a.KindsString(), "connect helo mail rcpt abort"; got != want {
		t.Errorf("a got %q, want %q (ABORT after its ACCEPT)", got, want)
	}
	if got, want := b.KindsString(), "connect helo mail rcpt abort"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	if got, want := c.KindsString(), "connect"; got != want {
		t.Errorf("c got %q, want %q: done for the connection", got, want)
	}
	if got, want := dead.KindsString(), "connect helo mail rcpt"; got != want {
		t.Errorf("dead got %q, want %q", got, want)
	}
	// After the ABORT a and b get the next message.
	a.On[KindRcpt] = step{}
	h.Mail()
	h.Rcpt("y@example.net")
	h.Rcpt("z@example.net")
	if got, want := b.KindsString(), "connect helo mail rcpt abort mail rcpt"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	if got, want := a.KindsString(), "connect helo mail rcpt abort mail rcpt rcpt"; got != want {
		t.Errorf("a got %q, want %q", got, want)
	}
	// After a completed message Postfix sends ABORT: not to a backend that
	// answered the EOM (its message ended there; libmilter ignores it).
	h.Data()
	h.Message(origHeaders, "x")
	h.Abort()
	if got := a.Kinds(); got[len(got)-1] != "eom" {
		t.Errorf("a got %q, want no ABORT after its answered EOM", got)
	}
}

func TestQuit(t *testing.T) {
	a, b, c := newFake("a", reader), newFake("b", reader), newFake("c", reader)
	b.On[KindHelo] = step{Err: errors.New("gone")}
	c.OpenErr = errors.New("refused")
	e := &Engine{Slots: []Slot{{Backend: a}, {Backend: b, Policy: Policy{OnFailure: FailAccept}}, {Backend: c, Policy: Policy{OnFailure: FailAccept}}}}
	h := open(t, e, allOffer)
	h.Connect()
	h.Helo()
	h.Do(&Event{Kind: KindQuit})
	h.S.Close()
	waitFor(t, func() bool { return a.Closes() == 1 && b.Closes() == 1 }, "sessions closed")
	time.Sleep(10 * time.Millisecond)
	if a.Closes() != 1 || b.Closes() != 1 {
		t.Errorf("closes a=%d b=%d, want 1 each", a.Closes(), b.Closes())
	}
	if len(c.Sessions()) != 0 {
		t.Error("c has a session")
	}
}

// QUIT_NC goes only to a v6 backend whose last command was an EOM it
// answered with continue; every other backend is closed and opened again
// at the next CONNECT, failed ones included, and no state (ACCEPT, failure
// vote) survives into the new SMTP session.
func TestQuitNC(t *testing.T) {
	v6 := Caps{Skip: true, QuitNC: true}
	eomOK := newFake("eomOK", v6)     // answers EOM continue: keeps its session
	acc := newFake("acc", v6)         // accepts at RCPT: closed, reopened
	old := newFake("old", reader)     // v5, EOM continue: cannot take QUIT_NC
	dead := newFake("dead", v6)       // fails, tempfail: reopened, vote gone
	connAcc := newFake("connAcc", v6) // accepts at CONNECT: reopened
	acc.Seq[KindRcpt] = []step{{Verdict: Accept}}
	dead.Seq[KindHelo] = []step{{Err: errors.New("gone")}}
	connAcc.Seq[KindConnect] = []step{{Verdict: Accept}}
	e := &Engine{ReadOnlyLive: true, Slots: slots(eomOK, acc, old, dead, connAcc)}
	h := open(t, e, allOffer)
	h.Connect()
	if r := h.Helo(); r.Verdict != Tempfail {
		t.Fatalf("helo = %v, want dead's tempfail", r.Verdict)
	}
	h.Do(&Event{Kind: KindQuitNC})
	// A message-less session: nobody ended with an answered EOM.
	for _, f := range []*fakeBackend{eomOK, acc, old, dead, connAcc} {
		if slices.Contains(f.Kinds(), "quit_nc") {
			t.Errorf("%s got QUIT_NC after %q", f.Name(), f.Kinds())
		}
	}
	if r := h.Connect(); r.Verdict != Continue {
		t.Fatalf("connect in the second session = %+v (a vote of the first leaked)", r)
	}
	for _, f := range []*fakeBackend{eomOK, acc, old, dead, connAcc} {
		if f.Opens() != 2 || f.Closes() != 1 {
			t.Errorf("%s: %d opens, %d closes, want 2 and 1 (closed at QUIT_NC, reopened at CONNECT)", f.Name(), f.Opens(), f.Closes())
		}
		f.Reset()
	}
	h.Helo()
	h.Mail()
	h.Rcpt("x@example.net")
	h.Data()
	if r := h.Message(origHeaders, "body\r\n"); r.Verdict != Continue {
		t.Fatalf("message = %+v", r)
	}
	h.Abort() // Postfix's ABORT after EOM
	h.Do(&Event{Kind: KindQuitNC})
	// The second session's state is its own: dead and connAcc, healthy
	// now, end with an answered EOM too.
	for _, f := range []*fakeBackend{eomOK, dead, connAcc} {
		if got, want := f.KindsString(), "helo mail rcpt data header header header header eoh body eom quit_nc"; got != want {
			t.Errorf("%s got %q, want %q", f.Name(), got, want)
		}
	}
	for _, f := range []*fakeBackend{acc, old} {
		if got := f.Kinds(); slices.Contains(got, "quit_nc") {
			t.Errorf("%s got QUIT_NC after %q", f.Name(), got)
		}
	}
	if got := acc.Kinds(); !slices.Contains(got, "abort") {
		t.Errorf("acc got %q, want the ABORT (accepted at RCPT, the message did not end at EOM for it)", got)
	}
	h.Connect()
	if eomOK.Opens() != 2 || dead.Opens() != 2 || acc.Opens() != 3 || old.Opens() != 3 {
		t.Errorf("opens: eomOK %d dead %d acc %d old %d, want 2 2 3 3", eomOK.Opens(), dead.Opens(), acc.Opens(), old.Opens())
	}
	h.Do(&Event{Kind: KindQuit})
	waitFor(t, func() bool { return eomOK.Closes() == 2 && acc.Closes() == 3 }, "sessions closed")
}

// A backend reopened after QUIT_NC must fit the connection's negotiation
// with the MTA, which is fixed: one that now wants more fails for the
// session with one clear line, its failure action applies.
func TestQuitNCReopenMustFit(t *testing.T) {
	a := newFake("a", Caps{NoEvent: Kinds(KindHelo), NoReply: Kinds(KindConnect)})
	b := newFake("b", Caps{NoEvent: Kinds(KindHelo), NoReply: Kinds(KindConnect)})
	offer := allOffer
	offer.NoReply = Kinds(KindConnect)
	e := &Engine{Slots: []Slot{{Backend: a, Policy: Policy{OnFailure: FailReject}}, {Backend: b}}}
	h := open(t, e, offer)
	h.Connect()
	h.Do(&Event{Kind: KindQuitNC})
	a.Caps = Caps{Actions: ActAddHeaders} // wants HELO and answers CONNECT now, adds headers
	h.Connect()
	if r := h.Helo(); r.Verdict != Reject || r.From != "a" {
		t.Errorf("helo = %+v, want a's failure vote", r)
	}
	log := h.Log.String()
	for _, want := range []string{"did not negotiate", "wants helo events", "answers connect events", "actions 0x1"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestQueueIDInLogs(t *testing.T) {
	a := newFake("a", reader)
	a.On[KindRcpt] = step{Err: errors.New("boom")}
	h := open(t, &Engine{Slots: slots(a)}, allOffer)
	h.Connect()
	h.Helo()
	h.Do(&Event{Kind: KindMail, Args: []string{"<a@example.org>"}, Macros: []MacroSet{{For: KindMail, Pairs: []string{"i", "4XyZ12", "{mail_addr}", "a@example.org"}}}})
	h.Rcpt("x@example.net")
	if !strings.Contains(h.Log.String(), "qid=4XyZ12") {
		t.Errorf("log:\n%s", h.Log)
	}
}

// ---- goroutines ----

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGoroutinesAfterClose(t *testing.T) {
	start := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		a, r, b := newFake("a", editor), newFake("r", reader), newFake("b", editor)
		bad := newFake("bad", reader)
		bad.OpenErr = errors.New("refused")
		broken := newFake("broken", reader)
		broken.On[KindData] = step{Err: errors.New("eof")}
		for _, f := range []*fakeBackend{a, r, b} {
			f.On[KindRcpt] = step{Delay: 5 * time.Millisecond}
			f.On[KindEOM] = step{Delay: 5 * time.Millisecond}
		}
		e := &Engine{Parallel: i == 1, Slots: []Slot{{Backend: a}, {Backend: r}, {Backend: b},
			{Backend: bad, Policy: Policy{OnFailure: FailAccept}}, {Backend: broken, Policy: Policy{OnFailure: FailAccept}}}}
		s := e.NewSession("g", nil)
		h := &harness{T: t, E: e, S: s, Log: &logBuf{}, Ctx: context.Background()}
		s.Open(h.Ctx, allOffer, func() {})
		h.EnvelopeToData()
		h.Message(origHeaders, "body")
		h.Abort()
		h.Do(&Event{Kind: KindQuit})
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > start {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, started with %d:\n%s", runtime.NumGoroutine(), start, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---- benchmark ----

// instant is a backend that answers Continue at once and records nothing.
type instant struct{ name string }

func (b instant) Name() string { return b.name }
func (b instant) Open(context.Context, OpenInfo) (BackendSession, error) {
	return instantSession{}, nil
}

type instantSession struct{}

func (instantSession) Caps() Caps                                    { return Caps{} }
func (instantSession) Handle(context.Context, *Event) (Reply, error) { return Reply{}, nil }
func (instantSession) Post(context.Context, *Event) (bool, error)    { return true, nil }
func (instantSession) Await(context.Context, *Event) (Reply, error)  { return Reply{}, nil }
func (instantSession) Close() error                                  { return nil }

func BenchmarkEnvelope(b *testing.B) {
	benchRcpt(b, &Engine{Slots: []Slot{{Backend: instant{"a"}}, {Backend: instant{"b"}}, {Backend: instant{"c"}}}})
}

// benchRcpt times one RCPT through e after CONNECT, HELO and MAIL.
func benchRcpt(b *testing.B, e *Engine) {
	s := e.NewSession("bench", nil)
	ctx := context.Background()
	s.Open(ctx, allOffer, nil)
	defer s.Close()
	s.Handle(ctx, &Event{Kind: KindConnect, Hostname: "h", Family: '4', Address: "192.0.2.1"})
	s.Handle(ctx, &Event{Kind: KindHelo, Arg: "h"})
	s.Handle(ctx, &Event{Kind: KindMail, Args: []string{"<a@example.org>"}})
	ev := &Event{Kind: KindRcpt, Args: []string{"<b@example.net>"}}
	b.ReportAllocs()
	for b.Loop() {
		if r := s.Handle(ctx, ev); r.Verdict != Continue {
			b.Fatal(r)
		}
	}
}
