// decision_test.go: the decision line through real Postfix. Postfix's own
// "milter-reject:" line never names the milter that rejected; pmult's
// decision line for the same queue id does, and lists the edits each
// backend made; `pmult why QUEUEID` prints the full record.

package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// decisionLine returns pmult's decision line for qid ("" when none yet).
func decisionLine(out, qid string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "msg=decision") && strings.Contains(l, " qid="+qid+" ") {
			return l
		}
	}
	return ""
}

// Two pymilters, one rejects at end of message: Postfix logs the reject
// without a name; pmult's line for that queue id names the rejecter and
// its text, and every backend's verdicts.
func TestDecisionLineNamesRejecter(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specC, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{})
	specR, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{"eom": {Action: "reject",
		Reply: &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"refused by content policy"}}}}})
	pf, p := muxPostfix(t, "", backend{"clean", specC, ""}, backend{"contentfilter", specR, ""})
	out, err := pf.Send(t)
	if err == nil {
		t.Fatalf("swaks succeeded, want a reject at end of data\n%s", out)
	}
	re := regexp.MustCompile(`([0-9A-F]+): milter-reject: END-OF-MESSAGE from [^:]*: (5\.7\.1 [^;]*);`)
	var m []string
	waitFor(deliverTimeout, func() bool { m = re.FindStringSubmatch(pf.Log()); return m != nil })
	if m == nil {
		t.Fatalf("no milter-reject line in the maillog:\n%s", pf.Log())
	}
	qid := m[1]
	if strings.Contains(m[0], "contentfilter") {
		t.Logf("Postfix now names the milter: %s", m[0])
	}
	var line string
	waitFor(deliverTimeout, func() bool { line = decisionLine(p.Output(), qid); return line != "" })
	if line == "" {
		t.Fatalf("no decision line for %s:\n%s", qid, p.Output())
	}
	for _, want := range []string{"level=INFO", "client=unknown[127.0.0.1]", "from=<sender@example.org>", "rcpts=1",
		"reply=reject", "at=eom", "by=contentfilter", `text="550 5.7.1 refused by content policy"`,
		"clean(connect=continue/", "contentfilter(connect=continue/", "eom=reject/", `edits=""`} {
		if !strings.Contains(line, want) {
			t.Errorf("decision line lacks %q:\n%s", want, line)
		}
	}
}

// Two pymilters edit (one signs: a header; one adds a recipient): the
// line lists the edits by backend, and pmult why QUEUEID (over the control
// socket) prints each edit with the backend that made it.
func TestDecisionLineEditsByBackend(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specS, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{
		{Op: "addheader", Name: "X-Signed", Value: "by signer"}}})
	specR, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{
		{Op: "addrcpt", Addr: "<copy@example.com>"}}})
	ctl := filepath.Join(realpeer.Dir(t), "control.sock")
	pf, p := muxPostfix(t, "control_socket = \""+ctl+"\"\n", backend{"signer", specS, ""}, backend{"archiver", specR, ""})
	if out, err := pf.Send(t); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 2, deliverTimeout)
	if len(ds) != 2 {
		t.Fatalf("deliveries: %s", describe(ds))
	}
	re := regexp.MustCompile(`msg=decision .* qid=([0-9A-F]+) `)
	var m []string
	waitFor(deliverTimeout, func() bool { m = re.FindStringSubmatch(p.Output()); return m != nil })
	if m == nil {
		t.Fatalf("no decision line:\n%s", p.Output())
	}
	qid := m[1]
	if !strings.Contains(pf.Log(), qid+":") {
		t.Errorf("queue id %s of the decision line is not in the maillog", qid)
	}
	line := decisionLine(p.Output(), qid)
	if n := strings.Count(settledLog(p), "msg=decision"); n != 1 {
		t.Errorf("%d decision lines for one message, want 1", n)
	}
	for _, want := range []string{"reply=accept", "by=-", `edits="signer(add_header=1) archiver(add_rcpt=1)"`} {
		if !strings.Contains(line, want) {
			t.Errorf("decision line lacks %q:\n%s", want, line)
		}
	}
	why, err := exec.Command(pmultBin, "why", "--socket", ctl, qid).CombinedOutput()
	if err != nil {
		t.Fatalf("pmult why: %v\n%s", err, why)
	}
	for _, want := range []string{"message qid=" + qid, "reply accept at eom", "signer           add_header X-Signed: by signer",
		"archiver         add_rcpt <copy@example.com>", "eom      signer           continue", "answers)"} {
		if !strings.Contains(string(why), want) {
			t.Errorf("pmult why lacks %q:\n%s", want, why)
		}
	}
}
