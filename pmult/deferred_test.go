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
	offer.DeferContent = true
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

// A backend that batches gets the content phase posted ahead where the
// MTA reads no reply (live) and the whole replay at once (a later
// editor); answers are read in order, up to one that ends the message.
// Live: a's reject of the second header becomes the verdict at EOM.
// Replay: b's reject of its second replayed header is the verdict, and
// nothing of b's is awaited after it; the next message is served in step.
func TestBatchedContentAndReplay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bad    string // which backend rejects X-Bad
		noWait bool   // the MTA reads no reply to content events
	}{
		{"live, MTA not waiting", "a", true},
		{"replay", "b", false},
		{"replay, MTA not waiting", "b", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func(name string) *fakeBackend {
				f := newFake(name, editor)
				f.Batch = true
				if name == tc.bad {
					f.Hook = func(ev *Event) (step, bool) {
						if ev.Kind == KindHeader && ev.Name == "X-Bad" {
							return step{Verdict: Reject, Text: "550 5.7.1 bad from " + name}, true
						}
						return step{}, false
					}
				}
				return f
			}
			a, b := mk("a"), mk("b")
			e := &Engine{Slots: slots(a, b)}
			offer := allOffer
			if tc.noWait {
				offer.NoReply = Kinds(KindHeader, KindEOH, KindBody)
				offer.DeferContent = true
			}
			h := open(t, e, offer)
			h.EnvelopeToData()
			for _, hd := range [][2]string{{"Subject", " hi"}, {"X-Bad", " yes"}, {"To", " b@example.net"}} {
				h.Header(hd[0], hd[1])
			}
			h.EOH()
			h.Body("body\r\n")
			r := h.EOM()
			if r.Verdict != Reject || r.Text != "550 5.7.1 bad from "+tc.bad {
				t.Fatalf("EOM reply %+v, want %s's reject", r, tc.bad)
			}
			h.Abort()
			if r := h.Mail(); r.Verdict.Objects() {
				t.Fatalf("next MAIL: %+v", r)
			}
			h.Rcpt("c@example.net")
			h.Data()
			if r := h.Message([]string{"Subject", " second"}, "second body\r\n"); r.Verdict != Continue {
				t.Fatalf("second message: %+v", r)
			}
			holder := b // the replayed one batches in every case
			if tc.noWait {
				holder = a
			}
			if n := holder.Sessions()[0].Holds(); n == 0 {
				t.Errorf("%s: no batch held", holder.Name())
			}
		})
	}
}
