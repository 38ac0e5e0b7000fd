package cond_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// connectFrom sends a CONNECT from addr.
func connectFrom(h *pmulttest.Harness, addr string) pmult.Reply {
	return h.Do(&pmult.Event{Kind: pmult.KindConnect, Hostname: "client.example", Family: '4', Port: 2525, Address: addr})
}

// A backend excluded for the whole connection at CONNECT is never opened
// once the engine knows its capabilities (from the first session, which
// opens it as before): no Open, no event, no Close; the negotiation with
// the MTA is the same as when it is opened; the record keeps the skip; a
// session its condition holds for opens it at CONNECT and it gets
// CONNECT and everything after.
func TestExcludedAtConnectNeverOpened(t *testing.T) {
	c := compile(t, "[if]\nclient = [\"192.0.2.0/24\"]\n")
	a := pmulttest.New("a", pmulttest.Reader)
	b := pmulttest.New("b", pmult.Caps{Actions: pmult.ActAddHeaders, Skip: true,
		Macros: map[pmult.Kind][]string{pmult.KindConnect: {"j"}}})
	rec := pmult.NewRecorder(10)
	e := &pmult.Engine{Records: rec, Slots: []pmult.Slot{{Backend: a}, {Backend: b, Policy: pmult.Policy{Condition: c}}}}

	// First session: no caps known, b is opened at Open, as before.
	h1 := pmulttest.Open(t, e, pmulttest.AllOffer)
	if b.Opens() != 1 {
		t.Fatalf("first session: b opened %d times, want 1 (caps unknown)", b.Opens())
	}
	connectFrom(h1, "192.0.2.7")
	h1.S.Close()
	b.Reset()
	opens0, closes0 := b.Opens(), b.Closes()

	for _, addr := range []string{"198.51.100.1", "203.0.113.5"} {
		h := pmulttest.Open(t, e, pmulttest.AllOffer)
		if !reflect.DeepEqual(h.Neg, h1.Neg) {
			t.Errorf("%s: negotiated %+v, want %+v (the remembered caps)", addr, h.Neg, h1.Neg)
		}
		connectFrom(h, addr)
		h.Helo()
		h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"},
			Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"i", "Q-" + addr}}}})
		h.Rcpt("x@example.net")
		h.Data()
		h.Message([]string{"Subject", " x"}, "body\r\n")
		h.S.Close()
		if b.Opens() != opens0 || b.Closes() != closes0 || b.KindsString() != "" {
			t.Errorf("%s: excluded b opened %d, closed %d, got %q; want never opened", addr, b.Opens()-opens0, b.Closes()-closes0, b.KindsString())
		}
		if !strings.Contains(a.KindsString(), "eom") {
			t.Errorf("%s: a got %q", addr, a.KindsString())
		}
		if !strings.Contains(h.Log.String(), "backend not opened: its condition is false for this connection") {
			t.Errorf("%s: no debug line:\n%s", addr, h.Log)
		}
		var why strings.Builder
		if ok, err := rec.WriteWhy(&why, "Q-"+addr); !ok || err != nil {
			t.Fatalf("no record: %v", err)
		}
		if !strings.Contains(why.String(), "condition b at connect: skip") {
			t.Errorf("record lacks the condition policy:\n%s", why.String())
		}
	}

	// A session its condition holds for: opened at CONNECT, which it gets.
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	if b.Opens() != opens0 {
		t.Errorf("b opened at Open, want at CONNECT")
	}
	connectFrom(h, "192.0.2.9")
	h.Helo()
	h.Mail()
	h.Rcpt("x@example.net")
	h.Data()
	h.Message([]string{"Subject", " x"}, "body\r\n")
	if b.Opens() != opens0+1 || b.KindsString() != "connect helo mail rcpt data header eoh body eom" {
		t.Errorf("included b: opened %d, got %q", b.Opens()-opens0, b.KindsString())
	}
}

// A condition that needs HELO is not decided at CONNECT: the backend is
// opened there and gets CONNECT; one that a CONNECT fact already makes
// false (all of client and helo) is not opened.
func TestDeferredHeloCondition(t *testing.T) {
	for _, tc := range []struct {
		cond  string
		opens int
		kinds string
	}{
		{"[if]\nhelo = \"client.example\"\n", 1, "connect helo mail"},
		{"[if]\nall = [{ client = [\"198.51.100.0/24\"] }, { helo = \"client.example\" }]\n", 0, ""},
	} {
		b := pmulttest.New("b", pmulttest.Reader)
		e := engine(pmult.Slot{Backend: b, Policy: pmult.Policy{Condition: compile(t, tc.cond)}})
		h := pmulttest.Open(t, e, pmulttest.AllOffer)
		h.Connect()
		h.S.Close()
		b.Reset()
		opens0 := b.Opens()
		h = pmulttest.Open(t, e, pmulttest.AllOffer)
		h.Connect()
		h.Helo()
		h.Mail()
		if b.Opens()-opens0 != tc.opens || b.KindsString() != tc.kinds {
			t.Errorf("%q: opened %d, got %q; want %d, %q", tc.cond, b.Opens()-opens0, b.KindsString(), tc.opens, tc.kinds)
		}
	}
}

// A backend opened at CONNECT that now asks for more than was negotiated
// with the MTA (from its remembered caps) fails for that session with one
// clear line and its failure action; the next session negotiates its new
// caps.
func TestDeferredOpenMustFit(t *testing.T) {
	c := compile(t, "[if]\nclient = [\"192.0.2.0/24\"]\n")
	b := pmulttest.New("b", pmult.Caps{NoEvent: pmult.Kinds(pmult.KindHelo)})
	e := engine(pmult.Slot{Backend: b, Policy: pmult.Policy{OnFailure: pmult.FailReject, Condition: c}})
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.S.Close()

	b.Caps = pmult.Caps{Actions: pmult.ActAddHeaders} // adds headers and wants HELO now
	h = pmulttest.Open(t, e, pmulttest.AllOffer)
	if h.Neg.Actions&pmult.ActAddHeaders != 0 || !h.Neg.NoEvent.Has(pmult.KindHelo) {
		t.Fatalf("negotiated %+v, want the remembered caps", h.Neg)
	}
	if r := h.Connect(); r.Verdict != pmult.Reject || r.From != "b" {
		t.Errorf("connect = %+v, want b's failure vote", r)
	}
	log := h.Log.String()
	if n := strings.Count(log, "backend failed"); n != 1 {
		t.Errorf("%d failure lines, want 1:\n%s", n, log)
	}
	for _, want := range []string{"did not negotiate", "wants helo events", "actions 0x1", "action=reject"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	h.S.Close()

	h = pmulttest.Open(t, e, pmulttest.AllOffer)
	if h.Neg.Actions&pmult.ActAddHeaders == 0 || h.Neg.NoEvent.Has(pmult.KindHelo) {
		t.Errorf("negotiated %+v, want b's new caps", h.Neg)
	}
	if r := h.Connect(); r.Verdict.Objects() {
		t.Errorf("connect = %+v", r)
	}
}

// A deferred backend that fails to open at CONNECT casts its failure
// vote there: the MTA was asked to read the CONNECT reply.
func TestDeferredOpenFailureVote(t *testing.T) {
	c := compile(t, "[if]\nclient = [\"192.0.2.0/24\"]\n")
	b := pmulttest.New("b", pmult.Caps{NoReply: pmult.Kinds(pmult.KindConnect)})
	e := engine(pmult.Slot{Backend: b, Policy: pmult.Policy{OnFailure: pmult.FailTempfail, Condition: c}})
	offer := pmulttest.AllOffer
	offer.NoReply = pmult.Kinds(pmult.KindConnect)
	h := pmulttest.Open(t, e, offer)
	h.Connect()
	h.S.Close()
	b.OpenErr = errors.New("connection refused")
	h = pmulttest.Open(t, e, offer)
	if h.Neg.NoReply.Has(pmult.KindConnect) {
		t.Errorf("negotiated no reply at CONNECT: a failure at CONNECT could not be told")
	}
	if r := h.Connect(); r.Verdict != pmult.Tempfail {
		t.Errorf("connect = %+v, want b's failure vote", r)
	}
}

// A recipient the merged reply refuses is not one of the message's: a
// backend for its domain leaves a message whose accepted recipients are
// all elsewhere (ABORT, no end of message), though the refused recipient
// came first.
func TestRefusedRecipientNotCounted(t *testing.T) {
	c := compile(t, "[if]\nrcpt_domain = \"example.com\"\n")
	gate := pmulttest.New("gate", pmulttest.Reader)
	gate.Hook = func(ev *pmult.Event) (pmulttest.Step, bool) {
		if ev.Kind == pmult.KindRcpt && strings.Contains(ev.Args[0], "nobody@") {
			return pmulttest.Step{Verdict: pmult.Reject}, true
		}
		return pmulttest.Step{}, false
	}
	b := pmulttest.New("b", pmulttest.Reader)
	h := pmulttest.Open(t, engine(pmult.Slot{Backend: gate}, pmult.Slot{Backend: b, Policy: pmult.Policy{Condition: c}}), pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	h.Mail()
	if r := h.Rcpt("nobody@example.com"); r.Verdict != pmult.Reject {
		t.Fatalf("nobody@example.com: %v", r.Verdict)
	}
	h.Rcpt("a@example.net")
	h.Data()
	h.Message([]string{"Subject", " x"}, "body\r\n")
	if got := b.KindsString(); got != "connect helo mail rcpt rcpt abort" {
		t.Errorf("b got %q, want it to leave at DATA (no example.com recipient accepted)", got)
	}
	// A refused recipient does not undo an accepted one.
	h.Mail()
	h.Rcpt("a@example.com")
	h.Rcpt("nobody@example.com")
	h.Data()
	h.Message([]string{"Subject", " y"}, "body\r\n")
	if got := b.KindsString(); !strings.HasSuffix(got, "mail rcpt rcpt data header eoh body eom") {
		t.Errorf("b got %q, want the second message", got)
	}
}

// The roles negotiated with the MTA stay when a backend before it is not
// opened at CONNECT: a later editor, replayed as negotiated, is opened
// and serves the message (it is not made live, which would need replies
// the MTA was told it need not wait for).
func TestDeferredKeepsNegotiatedRoles(t *testing.T) {
	content := pmult.Kinds(pmult.KindHeader, pmult.KindEOH, pmult.KindBody)
	a := pmulttest.New("a", pmult.Caps{Actions: pmult.ActAddHeaders, NoReply: content})
	b := pmulttest.New("b", pmult.Caps{Actions: pmult.ActAddHeaders})
	b.On = map[pmult.Kind]pmulttest.Step{pmult.KindEOM: {Edits: []pmult.Edit{{Kind: pmult.EditAddHeader, Name: "X-B", Value: " 1"}}}}
	e := engine(
		pmult.Slot{Backend: a, Policy: pmult.Policy{Condition: compile(t, "[if]\nclient = [\"192.0.2.0/24\"]\n")}},
		pmult.Slot{Backend: b, Policy: pmult.Policy{OnFailure: pmult.FailTempfail,
			Condition: compile(t, "[if]\nclient = [\"192.0.2.0/24\", \"198.51.100.0/24\"]\n")}})
	offer := pmulttest.AllOffer
	offer.NoReply = pmult.Kinds(pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindRcpt, pmult.KindData,
		pmult.KindHeader, pmult.KindEOH, pmult.KindBody, pmult.KindUnknown)
	h := pmulttest.Open(t, e, offer)
	connectFrom(h, "192.0.2.1")
	h.S.Close()

	h = pmulttest.Open(t, e, offer)
	if !h.Neg.NoReply.Has(pmult.KindHeader) {
		t.Fatalf("negotiated %+v: want no replies to headers (b is replayed)", h.Neg)
	}
	if r := connectFrom(h, "198.51.100.1"); r.Verdict.Objects() {
		t.Fatalf("connect: %+v\n%s", r, h.Log)
	}
	h.Helo()
	h.Mail()
	h.Rcpt("x@example.net")
	h.Data()
	r := h.Message([]string{"Subject", " x"}, "body\r\n")
	if r.Verdict.Objects() || len(r.Edits) != 1 || r.Edits[0].Name != "X-B" {
		t.Errorf("EOM %+v, want b's header\n%s", r, h.Log)
	}
	if strings.Contains(h.Log.String(), "backend failed") {
		t.Errorf("a failure:\n%s", h.Log)
	}
}

// A backend opened at CONNECT keeps its policies: the open budget
// (open_timeout), a breaker that knows it is down (ErrDown: skipped, its
// failure action), evaluation mode (its verdict logged, not applied).
func TestDeferredOpenKeepsPolicies(t *testing.T) {
	c := compile(t, "[if]\nclient = [\"192.0.2.0/24\"]\n")
	learn := func(e *pmult.Engine) {
		h := pmulttest.Open(t, e, pmulttest.AllOffer)
		connectFrom(h, "192.0.2.1")
		h.S.Close()
	}
	t.Run("open_timeout", func(t *testing.T) {
		b := pmulttest.New("b", pmulttest.Reader)
		e := &pmult.Engine{OpenTimeout: 20 * time.Millisecond, Slots: []pmult.Slot{{Backend: b,
			Policy: pmult.Policy{OnFailure: pmult.FailReject, Condition: c}}}}
		learn(e)
		b.OpenHook = func(ctx context.Context, _ pmult.OpenInfo) error { <-ctx.Done(); return ctx.Err() }
		h := pmulttest.Open(t, e, pmulttest.AllOffer)
		if r := connectFrom(h, "192.0.2.2"); r.Verdict != pmult.Reject || r.From != "b" {
			t.Errorf("connect %+v, want b's failure vote", r)
		}
		if !strings.Contains(h.Log.String(), "not negotiated within open_timeout") {
			t.Errorf("log:\n%s", h.Log)
		}
	})
	t.Run("breaker", func(t *testing.T) {
		b := pmulttest.New("b", pmulttest.Reader)
		e := engine(pmult.Slot{Backend: b, Policy: pmult.Policy{OnFailure: pmult.FailTempfail, Condition: c}})
		learn(e)
		b.OpenErr = fmt.Errorf("breaker open: %w", pmult.ErrDown)
		h := pmulttest.Open(t, e, pmulttest.AllOffer)
		if r := connectFrom(h, "192.0.2.2"); r.Verdict != pmult.Tempfail {
			t.Errorf("connect %+v, want the failure vote", r)
		}
		if log := h.Log.String(); !strings.Contains(log, "backend skipped") || strings.Contains(log, "backend failed") {
			t.Errorf("log:\n%s", log)
		}
		// Excluded: not even asked (the breaker is not touched).
		opens := b.Opens()
		h = pmulttest.Open(t, e, pmulttest.AllOffer)
		connectFrom(h, "198.51.100.1")
		if b.Opens() != opens {
			t.Error("excluded backend opened")
		}
	})
	t.Run("evaluate", func(t *testing.T) {
		b := pmulttest.New("b", pmulttest.Reader)
		b.On = map[pmult.Kind]pmulttest.Step{pmult.KindConnect: {Verdict: pmult.Reject}}
		e := engine(pmult.Slot{Backend: b, Policy: pmult.Policy{Evaluate: true, Condition: c}})
		learn(e)
		opens := b.Opens()
		h := pmulttest.Open(t, e, pmulttest.AllOffer)
		connectFrom(h, "198.51.100.1")
		if b.Opens() != opens {
			t.Error("excluded evaluated backend opened")
		}
		h = pmulttest.Open(t, e, pmulttest.AllOffer)
		if r := connectFrom(h, "192.0.2.3"); r.Verdict.Objects() {
			t.Errorf("connect %+v: an evaluated backend's verdict applied", r)
		}
		if b.Opens() != opens+1 || !strings.Contains(h.Log.String(), "evaluation: backend would have answered") {
			t.Errorf("opens %d, log:\n%s", b.Opens()-opens, h.Log)
		}
	})
}
