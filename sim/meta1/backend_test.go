// backend_test.go: the Backend under mtasim's SMTP-script front, against
// pmult's MeTA1 front in process in front of a real pymilter: header
// modifications by position mapped back to named edits, recipient
// add/delete, message replacement, small chunks with an objecting chunk
// reply, and many sessions on one smtps connection.

package meta1sim_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/sim/meta1"
	"github.com/mailmux/mailmux/sim/mta"
)

func backendFor(t *testing.T, plan realpeer.PyPlan, chunk int) *meta1sim.Backend {
	t.Helper()
	spec, _ := realpeer.StartPyMilter(t, plan)
	addr := startPmult(t, fmt.Sprintf("listen = []\n[meta1]\nlisten = \"inet://127.0.0.1:1\"\n[[backend]]\nname = \"py\"\nurl = %q\n", spec))
	b := meta1sim.NewBackend(meta1sim.BackendConfig{Name: "pm", ChunkSize: chunk,
		Client: meta1sim.Config{Network: "tcp", Address: addr, Timeout: 10 * time.Second}})
	t.Cleanup(func() { b.Close() })
	return b
}

// runScript runs an mtasim script through b and returns the transcript
// and the messages.
func runScript(t *testing.T, b pmult.Backend, script string) (string, []*mtasim.Result) {
	t.Helper()
	var mu sync.Mutex
	var res []*mtasim.Result
	cfg := &mtasim.Config{Backend: b, OnMessage: func(r *mtasim.Result) { mu.Lock(); res = append(res, r); mu.Unlock() }}
	var out bytes.Buffer
	if err := mtasim.RunScript(context.Background(), cfg, mtasim.NewLineReader(strings.NewReader(script)), &out, mtasim.ScriptOptions{}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	return out.String(), res
}

const editMsg = "ehlo x\nmail from:<a@example.org>\nrcpt to:<b@example.com>\nrcpt to:<c@example.com>\ndata\n" +
	"Received: one\nSubject: first\n  folded\nX-Drop: 1\nX-Drop: 2\nTo: b@example.com\n\nbody\n\\E250\n.\nquit\n"

func TestBackendHeaderAndRcptEdits(t *testing.T) {
	realpeer.Require(t, "pymilter")
	b := backendFor(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{
		{Op: "insheader", Name: "X-Top", Value: "top", Index: 0},
		{Op: "chgheader", Name: "Subject", Value: "changed"},
		{Op: "chgheader", Name: "X-Drop", Index: 2, Value: ""},
		{Op: "addheader", Name: "X-Added", Value: "a\n\tb"},
		{Op: "addrcpt", Addr: "<new@example.com>", Args: "NOTIFY=NEVER"},
		{Op: "delrcpt", Addr: "<c@example.com>"},
	}}, 0)
	out, res := runScript(t, b, editMsg)
	if len(res) != 1 {
		t.Fatalf("%d messages\n%s", len(res), out)
	}
	var rep bytes.Buffer
	res[0].Print(&rep, false)
	f := res[0].Final
	var hs []string
	for _, h := range f.Headers {
		hs = append(hs, h.Name+":"+h.Value)
	}
	want := "X-Top: top|Received: one|Subject: changed|X-Drop: 1|To: b@example.com|X-Added: a\n\tb"
	if got := strings.Join(hs, "|"); got != want {
		t.Errorf("headers\n got %q\nwant %q\n%s", got, want, rep.String())
	}
	var rs []string
	for _, r := range f.Rcpts {
		rs = append(rs, strings.TrimSpace(r.Addr+" "+strings.Join(r.Args, " ")))
	}
	if got := strings.Join(rs, " "); got != "<b@example.com> <new@example.com> NOTIFY=NEVER" {
		t.Errorf("recipients %q\n%s", got, rep.String())
	}
	for _, w := range []string{"+ X-Top: top", "- Subject: first", "+ Subject: changed", "- X-Drop: 2", "rcpt:+<new@example.com>", "rcpt:-<c@example.com>"} {
		if !strings.Contains(rep.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, rep.String())
		}
	}
}

func TestBackendReplacement(t *testing.T) {
	realpeer.Require(t, "pymilter")
	b := backendFor(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{
		{Op: "chgheader", Name: "Subject", Value: "changed"},
		{Op: "replacebody", Body: "New body.\r\n"},
	}}, 0)
	out, res := runScript(t, b, editMsg)
	if len(res) != 1 {
		t.Fatalf("%d messages\n%s", len(res), out)
	}
	f := res[0].Final
	if string(f.Body) != "New body.\r\n" || len(f.Headers) != 5 || f.Headers[1].Value != " changed" || f.Headers[0].Value != " one" {
		t.Errorf("final %+v %q", f.Headers, f.Body)
	}
	var rep bytes.Buffer
	res[0].Print(&rep, false)
	if !strings.Contains(rep.String(), "body: replaced (6 -> 11 bytes)") || strings.Count(rep.String(), "\n  ") != 3 {
		t.Errorf("report:\n%s", rep.String()) // the diff: - Subject (2 lines), + Subject
	}
}

// Tiny chunks: a header the milter rejects answers the end of data (the
// chunk reply is the message's); the transaction after it is clean.
func TestBackendChunks(t *testing.T) {
	realpeer.Require(t, "pymilter")
	b := backendFor(t, realpeer.PyPlan{
		Stages:     map[string]realpeer.PyStage{"header": {Action: "reject", Match: "X-Bad", Reply: &realpeer.PyReply{Code: "554", XCode: "5.7.1", Lines: []string{"bad header"}}}},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "yes"}},
	}, 5)
	script := "ehlo x\nmail from:<a@b>\nrcpt to:<c@d>\ndata\nSubject: s\nX-Bad: 1\n\n" + strings.Repeat("line\n", 40) + "\\E554\n.\n" +
		"mail from:<a@b>\nrcpt to:<c@d>\ndata\nSubject: t\n\n" + strings.Repeat("line\n", 40) + "\\E250\n.\nquit\n"
	out, res := runScript(t, b, script)
	if len(res) != 2 || res[1].Verdict != pmult.Continue || len(res[1].Final.Headers) != 2 || len(res[1].Final.Body) != 40*6 {
		t.Errorf("%s %+v", out, res)
	}
}

// Many mtasim sessions at once share the one smtps connection.
func TestBackendSharedConnection(t *testing.T) {
	realpeer.Require(t, "pymilter")
	b := backendFor(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "yes"}}}, 0)
	r, err := mtasim.RunLoad(context.Background(), &mtasim.Config{Backend: b}, mtasim.LoadOptions{Concurrency: 8, Count: 64})
	if err != nil || r.Sessions != 64 || r.Errors != 0 {
		t.Fatalf("%v %+v", err, r)
	}
	c, _ := b.Client(context.Background())
	if c.Reconnects.Load() != 0 {
		t.Errorf("%d reconnects", c.Reconnects.Load())
	}
}
