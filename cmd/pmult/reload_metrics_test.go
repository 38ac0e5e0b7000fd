// reload_metrics_test.go: the counters of /metrics survive a reload
// (SIGHUP), and the sessions still open on the retired engine stay in the
// active gauge.

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

// mtaConn is a minimal MTA side of one milter session.
type mtaConn struct {
	t    *testing.T
	c    net.Conn
	r    *mp.Reader
	logs *syncBuffer
}

func dialMTA(t *testing.T, sock string, logs *syncBuffer) *mtaConn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, logs.String())
	}
	return &mtaConn{t: t, c: c, r: mp.NewReader(c, 1<<20), logs: logs}
}

// rt sends a command and reads replies up to a final one; it returns their
// codes.
func (m *mtaConn) rt(code byte, data []byte) string {
	m.t.Helper()
	mp.WritePacket(m.c, code, data)
	var got string
	for {
		m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, err := m.r.ReadPacket()
		if err != nil {
			m.t.Fatalf("%c: %v\n%s", code, err, m.logs.String())
		}
		got += string(p.Code)
		if strings.ContainsRune("catrdyO", rune(p.Code)) {
			return got
		}
	}
}

func (m *mtaConn) start() {
	m.t.Helper()
	m.rt(mp.CmdOptNeg, mp.OptNeg{Version: 6, Actions: 0x1ff, Protocol: 0x1fffff}.Append(nil))
	m.rt(mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil))
	m.rt(mp.CmdMail, testmilter.Str("<a@b>"))
}

func (m *mtaConn) finish() {
	m.t.Helper()
	m.rt(mp.CmdRcpt, testmilter.Str("<c@d>"))
	if got := m.rt(mp.CmdEOB, nil); got != "hc" {
		m.t.Errorf("EOM answered %q, want hc (the backend's header, continue)", got)
	}
	mp.WritePacket(m.c, mp.CmdQuit, nil)
	m.c.Close()
}

func TestMetricsSurviveReload(t *testing.T) {
	dir := t.TempDir()
	bin := buildPmult(t)
	ba := startHeaderMilter(t)
	sock := filepath.Join(dir, "pmult.sock")
	cfg := filepath.Join(dir, "pmult.toml")
	host, port, _ := net.SplitHostPort(ba.String())
	conf := func(timeout string) []byte {
		return []byte(fmt.Sprintf("shutdown_timeout = \"5s\"\n[milter]\nlisten = [\"unix:%s\"]\n"+
			"[[backend]]\nname = \"t\"\naddress = \"inet:%s@%s\"\nread_timeout = %q\n", sock, port, host, timeout))
	}
	os.WriteFile(cfg, conf("10s"), 0o644)
	mln, _ := net.Listen("tcp", "127.0.0.1:0")
	maddr := mln.Addr().String()
	mln.Close()
	cmd := exec.Command(bin, "-c", cfg, "--metrics", maddr)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitLog := func(want string, n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), want) < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q (%d times):\n%s", want, n, logs.String())
			}
		}
	}
	waitLog("serving metrics", 1)
	waitLog("listening", 1)
	// metrics waits until /metrics has every line of wants: a session's
	// end (QUIT) is counted after the client has sent it.
	metrics := func(wants ...string) {
		t.Helper()
		var body []byte
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			resp, err := http.Get("http://" + maddr + "/metrics")
			if err != nil {
				t.Fatalf("metrics: %v", err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			missing := ""
			for _, want := range wants {
				if !strings.Contains(string(body), want+"\n") {
					missing = want
					break
				}
			}
			if missing == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics lack %q:\n%s", missing, body)
			}
		}
	}

	first := dialMTA(t, sock, logs)
	first.start()
	first.finish()
	open := dialMTA(t, sock, logs) // stays open across the reload
	open.start()
	metrics("pmult_sessions_total 2", "pmult_sessions_active 1",
		`pmult_backend_edits_total{backend="t",edit="add_header"} 1`)

	os.WriteFile(cfg, conf("20s"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("configuration reloaded", 1)
	third := dialMTA(t, sock, logs)
	third.start()
	third.finish()
	metrics("pmult_sessions_total 3", "pmult_sessions_active 1",
		`pmult_backend_edits_total{backend="t",edit="add_header"} 2`,
		`pmult_backend_replies_total{backend="t",stage="mail",verdict="continue"} 3`)

	open.finish() // on the retired engine, counted in the same counters
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + maddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "pmult_sessions_active 0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("active sessions never 0:\n%s", body)
		}
	}
	metrics("pmult_sessions_total 3", `pmult_backend_edits_total{backend="t",edit="add_header"} 3`,
		`pmult_replies_total{stage="eom",verdict="continue"} 3`)
}
