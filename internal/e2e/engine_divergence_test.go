// engine_divergence_test.go: the engine against Postfix's own chain of the
// same real milters (issue 8): the open budget, a replaced body replayed
// with CRLF to opendkim, the header model (what the next milter sees), the
// EOM verdict in serial mode, read_only and merge modes, DISCARD at
// CONNECT (ignored with a warning, as Postfix does), QUIT_NC after a
// backend's ACCEPT, and a backend's own successive header edits in
// parallel content mode.

package e2e

import (
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// wedgedMilter listens on a free port, accepts connections and never
// answers (not even OPTNEG). It returns the libmilter spec.
func wedgedMilter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return fmt.Sprintf("inet:%d@127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
}

// pyHeaders returns "Name:value" (value trimmed) of the headers the
// pymilter saw in its most recent message.
func pyHeaders(t *testing.T, log func() []string) []string {
	t.Helper()
	evs := pyEvents(t, log)
	last := 0
	for i, e := range evs {
		if e.Stage == "mail" {
			last = i
		}
	}
	var out []string
	for _, e := range evs[last:] {
		if e.Stage == "header" && len(e.Args) > 1 {
			out = append(out, e.Args[0]+":"+strings.TrimSpace(e.Args[1]))
		}
	}
	return out
}

// 1. A backend that accepts TCP and never answers OPTNEG: Postfix's chain
// gives up after milter_command_timeout and applies that milter's
// default_action (accept); pmult must answer Postfix's negotiation within
// its open_timeout, below Postfix's timeout, with the wedged backend
// failed (on_failure = accept) and the healthy one serving the session.
func TestEngineOpenBudget(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	wedged := wedgedMilter(t)
	py, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Healthy", Value: "yes"}},
	})
	extra := map[string]string{"milter_command_timeout": "4s"}
	check := func(t *testing.T, pf *realpeer.Postfix, p *realpeer.Process) {
		t.Helper()
		out, err := pf.Send(t, "--header", "Subject: budget")
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		ds := pf.WaitDelivered(t, 1, deliverTimeout)
		if len(ds) != 1 || ds[0].Header("X-Healthy") != "yes" {
			t.Errorf("want one delivery with X-Healthy: yes, got:\n%s", describe(ds))
		}
		if p != nil {
			// The engine's own limit, or the backend client's (which
			// honours the same budget and usually ends first).
			if !waitFor(5*time.Second, func() bool {
				return logLine(p.Output(), "backend failed", "backend=wedged", "not negotiated within open_timeout") != "" ||
					logLine(p.Output(), "backend failed", "backend=wedged", "within the open budget") != ""
			}) {
				t.Errorf("pmult did not log the wedged backend's failure:\n%s", p.Output())
			}
		}
	}
	t.Run("postfix-chain", func(t *testing.T) {
		pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{ExtraMain: extra, Milters: "{ " +
			realpeer.PostfixMilter(wedged) + ", default_action=accept } " + realpeer.PostfixMilter(py)})
		check(t, pf, nil)
	})
	t.Run("pmult", func(t *testing.T) {
		spec, p := startPmult(t, `open_timeout = "1s"`,
			backend{"wedged", wedged, `on_failure = "accept"`}, backend{"py", py, ""})
		logPmultOnFailure(t, p)
		pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{ExtraMain: extra, Milters: realpeer.PostfixMilter(spec)})
		check(t, pf, p)
	})
}

// 2. A pymilter replaces the body with bare LF line ends; opendkim signs
// after it. Postfix shows opendkim CRLF lines, and so must pmult's replay:
// the message is signed in both setups, with the same result.
func TestEngineReplacedBodyCRLFOpenDKIM(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "opendkim", "opendkim-genkey")
	key := realpeer.GenerateDKIMKey(t, "example.org", "test")
	signer := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "s", Key: key})
	verifier := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "v", Key: key})
	py, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "replacebody", Body: "replaced body\nsecond line\n"}},
	})
	send := func(t *testing.T, milters string, p *realpeer.Process) realpeer.Delivered {
		t.Helper()
		pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: milters})
		if out, err := pf.Send(t, "--header", "Subject: crlf", "--body", "original body\n"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		ds := pf.WaitDelivered(t, 1, deliverTimeout)
		if len(ds) != 1 {
			t.Fatalf("want one delivery, got:\n%s", describe(ds))
		}
		d := ds[0]
		if sigs := d.HeaderValues("DKIM-Signature"); len(sigs) != 1 || !strings.Contains(sigs[0], "d=example.org") {
			t.Errorf("want one DKIM-Signature by example.org, got %q\n%s", sigs, d.Raw)
			if p != nil {
				t.Logf("pmult log:\n%s", p.Output())
			}
		}
		var ar []string
		for _, v := range d.HeaderValues("Authentication-Results") {
			if strings.HasPrefix(v, "verifier.test;") {
				ar = append(ar, v)
			}
		}
		if len(ar) != 1 || !strings.Contains(ar[0], "dkim=pass") {
			t.Errorf("the verifier after the signer: want dkim=pass, got %q", ar)
		}
		if string(d.Body) != "replaced body\nsecond line\n" {
			t.Errorf("body %q", d.Body)
		}
		return d
	}
	var chain, mux realpeer.Delivered
	t.Run("postfix-chain", func(t *testing.T) {
		chain = send(t, realpeer.PostfixMilter(py)+" "+realpeer.PostfixMilter(signer)+" "+realpeer.PostfixMilter(verifier), nil)
	})
	t.Run("pmult", func(t *testing.T) {
		spec, p := startPmult(t, "", backend{"py", py, ""}, backend{"signer", signer, ""}, backend{"verifier", verifier, ""})
		mux = send(t, realpeer.PostfixMilter(spec), p)
	})
	if chain.Raw != nil && mux.Raw != nil {
		names := func(d realpeer.Delivered) []string {
			var out []string
			for _, h := range visibleHeaders(d) {
				n, _, _ := strings.Cut(h, ":")
				out = append(out, n)
			}
			return out
		}
		if got, want := names(mux), names(chain); !reflect.DeepEqual(got, want) {
			t.Errorf("headers: pmult %q, chain %q", got, want)
		}
	}
}

// 10. The header list the next milter sees after INSHEADER 0, INSHEADER 1
// and a CHGHEADER with another name case: the same through pmult as in
// Postfix's chain (X-Top before X-Next; the new name's case).
func TestEngineHeaderModelSameAsPostfix(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specA, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{
		{Op: "insheader", Name: "X-Top", Value: "top", Index: 0},
		{Op: "insheader", Name: "X-Next", Value: "next", Index: 1},
		{Op: "chgheader", Name: "SUBJECT", Index: 1, Value: "changed"},
		{Op: "insheader", Name: "X-Third", Value: "third", Index: 3},
	}})
	specB, logB := realpeer.StartPyMilter(t, realpeer.PyPlan{})
	send := func(t *testing.T, milters string) ([]string, realpeer.Delivered) {
		t.Helper()
		pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: milters})
		if out, err := pf.Send(t, "--header", "Subject: original"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		ds := pf.WaitDelivered(t, 1, deliverTimeout)
		if len(ds) != 1 {
			t.Fatalf("want one delivery, got:\n%s", describe(ds))
		}
		return pyHeaders(t, logB), ds[0]
	}
	chainSaw, chainD := send(t, realpeer.PostfixMilter(specA)+" "+realpeer.PostfixMilter(specB))
	spec, p := startPmult(t, "", backend{"A", specA, ""}, backend{"B", specB, ""})
	logPmultOnFailure(t, p)
	muxSaw, muxD := send(t, realpeer.PostfixMilter(spec))
	strip := func(l []string) []string {
		var out []string
		for _, h := range l {
			switch n, _, _ := strings.Cut(h, ":"); strings.ToLower(n) {
			case "date", "message-id", "x-mailer":
				continue
			}
			out = append(out, h)
		}
		return out
	}
	if got, want := strip(muxSaw), strip(chainSaw); !reflect.DeepEqual(got, want) {
		t.Errorf("B saw\npmult: %q\nchain: %q", got, want)
	}
	if i := indexOf(chainSaw, "X-Top:top"); i < 0 || indexOf(chainSaw, "X-Next:next") != i+1 {
		t.Errorf("chain: B saw %q, want X-Top then X-Next", chainSaw)
	}
	if indexOf(chainSaw, "SUBJECT:changed") < 0 {
		t.Errorf("chain: B saw %q, want SUBJECT:changed", chainSaw)
	}
	if got, want := visibleHeaders(muxD), visibleHeaders(chainD); !reflect.DeepEqual(got, want) {
		t.Errorf("delivered headers\npmult: %q\nchain: %q", got, want)
	}
}

func indexOf(l []string, s string) int {
	for i, x := range l {
		if x == s {
			return i
		}
	}
	return -1
}

// 3. Serial mode, A (editor), B (editor, rejects at EOM), C (read-only,
// tempfails at EOM): the chain answers B's 550 (C never sees the message);
// so does pmult, with read_only "in_order" (default) and "live".
func TestEngineSerialEOMVerdict(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specA, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-A", Value: "a"}}})
	specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{
		"eom": {Action: "reject", Reply: &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"rejected by B"}}}}})
	specC, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{ReadOnly: true, Stages: map[string]realpeer.PyStage{
		"eom": {Action: "tempfail", Reply: &realpeer.PyReply{Code: "451", XCode: "4.7.1", Lines: []string{"tempfailed by C"}}}}})
	reply := func(t *testing.T, pf *realpeer.Postfix) string {
		t.Helper()
		out, _ := pf.Send(t, "--header", "Subject: eom order")
		return replyTo(out, ".")
	}
	chain := reply(t, realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(specA) + " " +
		realpeer.PostfixMilter(specB) + " " + realpeer.PostfixMilter(specC)}))
	if !strings.Contains(chain, "550 5.7.1 rejected by B") {
		t.Fatalf("chain: end of data reply %q", chain)
	}
	for _, top := range []string{"", `read_only = "live"`} {
		t.Run(fmt.Sprintf("pmult %s", top), func(t *testing.T) {
			pf, _ := muxPostfix(t, top, backend{"A", specA, ""}, backend{"B", specB, ""}, backend{"C", specC, ""})
			if got := reply(t, pf); !strings.Contains(got, "550 5.7.1 rejected by B") {
				t.Errorf("pmult: end of data reply %q, want the chain's %q", got, chain)
			}
		})
	}
}

// Decision: read_only = "in_order" (default) gives the chain's result when
// a read-only checker after an editor rejects what the editor flagged;
// "live" is faster and the checker sees the original (accepted).
func TestEngineReadOnlyModes(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	flagger, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Spam-Flag", Value: "YES"}}})
	checker, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{ReadOnly: true, Stages: map[string]realpeer.PyStage{
		"header": {Action: "reject", Match: "X-Spam-Flag: YES",
			Reply: &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"flagged as spam"}}}}})
	reply := func(t *testing.T, pf *realpeer.Postfix) string {
		t.Helper()
		out, _ := pf.Send(t, "--header", "Subject: flag me")
		return replyTo(out, ".")
	}
	chain := reply(t, realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(flagger) + " " +
		realpeer.PostfixMilter(checker)}))
	if !strings.Contains(chain, "550 5.7.1 flagged as spam") {
		t.Fatalf("chain: end of data reply %q", chain)
	}
	for _, tc := range []struct{ top, want string }{
		{"", "550 5.7.1 flagged as spam"},
		{`read_only = "in_order"`, "550 5.7.1 flagged as spam"},
		{`read_only = "live"`, "250 "},
	} {
		t.Run(fmt.Sprintf("pmult %s", tc.top), func(t *testing.T) {
			pf, _ := muxPostfix(t, tc.top, backend{"flagger", flagger, ""}, backend{"checker", checker, ""})
			if got := reply(t, pf); !strings.Contains(got, tc.want) {
				t.Errorf("end of data reply %q, want %q", got, tc.want)
			}
		})
	}
}

// Decision: merge = "strongest" (default) vs "chain". A tempfails and B
// rejects the same recipient: the chain answers A's 451 (the first
// objection); pmult's default the 550, merge = "chain" the chain's 451.
func TestEngineMergeModes(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specA, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{
		"rcpt": {Action: "tempfail", Match: "x@", Reply: &realpeer.PyReply{Code: "451", XCode: "4.7.1", Lines: []string{"A says later"}}}}})
	specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{
		"rcpt": {Action: "reject", Match: "x@", Reply: &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"B says no"}}}}})
	reply := func(t *testing.T, pf *realpeer.Postfix) string {
		t.Helper()
		out, _ := pf.Send(t, "--to", "x@example.com,good@example.com")
		return replyTo(out, "RCPT TO:<x@example.com>")
	}
	chain := reply(t, realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(specA) + " " +
		realpeer.PostfixMilter(specB)}))
	if !strings.Contains(chain, "451 4.7.1 A says later") {
		t.Fatalf("chain: RCPT reply %q", chain)
	}
	for _, tc := range []struct{ top, want string }{
		{"", "550 5.7.1 B says no"},
		{`merge = "chain"`, "451 4.7.1 A says later"},
	} {
		t.Run(fmt.Sprintf("pmult %s", tc.top), func(t *testing.T) {
			pf, _ := muxPostfix(t, tc.top, backend{"A", specA, ""}, backend{"B", specB, ""})
			if got := reply(t, pf); !strings.Contains(got, tc.want) {
				t.Errorf("RCPT reply %q, want %q", got, tc.want)
			}
		})
	}
}

// Decision: DISCARD at CONNECT. Postfix 3.7 logs "DISCARD action is not
// allowed for connect or helo" and goes on as if the milter had said
// continue: the message is delivered, with the other milter's header.
// pmult follows the MTA (it used to discard every message of the
// connection).
func TestEngineDiscardAtConnect(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specA, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{"connect": {Action: "discard"}},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-A", Value: "a"}}})
	specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-B", Value: "b"}}})
	check := func(t *testing.T, pf *realpeer.Postfix, p *realpeer.Process) []string {
		t.Helper()
		if out, err := pf.Send(t, "--header", "Subject: discard at connect"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		ds := pf.WaitDelivered(t, 1, deliverTimeout)
		if len(ds) != 1 || ds[0].Header("X-A") != "a" || ds[0].Header("X-B") != "b" {
			t.Fatalf("want one delivery with X-A and X-B, got:\n%s", describe(ds))
		}
		if p != nil {
			if l := logHas(p, "DISCARD at connect or helo", "backend=A"); l == "" {
				t.Errorf("pmult did not warn about A's DISCARD:\n%s", p.Output())
			}
		}
		return visibleHeaders(ds[0])
	}
	var chain, mux []string
	t.Run("postfix-chain", func(t *testing.T) {
		chain = check(t, realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(specA) + " " +
			realpeer.PostfixMilter(specB)}), nil)
	})
	t.Run("pmult", func(t *testing.T) {
		pf, p := muxPostfix(t, "", backend{"A", specA, ""}, backend{"B", specB, ""})
		mux = check(t, pf, p)
	})
	if !reflect.DeepEqual(chain, mux) {
		t.Errorf("headers: pmult %q, chain %q", mux, chain)
	}
}

// 6+7. Postfix -> pmult (backend reuse = true) -> pmult -> pymilter that
// accepts at RCPT (and a second pymilter, so that the inner pmult's
// answers keep its session to the outer one reusable). The outer pmult
// ends each SMTP session with QUIT_NC to the inner one, which must not
// forward it to a backend whose last answer was an ACCEPT (libmilter would
// ignore it, and then the next CONNECT): it closes that backend and
// reopens it at the next CONNECT. Every session is delivered, as with
// Postfix -> the two pymilters.
func TestEngineQuitNCAfterAccept(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	py, log := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{"rcpt": {Action: "accept"}}})
	py2, log2 := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py2", Value: "yes"}}})
	inner, pi := startPmult(t, "", backend{"py", py, `read_timeout = "3s"`}, backend{"py2", py2, `read_timeout = "3s"`})
	logPmultOnFailure(t, pi)
	pf, po := muxPostfix(t, "", backend{"inner", inner, "reuse = true\nread_timeout = \"10s\""})
	const n = 3
	for i := 1; i <= n; i++ {
		out, err := pf.Send(t, "--header", fmt.Sprintf("Subject: session %d", i))
		if err != nil {
			t.Fatalf("session %d: swaks: %v\n%s", i, err, out)
		}
		if !waitFor(5*time.Second, func() bool { return pyCount(t, log2, "close") >= i }) {
			t.Fatalf("session %d: the milter never saw the session end", i)
		}
		time.Sleep(50 * time.Millisecond) // the outer pmult parks the connection
	}
	ds := pf.WaitDelivered(t, n, deliverTimeout)
	if len(ds) != n {
		t.Errorf("want %d deliveries, got:\n%s", n, describe(ds))
	}
	for _, d := range ds {
		if d.Header("X-Py2") != "yes" {
			t.Errorf("%s: no X-Py2", d.Header("Subject"))
		}
	}
	// The outer pmult did reuse its connection to the inner one, and the
	// inner one kept py2's (EOM answered) and reopened py's.
	if c := strings.Count(settledLog(pi), "msg=negotiated"); c != 1 {
		t.Errorf("the inner pmult negotiated %d times with the outer one, want 1 (reuse)", c)
	}
	if c, want := pyCount(t, log, "negotiate"), n; c != want {
		t.Errorf("py negotiated %d times, want %d (reopened after each QUIT_NC)", c, want)
	}
	if c := pyCount(t, log2, "negotiate"); c != 1 {
		t.Errorf("py2 negotiated %d times, want 1 (it takes QUIT_NC)", c)
	}
	if c := pyCount(t, log, "connect"); c != n {
		t.Errorf("py saw %d connects, want %d", c, n)
	}
	for _, p := range []*realpeer.Process{po, pi} {
		if l := logLine(settledLog(p), "backend failed"); l != "" {
			t.Errorf("pmult: %s", l)
		}
	}
	pyErrors(t, log)
}

// 8. content = "parallel": B's own successive header edits (two deletes
// of X-Spam 1, an add then a change of the added header, two inserts at
// the same index), made against the original, are translated through B's
// own view: the delivered headers equal those of Postfix's chain A B.
func TestEngineParallelOwnEdits(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	specA, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{
		{Op: "addheader", Name: "X-A", Value: "a"}}})
	specB, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{
		{Op: "chgheader", Name: "X-Spam", Index: 1, Value: ""},
		{Op: "chgheader", Name: "X-Spam", Index: 1, Value: ""},
		{Op: "addheader", Name: "X-New", Value: "first"},
		{Op: "chgheader", Name: "X-New", Index: 1, Value: "second"},
		{Op: "insheader", Name: "X-I1", Value: "1", Index: 1},
		{Op: "insheader", Name: "X-I2", Value: "2", Index: 1},
	}})
	send := func(t *testing.T, milters string) []string {
		t.Helper()
		pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: milters})
		if out, err := pf.Send(t, "--header", "Subject: parallel", "--header", "X-Spam: 1",
			"--header", "X-Spam: 2", "--header", "X-Spam: 3"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		ds := pf.WaitDelivered(t, 1, deliverTimeout)
		if len(ds) != 1 {
			t.Fatalf("want one delivery, got:\n%s", describe(ds))
		}
		return visibleHeaders(ds[0])
	}
	chain := send(t, realpeer.PostfixMilter(specA)+" "+realpeer.PostfixMilter(specB))
	if n := strings.Count(strings.Join(chain, "\n"), "X-Spam:"); n != 1 {
		t.Fatalf("chain: %d X-Spam headers left, want 1: %q", n, chain)
	}
	spec, p := startPmult(t, `content = "parallel"`, backend{"A", specA, ""}, backend{"B", specB, ""})
	logPmultOnFailure(t, p)
	if mux := send(t, realpeer.PostfixMilter(spec)); !reflect.DeepEqual(mux, chain) {
		t.Errorf("delivered headers\npmult: %q\nchain: %q", mux, chain)
	}
}
