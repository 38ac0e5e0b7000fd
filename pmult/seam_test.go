// seam_test.go: the backend seam: synchronous backends (no Pipeliner) run
// in parallel, their panics are caught, and nothing outlives the session.

package pmult_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	. "github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// inside makes backends answer k only once n of them are inside their
// call for it at the same time. It reports whether they all got there;
// if they do not within 5 s (one at a time, the engine is serial), the
// waiting ones are let go so that the test ends.
func inside(t *testing.T, k Kind, fs []*pmulttest.Backend) (all func() bool) {
	t.Helper()
	in := make(chan struct{}, len(fs))
	release := make(chan struct{})
	for _, f := range fs {
		f.Entered = func(ev *Event) {
			if ev.Kind == k {
				in <- struct{}{}
			}
		}
		f.On[k] = step{Wait: release}
	}
	got := make(chan bool, 1)
	go func() {
		defer close(release)
		timeout := time.NewTimer(5 * time.Second)
		defer timeout.Stop()
		for range fs {
			select {
			case <-in:
			case <-timeout.C:
				got <- false
				return
			}
		}
		got <- true
	}()
	return func() bool { return <-got }
}

// Three synchronous backends are inside Handle at RCPT at once (the
// engine runs them concurrently, not one after the other); mixed with
// pipelining ones, every one of them is inside its call at once.
func TestEnvelopeParallelSync(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync []bool
	}{
		{"three synchronous", []bool{true, true, true}},
		{"mixed", []bool{false, true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fs []*pmulttest.Backend
			for i, sync := range tc.sync {
				f := newFake(fmt.Sprint("b", i), reader)
				f.Sync = sync
				fs = append(fs, f)
			}
			h := open(t, &Engine{Slots: slots(fs...)}, allOffer)
			h.Connect()
			h.Helo()
			h.Mail()
			all := inside(t, KindRcpt, fs)
			if r := h.Rcpt("x@example.net"); r.Verdict != Continue {
				t.Errorf("rcpt = %+v", r)
			}
			if !all() {
				t.Fatalf("the %d backends were not all inside their call at RCPT at once: run one after another", len(fs))
			}
			for _, f := range fs {
				if got := f.KindsString(); got != "connect helo mail rcpt" {
					t.Errorf("%s got %q", f.Name(), got)
				}
			}
		})
	}
}

// Synchronous backends are driven through Handle only: their answers and
// errors count as a pipelining backend's.
func TestSyncVerdictsAndFailure(t *testing.T) {
	a, b, c := newFake("a", reader), newFake("b", reader), newFake("c", reader)
	for _, f := range []*pmulttest.Backend{a, b, c} {
		f.Sync = true
	}
	a.On[KindRcpt] = step{Verdict: Tempfail, Text: "451 4.7.1 later"}
	b.On[KindRcpt] = step{Verdict: Reject, Text: "550 5.7.1 no"}
	c.On[KindMail] = step{Err: errors.New("lookup: connection reset")}
	e := &Engine{Slots: []Slot{{Backend: a}, {Backend: b}, {Backend: c, Policy: Policy{OnFailure: FailAccept}}}}
	h := open(t, e, allOffer)
	h.Connect()
	h.Helo()
	if r := h.Mail(); r.Verdict != Continue {
		t.Errorf("mail = %+v (c failed with on_failure accept)", r)
	}
	if r := h.Rcpt("x@example.net"); r.Verdict != Reject || r.From != "b" || r.Text != "550 5.7.1 no" {
		t.Errorf("rcpt = %+v, want b's reject", r)
	}
	if got := c.KindsString(); got != "connect helo mail" {
		t.Errorf("c got %q after failing at MAIL", got)
	}
	if !strings.Contains(h.Log.String(), "lookup: connection reset") {
		t.Errorf("no failure line:\n%s", h.Log)
	}
	for _, f := range []*pmulttest.Backend{a, b, c} {
		for _, s := range f.Sessions() {
			if s.Posts() != 0 {
				t.Errorf("%s: %d events posted to a synchronous session", f.Name(), s.Posts())
			}
		}
	}
}

// A panic in a synchronous backend's Handle, run in a goroutine of the
// fan-out, fails that backend with one error line; the others answer.
func TestSyncBackendPanic(t *testing.T) {
	for _, k := range []Kind{KindRcpt, KindHeader, KindEOM} {
		t.Run(k.String(), func(t *testing.T) {
			p, good, other := newFake("p", reader), newFake("good", reader), newFake("other", reader)
			p.Sync, other.Sync = true, true
			p.On[k] = step{Panic: "boom at " + k.String()}
			e := &Engine{Parallel: true, Slots: []Slot{{Backend: good}, {Backend: p, Policy: Policy{OnFailure: FailAccept}},
				{Backend: other}}}
			h := open(t, e, allOffer)
			h.EnvelopeToData()
			if r := h.Message(origHeaders, "x"); r.Verdict != Continue {
				t.Errorf("eom = %+v", r)
			}
			if n := strings.Count(h.Log.String(), "level=ERROR"); n != 1 || !strings.Contains(h.Log.String(), "boom at "+k.String()) {
				t.Errorf("want one error line:\n%s", h.Log)
			}
			for _, f := range []*pmulttest.Backend{good, other} {
				if !strings.Contains(f.KindsString(), "eom") {
					t.Errorf("%s got %q", f.Name(), f.KindsString())
				}
			}
		})
	}
}

// The fan-out's goroutines for synchronous backends end with each event:
// none is left after the session.
func TestSyncGoroutinesAfterClose(t *testing.T) {
	start := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		var fs []*pmulttest.Backend
		for j := range 3 {
			f := newFake(fmt.Sprint("s", j), reader)
			f.Sync = true
			f.On[KindRcpt] = step{Delay: time.Millisecond}
			fs = append(fs, f)
		}
		mixed := newFake("p", editor)
		h := open(t, &Engine{Slots: append(slots(fs...), slot(mixed, Policy{}))}, allOffer)
		h.EnvelopeToData()
		h.Message(origHeaders, "body")
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
