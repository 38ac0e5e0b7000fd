// divergence_test.go: the engine's fixes for the divergences from the
// MTA's own milter chain (issue 8): open budget, panics, CRLF replay,
// EOM verdict order, merge modes, read-only order, DISCARD at CONNECT,
// MTA gone, parallel header edits.

package pmult_test

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/mailmux/mailmux/pmult"
)

func failures(e *Engine) uint64 {
	var n uint64
	for i := range e.Slots {
		for k := range NumKinds {
			n += BackendFailures(e, i, k)
		}
	}
	return n
}

// 1. A backend that never finishes its open (it ignores the deadline)
// fails for the session at open_timeout; Open returns then, the healthy
// backend serves the session, the late session is closed when it comes.
func TestOpenBudget(t *testing.T) {
	start := runtime.NumGoroutine()
	release := make(chan struct{})
	deadlines := make(chan time.Time, 1)
	wedged := newFake("wedged", reader)
	wedged.OpenHook = func(ctx context.Context, info OpenInfo) error {
		deadlines <- info.Deadline
		<-release // does not honour ctx nor the deadline
		return nil
	}
	good := newFake("good", editor)
	good.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-Good", Value: " yes"}}}
	goodCtx := make(chan context.Context, 1)
	good.OpenHook = func(ctx context.Context, _ OpenInfo) error { goodCtx <- ctx; return nil }
	e := &Engine{OpenTimeout: 50 * time.Millisecond,
		Slots: []Slot{{Backend: wedged, Policy: Policy{OnFailure: FailAccept}}, {Backend: good}}}
	before := time.Now()
	h := open(t, e, allOffer)
	deadline := <-deadlines
	if deadline.IsZero() || deadline.Before(before) || deadline.After(before.Add(time.Second)) {
		t.Errorf("OpenInfo.Deadline = %v, want about %v", deadline, before.Add(50*time.Millisecond))
	}
	if !strings.Contains(h.Log.String(), "not negotiated within open_timeout (50ms)") ||
		!strings.Contains(h.Log.String(), "backend=wedged") {
		t.Errorf("log:\n%s", h.Log)
	}
	h.EnvelopeToData()
	if rep := h.Message(origHeaders, "body\r\n"); rep.Verdict != Continue || len(rep.Edits) != 1 {
		t.Errorf("eom = %+v, want good's header", rep)
	}
	// A backend session may live by its Open ctx (the milter backend
	// stops its connection when it ends): it lasts as long as the Session.
	octx := <-goodCtx
	if octx.Err() != nil {
		t.Errorf("the ctx of a successful Open ended before the session: %v", octx.Err())
	}
	close(release)
	waitFor(t, func() bool { return wedged.Closes() == 1 }, "the late session closed")
	h.S.Close()
	if octx.Err() == nil {
		t.Error("the ctx of the backends' Open outlives the Session")
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= start }, "goroutines gone")
}

// The budget also ends an open that would honour only the session ctx,
// and the Session's end stops it.
func TestOpenBudgetCtxEndsAtClose(t *testing.T) {
	start := runtime.NumGoroutine()
	slow := newFake("slow", reader)
	slow.OpenHook = func(ctx context.Context, _ OpenInfo) error {
		<-ctx.Done()
		return ctx.Err()
	}
	e := &Engine{OpenTimeout: 20 * time.Millisecond, Slots: []Slot{{Backend: slow}}}
	h := open(t, e, allOffer)
	if r := h.Connect(); r.Verdict != Tempfail || r.From != "slow" {
		t.Errorf("connect = %+v, want slow's failure action", r)
	}
	h.S.Close()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= start }, "the open goroutine gone")
}

// A panic in a backend's Open, or in its Send/Post/Await (the EOM fan-out
// runs them in goroutines), fails that backend with one error line.
func TestBackendPanic(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		p := newFake("p", reader)
		p.OpenHook = func(context.Context, OpenInfo) error { panic("boom in open") }
		good := newFake("good", reader)
		e := &Engine{Slots: []Slot{{Backend: p, Policy: Policy{OnFailure: FailReject}}, {Backend: good}}}
		h := open(t, e, allOffer)
		if r := h.Connect(); r.Verdict != Reject || r.From != "p" {
			t.Errorf("connect = %+v", r)
		}
		if n := strings.Count(h.Log.String(), "level=ERROR"); n != 1 || !strings.Contains(h.Log.String(), "boom in open") {
			t.Errorf("want one error line:\n%s", h.Log)
		}
	})
	for _, k := range []Kind{KindRcpt, KindEOM} {
		t.Run(k.String(), func(t *testing.T) {
			p, good := newFake("p", reader), newFake("good", reader)
			p.On[k] = step{Panic: "boom at " + k.String()}
			e := &Engine{Slots: []Slot{{Backend: p, Policy: Policy{OnFailure: FailAccept}}, {Backend: good}}}
			h := open(t, e, allOffer)
			h.EnvelopeToData()
			if r := h.Message(origHeaders, "x"); r.Verdict != Continue {
				t.Errorf("eom = %+v", r)
			}
			if n := strings.Count(h.Log.String(), "level=ERROR"); n != 1 || !strings.Contains(h.Log.String(), "boom at "+k.String()) {
				t.Errorf("want one error line:\n%s", h.Log)
			}
			if !slices.Contains(good.Kinds(), "eom") {
				t.Errorf("good got %q", good.Kinds())
			}
		})
	}
}

// 2. A replaced body replayed to the next backend has the MTA's CRLF line
// ends; what goes to the MTA is the backend's own bytes.
func TestReplayBodyCRLF(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"one\ntwo\n", "one\r\ntwo\r\n"},
		{"one\r\ntwo\n", "one\r\ntwo\r\n"},
		{"one\ntwo", "one\r\ntwo\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"cr\rin line\n", "cr\rin line\r\n"},
	} {
		a, b := newFake("a", editor), newFake("b", editor)
		a.On[KindEOM] = step{Edits: []Edit{{Kind: EditReplaceBody, Body: []byte(tc.in)}}}
		h := open(t, &Engine{Slots: slots(a, b)}, allOffer)
		h.EnvelopeToData()
		rep := h.Message(origHeaders, "original\r\n")
		if got := b.Body(); got != tc.want {
			t.Errorf("replacement %q: b got %q, want %q", tc.in, got, tc.want)
		}
		if len(rep.Edits) != 1 || string(rep.Edits[0].Body) != tc.in {
			t.Errorf("replacement %q: the MTA gets %+v", tc.in, rep.Edits)
		}
	}
}

// 3. Serial mode: A (editor, live), B (editor, replayed), C (read-only,
// live): B's verdict counts and B gets its EOM although C objects.
func TestSerialEOMVerdictOrder(t *testing.T) {
	for _, tc := range []struct {
		name       string
		b, c       step
		want       Verdict
		wantText   string
		readOnlyIn bool // read_only = in_order: C is replayed after B
	}{
		{"B reject beats C tempfail", step{Verdict: Reject, Text: "550 B"}, step{Verdict: Tempfail, Text: "451 C"}, Reject, "550 B", false},
		{"B discard beats C tempfail", step{Verdict: Discard}, step{Verdict: Tempfail, Text: "451 C"}, Discard, "", false},
		{"tie: the earlier backend's text", step{Verdict: Reject, Text: "550 B"}, step{Verdict: Reject, Text: "550 C"}, Reject, "550 B", false},
		{"C later wins when stronger", step{Verdict: Tempfail, Text: "451 B"}, step{Verdict: Reject, Text: "550 C"}, Reject, "550 C", false},
		{"in order: C not reached after B", step{Verdict: Tempfail, Text: "451 B"}, step{Verdict: Reject, Text: "550 C"}, Tempfail, "451 B", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, c := newFake("a", editor), newFake("b", editor), newFake("c", reader)
			b.On[KindEOM] = tc.b
			c.On[KindEOM] = tc.c
			h := open(t, &Engine{Slots: slots(a, b, c), ReadOnlyLive: !tc.readOnlyIn}, allOffer)
			h.EnvelopeToData()
			rep := h.Message(origHeaders, "x")
			if rep.Verdict != tc.want || rep.Text != tc.wantText {
				t.Errorf("eom = %+v, want %v %q", rep, tc.want, tc.wantText)
			}
			if !slices.Contains(b.Kinds(), "eom") {
				t.Errorf("b never got EOM: %q", b.Kinds())
			}
			if tc.readOnlyIn && slices.Contains(c.Kinds(), "eom") {
				t.Errorf("c got EOM after b objected: %q", c.Kinds())
			}
		})
	}
}

// merge = "chain": the first objection in configured order wins, at every
// stage; the default, the strongest.
func TestMergeChain(t *testing.T) {
	for _, chain := range []bool{false, true} {
		a, b := newFake("a", reader), newFake("b", reader)
		a.On[KindRcpt] = step{Verdict: Tempfail, Text: "451 a"}
		b.On[KindRcpt] = step{Verdict: Reject, Text: "550 b"}
		a.On[KindEOM] = step{Verdict: Tempfail, Text: "451 a eom"}
		b.On[KindEOM] = step{Verdict: Discard}
		h := open(t, &Engine{Slots: slots(a, b), ChainMerge: chain}, allOffer)
		h.Connect()
		h.Helo()
		h.Mail()
		r := h.Rcpt("x@example.net")
		wantR, wantE := "550 b", Discard
		if chain {
			wantR, wantE = "451 a", Tempfail
		}
		if r.Text != wantR {
			t.Errorf("chain=%v: rcpt = %+v, want %q", chain, r, wantR)
		}
		h.Do(&Event{Kind: KindRcpt, Args: []string{"<y@example.net>"}})
		h.Data()
		if r := h.Message(origHeaders, "x"); r.Verdict != wantE {
			t.Errorf("chain=%v: eom = %+v, want %v", chain, r, wantE)
		}
	}
}

// read_only = "in_order" (default): a read-only backend after an editor
// sees the editor's header (a checker rejecting what a scanner flagged);
// "live": it sees the original.
func TestReadOnlyInOrder(t *testing.T) {
	for _, live := range []bool{false, true} {
		before, scanner, checker := newFake("before", reader), newFake("scanner", editor), newFake("checker", reader)
		scanner.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-Spam-Flag", Value: " YES"}}}
		checker.Hook = func(ev *Event) (step, bool) {
			if ev.Kind == KindHeader && ev.Name == "X-Spam-Flag" {
				return step{Verdict: Reject, Text: "550 spam"}, true
			}
			return step{}, false
		}
		h := open(t, &Engine{Slots: slots(before, scanner, checker), ReadOnlyLive: live}, allOffer)
		h.EnvelopeToData()
		r := h.Message(origHeaders, "x")
		if live && r.Verdict != Continue {
			t.Errorf("live: eom = %+v, want continue (the checker saw the original)", r)
		}
		if !live && (r.Verdict != Reject || r.From != "checker") {
			t.Errorf("in order: eom = %+v, want the checker's reject", r)
		}
		// Read-only backends before the first editor stay live.
		if got := before.KindsString(); !strings.Contains(got, "header") {
			t.Errorf("before got %q: not live", got)
		}
	}
}

// The MTA went away (session ctx cancelled) while backends work on EOM,
// live and replayed: the engine returns at once, logs one line, counts
// no backend failure.
func TestMTAGoneStopsPromptly(t *testing.T) {
	for _, where := range []string{"live", "replay"} {
		t.Run(where, func(t *testing.T) {
			block := make(chan struct{})
			defer close(block)
			a, b := newFake("a", editor), newFake("b", editor)
			if where == "live" {
				a.On[KindEOM] = step{Wait: block}
			} else {
				b.On[KindHeader] = step{Wait: block}
			}
			e := &Engine{Slots: slots(a, b)}
			h := open(t, e, allOffer)
			ctx, cancel := context.WithCancel(context.Background())
			h.Ctx = ctx
			h.EnvelopeToData()
			for i := 0; i+1 < len(origHeaders); i += 2 {
				h.Header(origHeaders[i], origHeaders[i+1])
			}
			h.EOH()
			done := make(chan Reply)
			go func() { done <- h.S.Handle(ctx, &Event{Kind: KindEOM}) }()
			waitFor(t, func() bool {
				f := a
				if where == "replay" {
					f = b
				}
				return slices.Contains(f.Kinds(), map[string]string{"live": "eom", "replay": "header"}[where])
			}, "the backend blocked")
			cancel()
			<-done
			log := h.Log.String()
			if n := strings.Count(log, "MTA went away"); n != 1 {
				t.Errorf("want one \"MTA went away\" line:\n%s", log)
			}
			if strings.Contains(log, "backend failed") || failures(e) != 0 {
				t.Errorf("a backend failure was logged or counted (%d):\n%s", failures(e), log)
			}
		})
	}
}

// 8. content = "parallel": each backend's successive header edits are
// translated through its own view.
func TestParallelOwnSuccessiveEdits(t *testing.T) {
	hdrs := []string{"X-Spam", " 1", "X-Spam", " 2", "X-Spam", " 3", "Subject", " s"}
	for _, tc := range []struct {
		name string
		b    []Edit
		want []string
	}{
		{"two deletes of index 1",
			[]Edit{{Kind: EditChangeHeader, Index: 1, Name: "X-Spam"}, {Kind: EditChangeHeader, Index: 1, Name: "X-Spam"}},
			[]string{"X-Spam: 3", "Subject: s", "X-A: a"}},
		{"add then change of the added header",
			[]Edit{{Kind: EditAddHeader, Name: "X-New", Value: " 1"}, {Kind: EditChangeHeader, Index: 1, Name: "X-New", Value: " 2"}},
			[]string{"X-Spam: 1", "X-Spam: 2", "X-Spam: 3", "Subject: s", "X-A: a", "X-New: 2"}},
		{"two inserts at the same index",
			[]Edit{{Kind: EditInsertHeader, Index: 1, Name: "X-I1", Value: " 1"}, {Kind: EditInsertHeader, Index: 1, Name: "X-I2", Value: " 2"}},
			[]string{"X-I2: 2", "X-I1: 1", "X-Spam: 1", "X-Spam: 2", "X-Spam: 3", "Subject: s", "X-A: a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newFake("a", editor), newFake("b", editor)
			a.On[KindEOM] = step{Edits: []Edit{{Kind: EditAddHeader, Name: "X-A", Value: " a"}}}
			b.On[KindEOM] = step{Edits: tc.b}
			h := open(t, &Engine{Parallel: true, Slots: slots(a, b)}, allOffer)
			h.EnvelopeToData()
			rep := h.Message(hdrs, "x")
			// Apply what the MTA gets to the MTA's list.
			if got := MTAHeaders(hdrs, rep.Edits); !slices.Equal(got, tc.want) {
				t.Errorf("the MTA ends with %q, want %q (edits %+v)", got, tc.want, rep.Edits)
			}
		})
	}
}
