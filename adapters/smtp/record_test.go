package smtp

import (
	"net"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// The decision record (`pmult why`) of a message the backends accepted
// says what the client got after the end of data: the next hop's
// refusal, or a quarantine carried out as 451 or 550, with the policy
// that decided it; an accepted one stays accepted.
func TestDecisionRecordAfterEOM(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tune    func(*Server, *fakeHop)
		edits   []pmult.Edit
		reply   string // the client's, prefix
		verdict pmult.Verdict
		policy  pmult.RecPolicy
	}{
		{name: "relayed", reply: "250 2.0.0 Ok: queued as", verdict: pmult.Continue},
		{name: "next hop fails at DATA", tune: func(_ *Server, h *fakeHop) { h.dataErr = net.ErrClosed },
			reply: "451 4.4.1 next hop down", verdict: pmult.Tempfail,
			policy: pmult.RecPolicy{What: "next_hop", Backend: "pmult", Stage: pmult.KindEOM, Action: "data"}},
		{name: "quarantine tempfail", tune: func(s *Server, _ *fakeHop) { s.Quarantine = QuarantineTempfail },
			edits: []pmult.Edit{{Kind: pmult.EditQuarantine, Value: "looks bad"}},
			reply: "451 4.7.1 Message held for review", verdict: pmult.Tempfail,
			policy: pmult.RecPolicy{What: "quarantine", Backend: "pmult", Stage: pmult.KindEOM, Action: "tempfail"}},
		{name: "quarantine reject", tune: func(s *Server, _ *fakeHop) { s.Quarantine = QuarantineReject },
			edits: []pmult.Edit{{Kind: pmult.EditQuarantine, Value: "looks bad"}},
			reply: "550 5.7.1 Message rejected: quarantined", verdict: pmult.Reject,
			policy: pmult.RecPolicy{What: "quarantine", Backend: "pmult", Stage: pmult.KindEOM, Action: "reject"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := pmulttest.New("b", pmult.Caps{Actions: pmult.ActQuarantine})
			b.On[pmult.KindEOM] = pmulttest.Step{Edits: tc.edits}
			rec := pmult.NewRecorder(10)
			var hop *fakeHop
			f := startFront(t, func(s *Server) {
				s.Engine.Records = rec
				hop = s.NextHop.(*fakeHop)
				if tc.tune != nil {
					tc.tune(s, hop)
				}
			}, b)
			r := dialRaw(t, f.addr)
			r.reply()
			session(t, r, "EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.com>", "DATA")
			if got := r.cmd("Subject: s\r\n\r\nb\r\n."); !strings.HasPrefix(got, tc.reply) {
				t.Fatalf("client got %q, want %q", got, tc.reply)
			}
			r.cmd("QUIT")
			// Ended before the client had the reply: no wait.
			recs := rec.Find("1") // the connection's session id
			if len(recs) != 1 {
				t.Fatalf("records %+v", recs)
			}
			got := recs[0]
			if got.Reply != tc.verdict || got.Ended != "eom" {
				t.Errorf("record: %v at %s by %s %q, want %v", got.Reply, got.Ended, got.By, got.Text, tc.verdict)
			}
			if tc.verdict.Objects() && (got.By != "pmult" || !strings.HasPrefix(got.Text, tc.reply)) {
				t.Errorf("record: by %q text %q, want pmult %q", got.By, got.Text, tc.reply)
			}
			if tc.policy.What == "" && len(got.Policy) != 0 || tc.policy.What != "" && (len(got.Policy) != 1 || got.Policy[0] != tc.policy) {
				t.Errorf("policies %+v, want %+v", got.Policy, tc.policy)
			}
		})
	}
}
