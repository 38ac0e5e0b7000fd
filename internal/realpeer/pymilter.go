// pymilter.go: runs testdata/pymilter/actions.py, a scriptable real
// libmilter milter (pymilter), with a plan given as a Go struct.

package realpeer

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

//go:embed testdata/pymilter/actions.py
var actionsPy []byte

// PyPlan tells actions.py what to do; it is written to a JSON file (the
// JSON names are given in the tags and in actions.py's header).
type PyPlan struct {
	// Log is the file actions.py appends one JSON line per callback to.
	// StartPyMilter sets it when empty.
	Log string `json:"log"`
	// Macros lists extra macro names to ask for and log, besides the
	// usual Sendmail/Postfix ones.
	Macros []string `json:"macros,omitempty"`
	// Stages maps a stage to its answer. Stages: connect, helo, mail, rcpt,
	// data, header, eoh, body, eom. Missing stages answer continue.
	Stages map[string]PyStage `json:"stages,omitempty"`
	// EOMActions run in order at end of message, before the eom answer.
	EOMActions []PyAction `json:"eom_actions,omitempty"`
	// ReadOnly makes the milter negotiate no actions (a checker that
	// cannot modify the message); EOMActions must then be empty.
	ReadOnly bool `json:"read_only,omitempty"`
}

// PyStage is the answer at one stage.
type PyStage struct {
	// Action: "continue" (default), "accept", "reject", "tempfail",
	// "discard".
	Action string `json:"action,omitempty"`
	// Match, when set, applies the stage only when the stage's text
	// contains it (connect: hostname, helo: name, mail/rcpt: address as
	// received, e.g. "<b@example.com>", header: "Name: value", body:
	// chunk); otherwise the stage answers continue.
	Match string `json:"match,omitempty"`
	// DelayMS sleeps that long before answering (only when Match matches).
	DelayMS int `json:"delay_ms,omitempty"`
	// Reply sets a custom reply for reject/tempfail (smfi_setmlreply when
	// it has more than one line).
	Reply *PyReply `json:"reply,omitempty"`
}

// PyReply is a custom SMTP reply.
type PyReply struct {
	Code  string   `json:"code"`            // "550"; must be 4xx/5xx
	XCode string   `json:"xcode,omitempty"` // "5.7.1"
	Lines []string `json:"lines"`           // one or more text lines (no '%' unless doubled)
}

// PyAction is one end-of-message modification.
type PyAction struct {
	// Op: "addheader" (Name, Value), "insheader" (Name, Value, Index;
	// 0 = top), "chgheader" (Name, Index: 1-based occurrence, default 1;
	// Value "" deletes), "addrcpt" (Addr, Args: ESMTP args, optional),
	// "delrcpt" (Addr), "chgfrom" (Addr, Args), "replacebody" (Body),
	// "quarantine" (Reason).
	Op     string `json:"op"`
	Name   string `json:"name,omitempty"`
	Value  string `json:"value,omitempty"`
	Index  int    `json:"index,omitempty"`
	Addr   string `json:"addr,omitempty"`
	Args   string `json:"args,omitempty"`
	Body   string `json:"body,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// PyEvent is one line of actions.py's log.
type PyEvent struct {
	Conn   int               `json:"conn"`  // per-process connection number, from 1
	Stage  string            `json:"stage"` // negotiate, connect, helo, mail, rcpt, data, header, eoh, body, eom, abort, close, unknown, error
	Args   []string          `json:"args"`
	Macros map[string]string `json:"macros"`
}

// ParsePyEvents decodes log lines returned by StartPyMilter's log func.
func ParsePyEvents(lines []string) ([]PyEvent, error) {
	evs := make([]PyEvent, 0, len(lines))
	for _, l := range lines {
		var e PyEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			return evs, fmt.Errorf("pymilter log line %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// StartPyMilter runs actions.py (under /usr/bin/python3) with the plan,
// listening on a free port on 127.0.0.1, and waits until it accepts. It
// returns the libmilter socket spec "inet:PORT@127.0.0.1" (for Postfix use
// PostfixMilter(spec)) and a func returning the log lines so far (decode
// with ParsePyEvents). The milter is stopped in t.Cleanup.
func StartPyMilter(t testing.TB, plan PyPlan) (spec string, log func() []string) {
	t.Helper()
	_, spec, logFile := startPyMilter(t, plan)
	return spec, func() []string { return readLines(logFile) }
}

// StartPyMilterAt is StartPyMilter listening on spec (a libmilter spec:
// "inet:PORT@127.0.0.1" or "unix:/path"; a unix socket is made mode 0666
// once it listens, so that Postfix's smtpd, running as user postfix, can
// connect to it).
func StartPyMilterAt(t testing.TB, spec string, plan PyPlan) (p *Process, log func() []string) {
	t.Helper()
	p, _, logFile := startPyMilterAt(t, spec, plan)
	return p, func() []string { return readLines(logFile) }
}

func startPyMilter(t testing.TB, plan PyPlan) (*Process, string, string) {
	t.Helper()
	return startPyMilterAt(t, "", plan)
}

func startPyMilterAt(t testing.TB, spec string, plan PyPlan) (*Process, string, string) {
	t.Helper()
	Require(t, "pymilter")
	dir := Dir(t)
	script := filepath.Join(dir, "actions.py")
	if err := os.WriteFile(script, actionsPy, 0o755); err != nil {
		t.Fatalf("realpeer: pymilter: %v", err)
	}
	if plan.Log == "" {
		plan.Log = filepath.Join(dir, "events.jsonl")
	}
	if err := os.WriteFile(plan.Log, nil, 0o644); err != nil {
		t.Fatalf("realpeer: pymilter: %v", err)
	}
	js, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		t.Fatalf("realpeer: pymilter plan: %v", err)
	}
	planFile := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planFile, js, 0o644); err != nil {
		t.Fatalf("realpeer: pymilter: %v", err)
	}
	if spec == "" {
		spec = "inet:" + strconv.Itoa(FreePort(t)) + "@127.0.0.1"
	}
	cmd := exec.Command(PythonPath, "-u", script, spec, planFile)
	cmd.Dir = dir
	p := StartProcess(t, "pymilter actions.py", cmd)
	p.WaitReady(t, spec, 15*time.Second)
	if path, ok := strings.CutPrefix(spec, "unix:"); ok {
		if err := os.Chmod(path, 0o666); err != nil {
			t.Fatalf("realpeer: pymilter: %v", err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("realpeer: pymilter plan (%s):\n%s\npymilter events:\n%s",
				planFile, js, tail(strings.Join(readLines(plan.Log), "\n"), 8000))
		}
	})
	return p, spec, plan.Log
}

// readLines returns the complete (newline-terminated), non-empty lines of
// a file; a line still being written is left out.
func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := strings.Split(string(b), "\n")
	lines = lines[:len(lines)-1]
	var out []string
	for _, l := range lines {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// StartPyMilterProcess is StartPyMilter that also returns the process, for
// tests that kill the milter in the middle of a session.
func StartPyMilterProcess(t testing.TB, plan PyPlan) (p *Process, spec string, log func() []string) {
	t.Helper()
	p, spec, logFile := startPyMilter(t, plan)
	return p, spec, func() []string { return readLines(logFile) }
}
