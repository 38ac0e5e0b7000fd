// assign_test.go: macros a backend sets for the backends after it
// (assign.go): who sees them and from when, their scope, the MTA's value
// winning unless override, replay at end of message, conditions, the
// decision record, evaluation mode.

package pmult_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

func setAt(f *pmulttest.Backend, k Kind, a ...Assignment) {
	f.On[k] = step{Macros: a}
}

func wantValues(t *testing.T, f *pmulttest.Backend, k Kind, name string, want ...string) {
	t.Helper()
	if got := f.MacroValues(k, name); !slices.Equal(got, want) {
		t.Errorf("%s at %s: %s = %q, want %q", f.Name(), k, name, got, want)
	}
}

// The setter's assignment at MAIL shows from RCPT on to the backends
// after it, never to the setter or one before it, and ends with the
// message.
func TestAssignAfterSetterFromNextEvent(t *testing.T) {
	for _, sync := range []bool{false, true} {
		before := pmulttest.New("before", pmulttest.Reader)
		setter := pmulttest.New("setter", pmulttest.Reader)
		after := pmulttest.New("after", pmulttest.Reader)
		after2 := pmulttest.New("after2", pmulttest.Reader)
		for _, f := range []*pmulttest.Backend{before, setter, after, after2} {
			f.Sync = sync
		}
		setAt(setter, KindMail, Assignment{Name: "{x_reputation}", Value: "bad"})
		h := pmulttest.Open(t, &Engine{Slots: pmulttest.Slots(before, setter, after, after2)}, pmulttest.AllOffer)
		h.EnvelopeToData()
		h.Message([]string{"Subject", " hi"}, "body\r\n")
		for _, f := range []*pmulttest.Backend{after, after2} {
			wantValues(t, f, KindMail, "x_reputation", "-")
			wantValues(t, f, KindRcpt, "x_reputation", "bad")
			wantValues(t, f, KindData, "{x_reputation}", "bad")
			wantValues(t, f, KindEOH, "x_reputation", "bad")
			wantValues(t, f, KindEOM, "x_reputation", "bad")
		}
		for _, f := range []*pmulttest.Backend{before, setter} {
			for _, k := range []Kind{KindMail, KindRcpt, KindData, KindEOH, KindEOM} {
				wantValues(t, f, k, "x_reputation", "-")
			}
		}
		// The next message: gone (message scope); the setter does not set it again at MAIL.
		setter.On[KindMail] = step{}
		h.Mail()
		h.Rcpt("c@example.net")
		wantValues(t, after, KindRcpt, "x_reputation", "bad", "-")
	}
}

// One set at CONNECT or HELO lasts for the connection (every message),
// and ends at the next CONNECT; From delays it.
func TestAssignConnectionScopeAndFrom(t *testing.T) {
	setter := pmulttest.New("setter", pmulttest.Reader)
	after := pmulttest.New("after", pmulttest.Reader)
	setter.Seq[KindConnect] = []step{{Macros: []Assignment{
		{Name: "conn_mark", Value: "c1"},
		{Name: "{late}", Value: "L", From: KindRcpt},
	}}}
	h := pmulttest.Open(t, &Engine{Slots: pmulttest.Slots(setter, after)}, pmulttest.AllOffer)
	h.EnvelopeToData()
	h.Abort()
	h.Mail()
	h.Rcpt("c@example.net")
	wantValues(t, after, KindConnect, "conn_mark", "-")
	wantValues(t, after, KindHelo, "conn_mark", "c1")
	wantValues(t, after, KindMail, "conn_mark", "c1", "c1")
	wantValues(t, after, KindRcpt, "conn_mark", "c1", "c1")
	wantValues(t, after, KindHelo, "late", "-")
	wantValues(t, after, KindMail, "late", "-", "-")
	wantValues(t, after, KindRcpt, "late", "L", "L")
	// A new SMTP session on the connection: nothing of the old one.
	h.Do(&Event{Kind: KindQuitNC})
	h.Connect()
	h.Helo()
	wantValues(t, after, KindHelo, "conn_mark", "c1", "-")
}

// The MTA's value wins unless the assignment overrides; a value pmult
// would derive (Synth) gives way.
func TestAssignMTAValueWins(t *testing.T) {
	for _, override := range []bool{false, true} {
		setter := pmulttest.New("setter", pmulttest.Reader)
		after := pmulttest.New("after", pmulttest.Reader)
		setAt(setter, KindHelo, Assignment{Name: "{daemon_name}", Value: "mine", Override: override})
		h := pmulttest.Open(t, &Engine{Slots: pmulttest.Slots(setter, after)}, pmulttest.AllOffer)
		h.Do(&Event{Kind: KindConnect, Family: '4', Address: "192.0.2.1", Hostname: "c.example",
			Macros: []MacroSet{{For: KindConnect, Pairs: []string{"{daemon_name}", "mta"}}}})
		h.Helo()
		h.Do(&Event{Kind: KindMail, Args: []string{"<a@example.org>"},
			Macros: []MacroSet{{For: KindMail, Pairs: []string{"{daemon_name}", "mta-mail"}}}})
		want := map[bool]string{false: "mta-mail", true: "mine"}[override]
		wantValues(t, after, KindMail, "daemon_name", want)
		// At RCPT the MTA sent nothing of its own for the stage: the
		// assignment shows only with override (the MTA's value of earlier
		// stages still wins without it).
		h.Rcpt("b@example.net")
		want = map[bool]string{false: "-", true: "mine"}[override]
		wantValues(t, after, KindRcpt, "daemon_name", want)
	}
}

// Replayed backends run after the live ones at end of message: they see
// what a live backend before them set at EOM; a live backend after the
// setter does not (it ran at the same time).
func TestAssignReplaySeesEOMAssignment(t *testing.T) {
	setter := pmulttest.New("setter", pmulttest.Editor) // the first editor: live
	live := pmulttest.New("live", pmulttest.Reader)     // read-only, live (ReadOnlyLive)
	replayed := pmulttest.New("replayed", pmulttest.Editor)
	setAt(setter, KindEOM, Assignment{Name: "spam_score", Value: "7.5"})
	e := &Engine{ReadOnlyLive: true, Slots: pmulttest.Slots(setter, live, replayed)}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.EnvelopeToData()
	if r := h.Message([]string{"Subject", " hi"}, "body\r\n"); r.Verdict.Objects() {
		t.Fatalf("EOM: %+v", r)
	}
	wantValues(t, replayed, KindEOM, "spam_score", "7.5")
	wantValues(t, live, KindEOM, "spam_score", "-")
	if len(replayed.Events()) == 0 || replayed.Events()[0].Kind != KindConnect {
		t.Fatalf("replayed backend events: %s", replayed.KindsString())
	}
}

// macroCond is a condition on one macro's value, decided at Stage.
type macroCond struct {
	name, want string
	stage      Kind
}

func (c macroCond) Eval(f *Facts) Tri {
	if v, ok := f.Macro(c.name); ok && v == c.want {
		return Yes
	}
	if f.At < c.stage {
		return Unknown
	}
	return No
}
func (c macroCond) Stage() Kind    { return c.stage }
func (c macroCond) String() string { return "macro " + c.name }

// A condition of a backend after the setter sees the assignment; one of a
// backend before it does not.
func TestAssignConditionSees(t *testing.T) {
	before := pmulttest.New("before", pmulttest.Reader)
	setter := pmulttest.New("setter", pmulttest.Reader)
	after := pmulttest.New("after", pmulttest.Reader)
	setAt(setter, KindConnect, Assignment{Name: "{x_reputation}", Value: "bad"})
	c := macroCond{name: "{x_reputation}", want: "bad", stage: KindMail}
	e := &Engine{Slots: []Slot{
		{Backend: before, Policy: Policy{Condition: c}},
		{Backend: setter},
		{Backend: after, Policy: Policy{Condition: c}},
	}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.EnvelopeToData()
	if got := after.KindsString(); !strings.Contains(got, "rcpt") {
		t.Errorf("after: its condition should hold, got %s", got)
	}
	if got := before.KindsString(); strings.Contains(got, "rcpt") {
		t.Errorf("before: its condition should be false (it cannot see the assignment), got %s", got)
	}
}

// The decision record keeps each assignment; the decision line has a
// set_macro policy; a backend's notes are policies too; an evaluated
// backend assigns nothing.
func TestAssignRecordedAndEvaluation(t *testing.T) {
	setter := pmulttest.New("setter", pmulttest.Reader)
	shadow := pmulttest.New("shadow", pmulttest.Reader)
	after := pmulttest.New("after", pmulttest.Reader)
	setter.On[KindMail] = step{Macros: []Assignment{{Name: "x_reputation", Value: "bad 192.0.2.1"}},
		Notes: []Note{{What: "macro_skip", Action: "{spf_result}=pass"}}}
	setAt(shadow, KindMail, Assignment{Name: "shadow_mark", Value: "1"})
	rec := NewRecorder(4)
	var buf bytes.Buffer
	e := &Engine{Records: rec, Log: pmulttest.NewLog(&buf), Slots: []Slot{
		{Backend: setter}, {Backend: shadow, Policy: Policy{Evaluate: true}}, {Backend: after},
	}}
	s := e.NewSession("sess1", nil)
	defer s.Close()
	h := &pmulttest.Harness{T: t, E: e, S: s, Ctx: t.Context()}
	s.Open(h.Ctx, pmulttest.AllOffer, nil)
	h.EnvelopeToData()
	h.Message(nil, "")
	wantValues(t, after, KindRcpt, "x_reputation", "bad 192.0.2.1")
	wantValues(t, after, KindRcpt, "shadow_mark", "-")
	var why bytes.Buffer
	if ok, err := rec.WriteWhy(&why, "sess1"); !ok || err != nil {
		t.Fatalf("WriteWhy: %v %v", ok, err)
	}
	for _, want := range []string{"macros set:", `setter           {x_reputation} at mail = "bad 192.0.2.1"`,
		"set_macro setter at mail: {x_reputation}", "macro_skip setter at mail: {spf_result}=pass",
		"would_set_macro shadow at mail: {shadow_mark}"} {
		if !strings.Contains(why.String(), want) {
			t.Errorf("pmult why lacks %q:\n%s", want, why.String())
		}
	}
	if !strings.Contains(buf.String(), "set_macro:setter@mail={x_reputation}") {
		t.Errorf("decision line lacks the set_macro policy:\n%s", buf.String())
	}
}

// A backend that waits for the earlier ones at MAIL (Caps.WaitEarlier)
// sees what they set at MAIL itself; one that does not, from RCPT on.
func TestAssignWaitEarlierSeesSameEvent(t *testing.T) {
	setter := pmulttest.New("setter", pmulttest.Reader)
	waiter := pmulttest.New("waiter", Caps{Skip: true, WaitEarlier: Kinds(KindMail)})
	plain := pmulttest.New("plain", pmulttest.Reader)
	setAt(setter, KindMail, Assignment{Name: "spf_result", Value: "pass"})
	for _, order := range [][]*pmulttest.Backend{{setter, waiter, plain}, {setter, plain, waiter}} {
		for _, f := range order {
			f.Reset()
		}
		h := pmulttest.Open(t, &Engine{Slots: pmulttest.Slots(order...)}, pmulttest.AllOffer)
		h.EnvelopeToData()
		wantValues(t, waiter, KindMail, "spf_result", "pass")
		wantValues(t, plain, KindMail, "spf_result", "-")
		wantValues(t, plain, KindRcpt, "spf_result", "pass")
	}
	// Before the setter it sees nothing, waiting or not.
	waiter.Reset()
	h := pmulttest.Open(t, &Engine{Slots: pmulttest.Slots(waiter, setter)}, pmulttest.AllOffer)
	h.EnvelopeToData()
	wantValues(t, waiter, KindMail, "spf_result", "-")
	wantValues(t, waiter, KindRcpt, "spf_result", "-")
}

// A bad name or a NUL in the value is one warning, and nothing is set;
// the session goes on.
func TestAssignBadInput(t *testing.T) {
	setter := pmulttest.New("setter", pmulttest.Reader)
	after := pmulttest.New("after", pmulttest.Reader)
	setAt(setter, KindHelo, Assignment{Name: "{bad name}", Value: "x"}, Assignment{Name: "nul", Value: "a\x00b"},
		Assignment{Name: "", Value: "x"}, Assignment{Name: "good", Value: "ok"})
	h := pmulttest.Open(t, &Engine{Slots: pmulttest.Slots(setter, after)}, pmulttest.AllOffer)
	h.EnvelopeToData()
	wantValues(t, after, KindMail, "good", "ok")
	wantValues(t, after, KindMail, "nul", "-")
	for _, ev := range after.Events() {
		for _, set := range ev.Macros {
			if len(set.Pairs) > 2 {
				t.Errorf("%s: pairs %q, want only {good}", ev.Kind, set.Pairs)
			}
		}
	}
	if n := strings.Count(h.Log.String(), "backend set a macro with a bad name"); n != 3 {
		t.Errorf("%d warnings, want 3:\n%s", n, h.Log.String())
	}
}

// Policy.WaitEarlier: the backend's condition is asked after the others
// answered MAIL, so it sees what the setter set at MAIL; without it the
// condition decides at MAIL before the setter answered, and is false.
func TestAssignWaitEarlierCondition(t *testing.T) {
	for _, wait := range []bool{false, true} {
		setter := pmulttest.New("setter", pmulttest.Reader)
		judged := pmulttest.New("judged", pmulttest.Reader)
		setAt(setter, KindMail, Assignment{Name: "{spf_result}", Value: "fail"})
		p := Policy{Condition: macroCond{name: "spf_result", want: "fail", stage: KindMail}}
		if wait {
			p.WaitEarlier = Kinds(KindMail)
		}
		h := pmulttest.Open(t, &Engine{Slots: []Slot{{Backend: setter}, {Backend: judged, Policy: p}}}, pmulttest.AllOffer)
		h.EnvelopeToData()
		got := judged.KindsString()
		if in := strings.Contains(got, "rcpt"); in != wait {
			t.Errorf("wait %v: judged got %s, want it in the message: %v", wait, got, wait)
		}
		if wait {
			wantValues(t, judged, KindMail, "spf_result", "fail")
		}
	}
}

type namedSetter struct {
	*pmulttest.Backend
	names []string
}

func (n namedSetter) SetsMacros() []string { return n.names }

// OpenInfo.Assigned names what the backends before each one may set
// (MacroSetter).
func TestAssignableAtOpen(t *testing.T) {
	a := namedSetter{pmulttest.New("a", pmulttest.Reader), []string{"{x_reputation}", "spf_result"}}
	b := pmulttest.New("b", pmulttest.Reader)
	c := namedSetter{pmulttest.New("c", pmulttest.Reader), []string{"{sender_verify}", "x_reputation"}}
	d := pmulttest.New("d", pmulttest.Reader)
	var mu sync.Mutex
	got := map[string][]string{}
	for _, f := range []*pmulttest.Backend{a.Backend, b, c.Backend, d} {
		f.OpenHook = func(ctx context.Context, info OpenInfo) error {
			mu.Lock()
			got[f.Name()] = info.Assigned
			mu.Unlock()
			return nil
		}
	}
	e := &Engine{Slots: []Slot{{Backend: a}, {Backend: b}, {Backend: c}, {Backend: d}}, OpenTimeout: time.Minute}
	pmulttest.Open(t, e, pmulttest.AllOffer)
	mu.Lock()
	defer mu.Unlock()
	want := map[string][]string{"a": nil, "b": {"x_reputation", "spf_result"}, "c": {"x_reputation", "spf_result"},
		"d": {"x_reputation", "spf_result", "sender_verify"}}
	for n, w := range want {
		if !slices.Equal(got[n], w) {
			t.Errorf("%s: Assigned %q, want %q", n, got[n], w)
		}
	}
}

// Backends that batch (content posted ahead while the MTA reads no reply,
// the replay in one write) see the assignments like the others: live
// content and the replay at end of message carry them.
func TestAssignBatchedContentAndReplay(t *testing.T) {
	setter := pmulttest.New("setter", pmulttest.Editor) // the first editor: live
	live := pmulttest.New("live", pmulttest.Reader)     // read-only, live
	replayed := pmulttest.New("replayed", pmulttest.Editor)
	for _, f := range []*pmulttest.Backend{setter, live, replayed} {
		f.Batch = true
	}
	setAt(setter, KindMail, Assignment{Name: "{x_reputation}", Value: "bad"})
	setter.On[KindEOM] = step{Macros: []Assignment{{Name: "spam_score", Value: "7.5"}}}
	offer := pmulttest.AllOffer
	offer.NoReply = Kinds(KindHeader, KindEOH, KindBody)
	offer.DeferContent = true
	e := &Engine{ReadOnlyLive: true, Slots: pmulttest.Slots(setter, live, replayed)}
	h := pmulttest.Open(t, e, offer)
	h.EnvelopeToData()
	if r := h.Message([]string{"Subject", " hi"}, "body\r\n"); r.Verdict.Objects() {
		t.Fatalf("EOM: %+v", r)
	}
	for _, f := range []*pmulttest.Backend{live, replayed} {
		wantValues(t, f, KindEOH, "x_reputation", "bad")
		wantValues(t, f, KindEOM, "x_reputation", "bad")
	}
	wantValues(t, replayed, KindEOM, "spam_score", "7.5")
}
