// spool_test.go: a message bigger than pmult's in-memory threshold
// (spool_memory) through real Postfix and two serial pymilter editors: the
// second editor gets it replayed from the spool file, whole, with the
// first one's header, and the mail delivered is the same as with Postfix's
// own chain of the two; and a message over max_message gets 552 5.3.4.

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// bigBody is about 370 KB of numbered CRLF lines (so that order matters).
func bigBody() string {
	var b strings.Builder
	for i := 0; i < 6000; i++ {
		fmt.Fprintf(&b, "line %05d %s\r\n", i, strings.Repeat(string(rune('a'+i%26)), 48))
	}
	return b.String()
}

// bodySeen is the body the pymilter got in its most recent message.
func bodySeen(t *testing.T, log func() []string) string {
	t.Helper()
	evs := pyEvents(t, log)
	last := 0
	for i, e := range evs {
		if e.Stage == "mail" {
			last = i
		}
	}
	var b strings.Builder
	for _, e := range evs[last:] {
		if e.Stage == "body" && len(e.Args) > 0 {
			b.WriteString(e.Args[0])
		}
	}
	return b.String()
}

func TestSpoolBigMessageSameAsChain(t *testing.T) { spoolBigMessage(t, false) }

// The same with the milters on unix sockets: pmult's connections to them
// are internal/unixconn's, and B's replay (about 370 KB in one write) is
// more than the socket takes at once, so the write waits for libmilter
// to read.
func TestSpoolBigMessageUnixSockets(t *testing.T) { spoolBigMessage(t, true) }

func spoolBigMessage(t *testing.T, unix bool) {
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	planA := realpeer.PyPlan{EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-A", Value: "added by A"}}}
	planB := realpeer.PyPlan{EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-B", Value: "added by B"}}}
	dir := realpeer.Dir(t)
	var specA, specB string
	var logB func() []string
	if unix {
		specA, specB = "unix:"+filepath.Join(dir, "a.sock"), "unix:"+filepath.Join(dir, "b.sock")
		realpeer.StartPyMilterAt(t, specA, planA)
		_, logB = realpeer.StartPyMilterAt(t, specB, planB)
	} else {
		specA, _ = realpeer.StartPyMilter(t, planA)
		specB, logB = realpeer.StartPyMilter(t, planB)
	}
	bodyFile := filepath.Join(dir, "body.txt")
	body := bigBody()
	if err := os.WriteFile(bodyFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	send := func(pf *realpeer.Postfix) {
		if out, err := pf.Send(t, "--header", "Subject: big", "--body", "@"+bodyFile, "--suppress-data"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
	}

	chain := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(specA) + " " + realpeer.PostfixMilter(specB)})
	send(chain)
	chainDs := chain.WaitDelivered(t, 1, deliverTimeout)
	chainSawB, chainBodyB := headersSeen(t, logB), bodySeen(t, logB)

	spoolDir := filepath.Join(dir, "spool")
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	mux, pm := startPmult(t, fmt.Sprintf("spool_memory = 65536\nspool_dir = %q\n", spoolDir),
		backend{"A", specA, ""}, backend{"B", specB, ""})
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(mux)})
	send(pf)
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	muxSawB, muxBodyB := headersSeen(t, logB), bodySeen(t, logB)

	if len(ds) != 1 || len(chainDs) != 1 {
		t.Fatalf("deliveries: pmult %d, chain %d\npmult log:\n%s", len(ds), len(chainDs), pm.Output())
	}
	d, cd := ds[0], chainDs[0]
	if !muxSawB["X-A"] || !chainSawB["X-A"] {
		t.Errorf("B saw A's header: through pmult %v, in the chain %v", muxSawB["X-A"], chainSawB["X-A"])
	}
	// (swaks ends the body with an empty line of its own.)
	if !strings.HasPrefix(muxBodyB, body) || len(muxBodyB) > len(body)+4 {
		t.Errorf("through pmult, B got %d bytes of body, want the %d sent", len(muxBodyB), len(body))
	}
	if chainBodyB != muxBodyB {
		t.Errorf("B's body: through pmult %d bytes, in the chain %d bytes, not the same", len(muxBodyB), len(chainBodyB))
	}
	for name, want := range map[string]string{"X-A": "added by A", "X-B": "added by B"} {
		if got := d.Header(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got, want := visibleHeaders(d), visibleHeaders(cd); !reflect.DeepEqual(got, want) {
		t.Errorf("headers differ\npmult: %q\nchain: %q", got, want)
	}
	if string(d.Body) != string(cd.Body) || !strings.HasPrefix(string(d.Body), strings.ReplaceAll(body, "\r\n", "\n")) {
		t.Errorf("delivered body: pmult %d bytes, chain %d bytes, sent %d", len(d.Body), len(cd.Body), len(body))
	}
	if logHas(pm, "message spilled to disk") == "" {
		t.Errorf("pmult did not spill the message:\n%s", pm.Output())
	}
	if ents, err := os.ReadDir(spoolDir); err != nil || len(ents) != 0 {
		t.Errorf("spool dir after the message: %v %v", ents, err)
	}
}

// Over max_message: 552 5.3.4 at end of data, not delivered.
func TestSpoolMaxMessage(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specA, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{})
	specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{})
	dir := realpeer.Dir(t)
	bodyFile := filepath.Join(dir, "body.txt")
	if err := os.WriteFile(bodyFile, []byte(bigBody()), 0o644); err != nil {
		t.Fatal(err)
	}
	mux, pm := startPmult(t, "max_message = 131072\nspool_memory = 65536\n", backend{"A", specA, ""}, backend{"B", specB, ""})
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(mux)})
	out, err := pf.Send(t, "--body", "@"+bodyFile, "--suppress-data")
	if err == nil || !strings.Contains(out, "552 5.3.4 Message too big") {
		t.Errorf("swaks: %v, want 552 5.3.4:\n%s\npmult log:\n%s", err, out, pm.Output())
	}
	if logHas(pm, "message too big") == "" {
		t.Errorf("pmult log lacks the refusal:\n%s", pm.Output())
	}
}
