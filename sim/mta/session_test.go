// session_test.go: edge cases against the scriptable Go test milter
// (internal/testmilter): edits real milters rarely make together, a milter
// that dies mid-session, F=T, unreachable milters, old protocol versions,
// macros, expectations and malformed scripts.

package mtasim

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

// startTM starts a test milter and returns a Config for it.
func startTM(t *testing.T, srv *testmilter.Server, flags string) *Config {
	t.Helper()
	addr, err := srv.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	spec := "inet:" + addr.(*net.TCPAddr).AddrPort().String()
	if flags != "" {
		spec = "t, S=" + spec + ", " + flags
	}
	p, err := ParsePort(spec)
	if err != nil {
		t.Fatal(err)
	}
	return &Config{Backend: p.Backend(6), FilterName: spec, OnFailure: p.OnFailure, RequireHelo: true}
}

func runScript(t *testing.T, cfg *Config, script string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := RunScript(context.Background(), cfg, NewLineReader(strings.NewReader(script)), &out, ScriptOptions{})
	return out.String(), err
}

const basicScript = `ehlo client.example.org
mail from:<a@example.org>
rcpt to:<b@example.com>
data
Subject: hi
Message-Id: <m1@example.org>

body
.
quit
`

func TestEditsApplied(t *testing.T) {
	srv := &testmilter.Server{Actions: mp.ActAllMask, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code != mp.CmdEOB {
			return nil
		}
		return []mp.Packet{
			testmilter.Reply(mp.RespChgFrom, testmilter.Str("<new@example.org>", "SIZE=10")),
			testmilter.Reply(mp.RespAddRcptPar, testmilter.Str("<c@example.com>", "NOTIFY=NEVER")),
			testmilter.Reply(mp.RespDelRcpt, testmilter.Str("<b@example.com>")),
			testmilter.Reply(mp.RespAddHeader, testmilter.Str("X-Added", "yes")),
			testmilter.Reply(mp.RespQuarantine, testmilter.Str("held for review")),
			testmilter.Reply(mp.RespReplBody, []byte("new body\r\n")),
			{Code: mp.RespAccept},
		}
	}}
	cfg := startTM(t, srv, "")
	var res *Result
	cfg.OnMessage = func(r *Result) { res = r }
	out, err := runScript(t, cfg, basicScript)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res == nil {
		t.Fatal("no result")
	}
	f := res.Final
	if f.From != "<new@example.org>" || len(f.Rcpts) != 1 || f.Rcpts[0].Addr != "<c@example.com>" ||
		string(f.Body) != "new body\r\n" || res.Quarantine != "held for review" || res.Delivered() {
		t.Errorf("result: %+v quarantine %q", f, res.Quarantine)
	}
	var rep bytes.Buffer
	res.Print(&rep, true)
	for _, want := range []string{"quarantine (at eom)", "from: <a@example.org> -> <new@example.org> SIZE=10",
		"rcpt:+<c@example.com> NOTIFY=NEVER", "rcpt:-<b@example.com>", "+ X-Added: yes", "body: replaced", "new body"} {
		if !strings.Contains(rep.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, rep.String())
		}
	}
}

func TestMilterDiesMidSession(t *testing.T) {
	srv := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdRcpt {
			return testmilter.Close
		}
		return nil
	}}
	cfg := startTM(t, srv, "")
	out, err := runScript(t, cfg, basicScript)
	var fe *FilterError
	if !errors.As(err, &fe) || ExitCode(err) != ExitUnavailable {
		t.Fatalf("err = %v (exit %d), want a FilterError (69)\n%s", err, ExitCode(err), out)
	}
	// A 354 reply line, not "354" anywhere (the milter's port is in the
	// transcript: 127.0.0.1:35457 failed this once).
	if !strings.Contains(out, "451 4.3.2") || strings.HasPrefix(out, "354") || strings.Contains(out, "\n354") {
		t.Errorf("transcript:\n%s", out)
	}

	// With F=T the session goes on and every later command is tempfailed.
	cfg = startTM(t, &testmilter.Server{Handler: srv.Handler}, "F=T")
	out, err = runScript(t, cfg, basicScript)
	if err != nil || strings.Count(out, "451 4.3.2") < 2 || !strings.Contains(out, "221") {
		t.Errorf("F=T: err %v\n%s", err, out)
	}
}

func TestUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p, _ := ParsePort("inet:" + strings.Replace(addr, "127.0.0.1:", "", 1) + "@127.0.0.1")
	cfg := &Config{Backend: p.Backend(6)}
	_, err := runScript(t, cfg, basicScript)
	if ExitCode(err) != ExitUnavailable || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, exit %d", err, ExitCode(err))
	}
}

// A v2 filter (no DATA, no UNKNOWN events, no CHGFROM) still works.
func TestOldVersion(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := &testmilter.Server{Version: 2, Actions: mp.ActAddHeaders, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		mu.Lock()
		seen = append(seen, string(p.Code))
		mu.Unlock()
		if p.Code == mp.CmdEOB {
			return []mp.Packet{testmilter.Reply(mp.RespAddHeader, testmilter.Str("X-V2", "1")), {Code: mp.RespContinue}}
		}
		return nil
	}}
	cfg := startTM(t, srv, "")
	var res *Result
	cfg.OnMessage = func(r *Result) { res = r }
	out, err := runScript(t, cfg, "ehlo x\nfoo bar\n"+strings.TrimPrefix(basicScript, "ehlo client.example.org\n"))
	if err != nil || res == nil || res.Final.Headers[len(res.Final.Headers)-1].Value != " 1" {
		t.Fatalf("err %v res %+v\n%s", err, res, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if s := strings.Join(seen, ""); strings.Contains(s, "T") || strings.Contains(s, "U") {
		t.Errorf("v2 filter got DATA or UNKNOWN: %s", s)
	}
}

func TestMacrosAndVerdicts(t *testing.T) {
	var mu sync.Mutex
	macros := map[string]string{}
	var cmds []string
	srv := &testmilter.Server{
		Actions:  mp.ActAllMask | mp.ActSetSymList,
		SymLists: []mp.SymList{{Stage: mp.StageEnvRcpt, Macros: "{rcpt_addr} {client_port} {mail_addr}"}},
		Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
			mu.Lock()
			defer mu.Unlock()
			cmds = append(cmds, string(p.Code))
			if p.Code == mp.CmdMacro {
				m, _ := mp.ParseMacro(p.Data)
				for i := 0; i+1 < len(m.Pairs); i += 2 {
					macros[string(m.Cmd)+m.Pairs[i]] = m.Pairs[i+1]
				}
			}
			if p.Code == mp.CmdRcpt && strings.Contains(string(p.Data), "discard") {
				return []mp.Packet{{Code: mp.RespDiscard}}
			}
			if p.Code == mp.CmdHelo && strings.Contains(string(p.Data), "bad") {
				return []mp.Packet{testmilter.Reply(mp.RespReplyCode, testmilter.Str("550 5.7.1 go away"))}
			}
			return nil
		}}
	cfg := startTM(t, srv, "")
	cfg.Defines = []string{"{cmdline}=yes"}
	var res *Result
	cfg.OnMessage = func(r *Result) { res = r }
	script := "\\S inet client.example.net 192.0.2.9 4444\n\\D foo=bar\n\\E550\nhelo bad\n\\E250\nhelo good\n" +
		"mail from:<a@example.org>\n\\E 250\nrcpt to:<discard@example.com>\nrcpt to:<b@example.com>\ndata\nSubject: x\n\nb\n.\nquit\n"
	out, err := runScript(t, cfg, script)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, v := range map[string]string{"Cj": "localhost", "C{daemon_name}": "mtasim", "C_": "client.example.net [192.0.2.9]",
		"H{foo}": "bar", "C{cmdline}": "yes", "M{mail_addr}": "a@example.org", "M{mail_host}": "example.org",
		"R{rcpt_addr}": "discard@example.com", "R{client_port}": "4444"} {
		if macros[k] != v {
			t.Errorf("macro %s = %q, want %q (all: %v)", k, macros[k], v, macros)
		}
	}
	if _, ok := macros["R{rcpt_host}"]; ok {
		t.Errorf("filter's own RCPT macro list not honoured: %v", macros)
	}
	if res == nil || res.Verdict != 5 /* discard */ || res.Delivered() {
		t.Errorf("discard at RCPT: %+v", res)
	}
	if s := strings.Join(cmds, ""); strings.Count(s, "R") != 1 || strings.Contains(s, "L") {
		t.Errorf("events after DISCARD: %s", s)
	}
}

func TestExpectAndSyntax(t *testing.T) {
	cfg := &Config{RequireHelo: true}
	out, err := runScript(t, cfg, "\\E250\nmail from:<a@b>\nquit\n")
	var ee *ExpectError
	if !errors.As(err, &ee) || ExitCode(err) != ExitExpect || !strings.Contains(err.Error(), "expected 250, but got 503") {
		t.Errorf("expect: %v\n%s", err, out)
	}
	out, err = runScript(t, cfg, "ehlo x\n\\Q what\nquit\n")
	if ExitCode(err) != ExitDataErr || !strings.Contains(out, "502 ") || strings.Contains(out, "221") {
		t.Errorf("syntax: %v\n%s", err, out)
	}
	out, err = runScript(t, cfg, "ehlo x\nmail from:<a@b>\nrcpt to:<c@d>\ndata\nno end\n")
	if ExitCode(err) != ExitDataErr {
		t.Errorf("unterminated DATA: %v\n%s", err, out)
	}
	// \E inside DATA applies to the end-of-data reply.
	out, err = runScript(t, cfg, "ehlo x\nmail from:<a@b>\nrcpt to:<c@d>\n\\E354\ndata\n\\E451\n.\n")
	if ExitCode(err) != ExitExpect {
		t.Errorf("\\E in DATA: %v\n%s", err, out)
	}
	out, err = runScript(t, cfg, "\\Dx=1 y=2\n\\L\n\\Ux\n\\L y x\nhelp\n")
	if err != nil || !strings.Contains(out, "220-x=1\n220 y=2\n220 y=2\n") || !strings.Contains(out, `\Sfamily`) {
		t.Errorf("\\D \\L \\U: %v\n%s", err, out)
	}
}

func TestBatchSemantics(t *testing.T) {
	var mu sync.Mutex
	var cmds []string
	srv := &testmilter.Server{Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdMacro {
			return nil
		}
		mu.Lock()
		cmds = append(cmds, string(p.Code))
		mu.Unlock()
		return nil
	}}
	cfg := startTM(t, srv, "")
	in := "HELO x\nVRFY a\nEXPN b\nETRN c\nATRN d\nHELP\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nEHLO y\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nSubject: s\n\nb\n.\nQUIT\nMAIL FROM:<never@x>\n"
	var out bytes.Buffer
	st, err := RunBatch(context.Background(), cfg, NewLineReader(strings.NewReader(in)), &out, BatchOptions{})
	if err != nil || st.Messages != 1 || st.Delivered != 1 {
		t.Fatalf("%v %+v\n%s", err, st, out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	// No HELO (acts as RSET), no UNKNOWN; the EHLO mid-transaction aborted
	// the first transaction; nothing after QUIT.
	if s := strings.Join(cmds, ""); s != "OCMRAMRTLNBEQ" && s != "OCMRAMRTLNBE" {
		t.Errorf("filter saw %q", s)
	}
}
