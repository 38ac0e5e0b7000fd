package pmult_test

import (
	"errors"
	"strings"
	"testing"

	. "github.com/mailmux/mailmux/pmult"
)

func TestParseFailAction(t *testing.T) {
	for in, want := range map[string]FailAction{
		"": FailTempfail, "tempfail": FailTempfail, "Accept": FailAccept, "continue": FailAccept,
		"REJECT": FailReject, "discard": FailDiscard,
	} {
		got, err := ParseFailAction(in)
		if err != nil || got != want {
			t.Errorf("ParseFailAction(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseFailAction("quarantine"); err == nil || !strings.Contains(err.Error(), "quarantine") {
		t.Errorf("ParseFailAction(quarantine) error = %v", err)
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{KindRcpt.String(), "rcpt"}, {KindQuitNC.String(), "quit_nc"}, {Kind(99).String(), "kind(99)"},
		{Discard.String(), "discard"}, {Verdict(42).String(), "verdict(42)"},
		{EditReplaceBody.String(), "replace_body"}, {EditKind(0).String(), "edit(0)"}, {EditKind(77).String(), "edit(77)"},
		{FailDiscard.String(), "discard"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestKindSets(t *testing.T) {
	s := Kinds(KindConnect, KindBody)
	if !s.Has(KindConnect) || !s.Has(KindBody) || s.Has(KindHelo) {
		t.Errorf("Kinds: %#x", s)
	}
	for k := KindNone; k < NumKinds; k++ {
		want := k == KindConnect || k == KindHelo || k == KindMail || k == KindRcpt || k == KindData || k == KindUnknown
		if k.Envelope() != want {
			t.Errorf("%v.Envelope() = %v", k, !want)
		}
	}
}

func TestEditNeed(t *testing.T) {
	for k, want := range map[EditKind]Actions{
		EditAddHeader: ActAddHeaders, EditInsertHeader: ActAddHeaders, EditChangeHeader: ActChangeHeaders,
		EditAddRcpt: ActAddRcpt, EditAddRcptPar: ActAddRcptPar, EditDelRcpt: ActDelRcpt,
		EditChangeFrom: ActChangeFrom, EditReplaceBody: ActChangeBody, EditQuarantine: ActQuarantine, EditKind(0): 0,
	} {
		if got := k.Need(); got != want {
			t.Errorf("%v.Need() = %#x, want %#x", k, got, want)
		}
	}
}

func TestVerdictObjects(t *testing.T) {
	for v, want := range map[Verdict]bool{Continue: false, Accept: false, Skip: false, Tempfail: true,
		Reject: true, Discard: true, Shutdown: true} {
		if v.Objects() != want {
			t.Errorf("%v.Objects() = %v", v, !want)
		}
	}
}

// retirer is a backend that keeps idle connections.
type retirer struct {
	*fakeBackend
	n int
}

func (c *retirer) Retire() { c.n++ }

func TestEngineRetire(t *testing.T) {
	c := &retirer{fakeBackend: newFake("c", reader)}
	e := &Engine{Slots: []Slot{{Backend: c}, {Backend: newFake("plain", reader)}}}
	e.Retire()
	if c.n != 1 {
		t.Errorf("Retire reached the backend %d times", c.n)
	}
}

// A backend that breaks on ABORT or QUIT_NC is dropped like any other
// (after QUIT_NC it is opened again at the next CONNECT: here that fails
// too, so its failure vote is cast in the new session).
func TestFailureOnAbortAndQuitNC(t *testing.T) {
	for _, k := range []Kind{KindAbort, KindQuitNC} {
		t.Run(k.String(), func(t *testing.T) {
			a, b := newFake("a", reader), newFake("b", Caps{QuitNC: true})
			b.On[k] = step{Err: errors.New("broken pipe")}
			e := &Engine{Slots: []Slot{{Backend: a}, {Backend: b, Policy: Policy{OnFailure: FailReject}}}}
			h := open(t, e, allOffer)
			h.Connect()
			h.Helo()
			h.Mail()
			if k == KindQuitNC { // QUIT_NC goes only after an answered EOM
				h.Rcpt("x@example.net")
				h.Data()
				h.Message(origHeaders, "x")
				b.OpenErr = errors.New("refused")
			}
			h.Do(&Event{Kind: k})
			h.Connect()
			if r := h.Helo(); r.Verdict != Reject || r.From != "b" {
				t.Errorf("helo = %+v, want b's failure vote", r)
			}
			if !strings.Contains(h.Log.String(), "stage="+k.String()) {
				t.Errorf("log:\n%s", h.Log)
			}
		})
	}
}
