// front_test.go: the MTA side of pmult against real Postfix: the
// end-of-message keep-alive (two slow editors under a short
// milter_content_timeout, and a hung backend whose failure action must
// act before Postfix gives up), and the macro baseline that keeps what
// main.cf's milter_connect_macros gives the backends that ask for no list.

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

// shortContent is a Postfix whose end-of-message timer is 6 s.
var shortContent = map[string]string{"milter_content_timeout": "6s"}

// postfixWith starts a Postfix in front of milters with extra main.cf
// parameters.
func postfixWith(t *testing.T, milters string, extra map[string]string) *realpeer.Postfix {
	t.Helper()
	return realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: milters, ExtraMain: extra})
}

// Two editors take 4 s each at end of message. Postfix's chain times each
// milter on its own and delivers; through pmult, one Postfix timer covers
// both, so without the keep-alive (progress_interval = 0) the client gets
// a 4xx, and with it (the default) the message is delivered as by the
// chain.
func TestFrontKeepAliveTwoSlowEditors(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	slow := func(name string) string {
		spec, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
			Stages:     map[string]realpeer.PyStage{"eom": {DelayMS: 4000}},
			EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-" + name, Value: "slow " + name}},
		})
		return spec
	}
	specA, specB := slow("A"), slow("B")
	for _, tc := range []struct {
		name    string
		milters func(t *testing.T) string
		deliver bool
	}{
		{"chain", func(t *testing.T) string {
			return realpeer.PostfixMilter(specA) + " " + realpeer.PostfixMilter(specB)
		}, true},
		{"pmult", func(t *testing.T) string {
			spec, p := startPmult(t, "", backend{"A", specA, ""}, backend{"B", specB, ""})
			logPmultOnFailure(t, p)
			return realpeer.PostfixMilter(spec)
		}, true},
		{"pmult without keep-alive", func(t *testing.T) string {
			spec, p := startPmult(t, `progress_interval = "0"`, backend{"A", specA, ""}, backend{"B", specB, ""})
			logPmultOnFailure(t, p)
			return realpeer.PostfixMilter(spec)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pf := postfixWith(t, tc.milters(t), shortContent)
			out, err := pf.Send(t, "--header", "Subject: slow editors")
			if !tc.deliver {
				if rep := replyTo(out, "."); !strings.HasPrefix(rep, "<** 4") {
					t.Errorf("reply to end of data %q, want 4xx (err %v)\n%s", rep, err, out)
				}
				expectNoDelivery(t, pf, 500*time.Millisecond)
				return
			}
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			ds := pf.WaitDelivered(t, 1, deliverTimeout)
			if len(ds) != 1 || ds[0].Header("X-A") != "slow A" || ds[0].Header("X-B") != "slow B" {
				t.Fatalf("want one delivery with X-A and X-B, got:\n%s\nPostfix log:\n%s", describe(ds), pf.Log())
			}
		})
	}
}

// A backend hangs at end of message; on_failure = accept and eom_timeout
// = 10 s, longer than Postfix's 6 s content timeout. The keep-alive keeps
// Postfix waiting, pmult drops the hung backend after its eom_timeout, and
// the message is delivered with the other backend's edit.
func TestFrontHungEOMBackendAccepted(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specH, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{"eom": {DelayMS: 120000}},
	})
	specO, _ := realpeer.StartPyMilter(t, otherPlan)
	spec, p := startPmult(t, "",
		backend{"hung", specH, `on_failure = "accept"` + "\neom_timeout = \"10s\""},
		backend{"other", specO, ""})
	logPmultOnFailure(t, p)
	pf := postfixWith(t, realpeer.PostfixMilter(spec), shortContent)
	start := time.Now()
	out, err := pf.Send(t, "--header", "Subject: hung backend")
	if err != nil {
		t.Fatalf("swaks: %v\n%s\nPostfix log:\n%s", err, out, pf.Log())
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 || ds[0].Header("X-Other") != "yes" {
		t.Fatalf("want one delivery with X-Other, got:\n%s", describe(ds))
	}
	if took := time.Since(start); took < 10*time.Second {
		t.Errorf("delivered after %v, before the hung backend's eom_timeout: the test did not hang it", took)
	}
	if l := waitLogLine(p, 2*time.Second, "backend=hung", "action=accept"); l == "" {
		t.Errorf("pmult logged no failure of backend hung with action accept")
	}
}

// Postfix's milter_connect_macros includes {client_ptr}. Backend A asks
// for its own connect list (SMFIF_SETSYMLIST), B asks for none. In the
// chain B gets {client_ptr} from main.cf; through pmult, Postfix sends the
// list pmult asks for instead, so B gets {client_ptr} only when pmult's
// [mta_macros] baseline has it.
func TestFrontMacroBaseline(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	a := &testmilter.Server{SymLists: []mp.SymList{{Stage: mp.StageConnect, Macros: "{daemon_name}"}}}
	addrA, err := a.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	_, portA, _ := strings.Cut(addrA.String(), ":")
	specA := "inet:" + portA + "@127.0.0.1"
	const connectMacros = "j {daemon_name} {daemon_addr} v _ {client_ptr}"
	extra := map[string]string{"milter_connect_macros": connectMacros}
	baseline := "[mta_macros]\nconnect = " + tomlList(strings.Fields(connectMacros))

	// clientPtr returns what B saw as {client_ptr} at connect, and whether
	// it saw it at all.
	clientPtr := func(t *testing.T, log func() []string) (string, bool) {
		t.Helper()
		for _, e := range pyEvents(t, log) {
			if e.Stage == "connect" {
				v, ok := e.Macros["{client_ptr}"]
				return v, ok
			}
		}
		t.Fatalf("backend B saw no connect")
		return "", false
	}
	run := func(t *testing.T, pmultTop string, viaPmult bool) (string, bool) {
		t.Helper()
		specB, logB := realpeer.StartPyMilter(t, realpeer.PyPlan{})
		milters := realpeer.PostfixMilter(specA) + " " + realpeer.PostfixMilter(specB)
		if viaPmult {
			spec, p := startPmult(t, pmultTop, backend{"A", specA, ""}, backend{"B", specB, ""})
			logPmultOnFailure(t, p)
			milters = realpeer.PostfixMilter(spec)
		}
		pf := postfixWith(t, milters, extra)
		if out, err := pf.Send(t); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		pf.WaitDelivered(t, 1, deliverTimeout)
		return clientPtr(t, logB)
	}

	chainPtr, ok := run(t, "", false)
	if !ok || chainPtr == "" {
		t.Fatalf("chain: B got no {client_ptr} (%q): main.cf's list does not reach it", chainPtr)
	}
	if _, ok := run(t, "", true); ok {
		t.Errorf("pmult without [mta_macros]: B got {client_ptr}, want the MTA-default baseline without it")
	}
	if got, ok := run(t, baseline, true); !ok || got != chainPtr {
		t.Errorf("pmult with [mta_macros]: B got {client_ptr} = %q (present %v), want %q as in the chain", got, ok, chainPtr)
	}
}

// tomlList writes names as a TOML array of strings.
func tomlList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
