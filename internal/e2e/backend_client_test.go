// backend_client_test.go: the backend client's reply checks against real
// Postfix. A backend whose reply text Postfix calls malformed ("550 4.7.1
// ...", as libmilter's smfi_setreply makes it) fails alone, as in
// Postfix's own chain: pmult never forwards the text (which would make
// Postfix fail pmult, and so every backend, for the session).

package e2e

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestBackendMalformedReplyFailsAlone(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	// A rejects bad@ with a reply whose enhanced status code is of another
	// class than its SMTP code; B adds a header to every message.
	specA, logA := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &realpeer.PyReply{
				Code: "550", XCode: "4.7.1", Lines: []string{"class mismatch from A"}}},
		},
	})
	specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-B", Value: "added by B"}},
	})
	send := func(pf *realpeer.Postfix) string {
		out, err := pf.Send(t, "--from", "orig@example.org", "--to", "good@example.com,bad@example.com",
			"--header", "Subject: malformed reply test", "--body", "body")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		return out
	}
	const action = "accept" // milter_default_action = A's on_failure

	chain := realpeer.StartPostfix(t, realpeer.PostfixOptions{DefaultAction: action,
		Milters: realpeer.PostfixMilter(specA) + " " + realpeer.PostfixMilter(specB)})
	chainOut := send(chain)
	chainDs := chain.WaitDelivered(t, 2, deliverTimeout)
	if !strings.Contains(chain.Log(), "malformed reply: 550 4.7.1") {
		t.Errorf("the chain's Postfix did not call A's reply malformed (did A send it?):\n%s", chain.Log())
	}

	mux, pm := startPmult(t, "", backend{"A", specA, `on_failure = "` + action + `"`}, backend{"B", specB, ""})
	logPmultOnFailure(t, pm)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{DefaultAction: action, Milters: realpeer.PostfixMilter(mux)})
	muxOut := send(pf)
	ds := pf.WaitDelivered(t, 2, deliverTimeout)

	if strings.Contains(pf.Log(), "malformed reply") {
		t.Errorf("pmult forwarded a reply Postfix calls malformed:\n%s", pf.Log())
	}
	if l := waitLogLine(pm, deliverTimeout, "backend failed", "A", "550 4.7.1 class mismatch"); l == "" {
		t.Errorf("pmult logged no failure line naming backend A and its text")
	}
	if got, want := replyTo(muxOut, "RCPT TO:<bad@"), replyTo(chainOut, "RCPT TO:<bad@"); got != want {
		t.Errorf("reply to RCPT bad@: pmult %q, chain %q", got, want)
	}
	m, cm := byRecipient(ds), byRecipient(chainDs)
	if got, want := keys(m), keys(cm); !reflect.DeepEqual(got, want) {
		t.Fatalf("recipients: pmult %v, chain %v\npmult:\n%s", got, want, describe(ds))
	}
	for rcpt, cd := range cm {
		md := m[rcpt]
		if md.Header("X-B") != "added by B" {
			t.Errorf("%s: B's header missing through pmult (pmult was bypassed?)", rcpt)
		}
		if got, want := visibleHeaders(md), visibleHeaders(cd); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: headers differ\npmult: %q\nchain: %q", rcpt, got, want)
		}
	}
	pyErrors(t, logA)
}
