// perf_test.go: the round-trip savings of issue 15 keep Postfix's
// behaviour: pmult lets Postfix not wait for replies to headers, EOH and
// body chunks (NR_HDR, NR_EOH, NR_BODY) and gives a verdict reached there
// at end of message. The SMTP replies, the deliveries and what Postfix
// logs must be those of Postfix's own chain of the same milters.

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// TestPerfContentVerdictsSameAsChain: milter A answers one content event
// with a verdict (a header matched by its text, EOH, the body), milter B
// adds a header at end of message; Postfix chaining A B and Postfix in
// front of pmult (A, B) must give the same reply to the end of DATA,
// deliver the same (or nothing, or hold), and B's header must be there
// (or not) in both.
func TestPerfContentVerdictsSameAsChain(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	reply := &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"header refused by A"}}
	for _, tc := range []struct {
		name  string
		stage string
		st    realpeer.PyStage
		log   string // what Postfix logs in both setups ("" nothing to check)
	}{
		{"header reject with text", "header", realpeer.PyStage{Action: "reject", Match: "X-Trigger: yes", Reply: reply}, "milter-reject: END-OF-MESSAGE"},
		{"header reject", "header", realpeer.PyStage{Action: "reject", Match: "X-Trigger: yes"}, "milter-reject: END-OF-MESSAGE"},
		{"header tempfail", "header", realpeer.PyStage{Action: "tempfail", Match: "X-Trigger: yes"}, "milter-reject: END-OF-MESSAGE"},
		{"header discard", "header", realpeer.PyStage{Action: "discard", Match: "X-Trigger: yes"}, "milter triggers DISCARD action"},
		{"header accept", "header", realpeer.PyStage{Action: "accept", Match: "X-Trigger: yes"}, ""},
		{"eoh reject", "eoh", realpeer.PyStage{Action: "reject"}, "milter-reject: END-OF-MESSAGE"},
		{"body tempfail", "body", realpeer.PyStage{Action: "tempfail"}, "milter-reject: END-OF-MESSAGE"},
		{"body accept", "body", realpeer.PyStage{Action: "accept"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			specA, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
				Stages:     map[string]realpeer.PyStage{tc.stage: tc.st},
				EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-A", Value: "by A"}},
			})
			specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
				EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-B", Value: "by B"}},
			})
			send := func(pf *realpeer.Postfix) string {
				out, _ := pf.Send(t, "--header", "Subject: verdicts", "--header", "X-Trigger: yes",
					"--header", "X-After: more", "--body", "a body line")
				return replyTo(out, ".")
			}
			chain := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(specA) + " " + realpeer.PostfixMilter(specB)})
			pf, p := muxPostfix(t, "", backend{"A", specA, ""}, backend{"B", specB, ""})
			chainRep, muxRep := send(chain), send(pf)
			// The queue ids differ: compare the replies without them.
			if strip(chainRep) != strip(muxRep) {
				t.Errorf("reply to end of DATA: chain %q, pmult %q", chainRep, muxRep)
			}
			delivered := strings.HasPrefix(chainRep, "<-  250") && tc.log == ""
			var cds, mds []realpeer.Delivered
			if delivered {
				cds, mds = chain.WaitDelivered(t, 1, deliverTimeout), pf.WaitDelivered(t, 1, deliverTimeout)
			} else {
				time.Sleep(time.Second)
				cds, mds = chain.Deliveries(t), pf.Deliveries(t)
			}
			if len(cds) != len(mds) {
				t.Fatalf("chain delivered %d, pmult %d:\n%s", len(cds), len(mds), describe(mds))
			}
			for i := range cds {
				for _, h := range []string{"X-A", "X-B"} {
					if c, m := cds[i].Header(h), mds[i].Header(h); c != m {
						t.Errorf("%s: chain %q, pmult %q", h, c, m)
					}
				}
			}
			if tc.log != "" {
				for side, log := range map[string]string{"chain": chain.Log(), "pmult": pf.Log()} {
					if !strings.Contains(log, tc.log) {
						t.Errorf("%s: maillog lacks %q", side, tc.log)
					}
				}
			}
			if l := logLine(p.Output(), "backend failed"); l != "" {
				t.Errorf("pmult: %s", l)
			}
		})
	}
}

// strip drops a queue id ("queued as ABC123") from a reply.
func strip(rep string) string {
	if i := strings.Index(rep, "queued as "); i >= 0 {
		return rep[:i]
	}
	return rep
}
