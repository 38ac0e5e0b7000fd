// deferred_test.go: content verdicts carried to the end of message, so
// the MTA need not wait for replies to headers, EOH and body chunks.

package pmult_test

import (
	"testing"

	. "github.com/mailmux/mailmux/pmult"
)

// A backend that answers every event: the MTA is still let off the
// replies to headers, EOH and body chunks (it acts on their verdict only
// at end of message), not those of the envelope; a header-stage reject
// reaches the MTA at EOM, and the message goes no further to the backend.
func TestContentRepliesDeferredToEOM(t *testing.T) {
	a := newFake("a", editor)
	a.Hook = func(ev *Event) (step, bool) {
		if ev.Kind == KindHeader && ev.Name == "X-Bad" {
			return step{Verdict: Reject, Text: "550 5.7.1 bad header"}, true
		}
		return step{}, false
	}
	e := &Engine{Slots: slots(a)}
	offer := allOffer
	offer.NoReply = Kinds(KindConnect, KindHelo, KindMail, KindRcpt, KindData, KindHeader, KindEOH, KindBody, KindUnknown)
	h := open(t, e, offer)
	if want := Kinds(KindHeader, KindEOH, KindBody); h.Neg.NoReply != want {
		t.Fatalf("NoReply = %#x, want %#x (content only: a answers everything)", h.Neg.NoReply, want)
	}
	h.EnvelopeToData()
	h.Header("Subject", " hi")
	h.Header("X-Bad", " yes")
	h.Header("To", " b@example.net")
	h.EOH()
	h.Body("body\r\n")
	r := h.EOM()
	if r.Verdict != Reject || r.Text != "550 5.7.1 bad header" {
		t.Fatalf("EOM reply %+v, want the header-stage reject", r)
	}
	if got, want := a.KindsString(), "connect helo mail rcpt data header header"; got != want {
		t.Errorf("backend saw %q, want %q", got, want)
	}
}
