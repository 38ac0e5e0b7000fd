// gomilter_batch_test.go: content posted ahead to emersion/go-milter's
// server, which answers every command, also those after it rejected the
// message (libmilter ignores them): the engine must stay in step.

package milter_test

import (
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	backend "github.com/mailmux/mailmux/backends/milter"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// go-milter rejects the message at its second header while the headers,
// EOH and body are posted ahead (the MTA reads no reply to them): the
// reject is the verdict at EOM, and on the same session the next message
// gets go-milter's own answers (a TEMPFAIL for one recipient), on a new
// connection (the old one was out of step).
func TestGoMilterServerBatchedReject(t *testing.T) {
	rec := &gmRec{
		header: func(name string) gomilter.Response {
			if name == "X-Bad" {
				return gomilter.RespReject
			}
			return nil
		},
		rcpt: func(rcpt string, m *gomilter.Modifier) gomilter.Response {
			if rcpt == "temp@example.net" {
				return gomilter.RespTempFail
			}
			return nil
		},
		eom: func(m *gomilter.Modifier) gomilter.Response { return gomilter.RespContinue },
	}
	addr, tl := startGoMilter(t, rec, 0, 0)
	b := backend.New(backend.Config{Name: "gomilter", Network: "tcp", Address: addr,
		ConnectTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, EOMTimeout: 5 * time.Second})
	e := &pmult.Engine{Slots: pmulttest.Slots(b)}
	offer := gmV6Offer
	offer.NoReply = pmult.Kinds(pmult.KindHeader, pmult.KindEOH, pmult.KindBody)
	offer.DeferContent = true
	h := pmulttest.Open(t, e, offer)
	h.EnvelopeToData()
	r := h.Message([]string{"Subject", " one", "X-Bad", " yes", "To", " b@example.net"}, "body\r\n")
	if r.Verdict != pmult.Reject {
		t.Fatalf("first message: %+v, want go-milter's reject", r)
	}
	h.Abort()
	if r := h.Mail(); r.Verdict.Objects() {
		t.Fatalf("second MAIL: %+v", r)
	}
	if r := h.Rcpt("temp@example.net"); r.Verdict != pmult.Tempfail {
		t.Fatalf("second message's RCPT: %+v, want go-milter's TEMPFAIL (a stale CONTINUE was read?)", r)
	}
	if r := h.Rcpt("b@example.net"); r.Verdict.Objects() {
		t.Fatalf("RCPT: %+v", r)
	}
	h.Data()
	if r := h.Message([]string{"Subject", " two"}, "body two\r\n"); r.Verdict.Objects() {
		t.Fatalf("second message: %+v", r)
	}
	if n := len(tl.accepted()); n != 2 {
		t.Errorf("%d connections, want 2 (the one out of step replaced)", n)
	}
}

// reuse = true (the default) with go-milter, a protocol version 2 filter:
// never kept (QUIT_NC is version 6), every session on its own connection,
// each served.
func TestGoMilterServerReuseOn(t *testing.T) {
	rec := &gmRec{eom: func(m *gomilter.Modifier) gomilter.Response { return gomilter.RespContinue }}
	addr, tl := startGoMilter(t, rec, 0, 0)
	b := backend.New(backend.Config{Name: "gomilter", Network: "tcp", Address: addr, Reuse: true,
		ConnectTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, EOMTimeout: 5 * time.Second})
	e := &pmult.Engine{Slots: pmulttest.Slots(b)}
	for i := 0; i < 3; i++ {
		h := pmulttest.Open(t, e, gmV6Offer)
		h.EnvelopeToData()
		if r := h.Message([]string{"Subject", " hi"}, "body\r\n"); r.Verdict.Objects() {
			t.Fatalf("session %d: %+v", i, r)
		}
		h.Do(&pmult.Event{Kind: pmult.KindQuit})
	}
	if n := len(tl.accepted()); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}
