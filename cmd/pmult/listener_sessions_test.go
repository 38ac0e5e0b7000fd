// listener_sessions_test.go: pmult_listener_sessions_total{listener}
// through the binary: SMTP sessions (CONNECT events) per listener, so the
// two sessions of one reused milter connection (QUIT_NC) count two,
// beside pmult_listener_connections_total counting it once; a named and
// an unnamed listener.

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
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

func TestListenerSessions(t *testing.T) {
	dir := t.TempDir()
	bin := buildPmult(t)
	ba := startHeaderMilter(t)
	edge, plain := filepath.Join(dir, "edge.sock"), filepath.Join(dir, "plain.sock")
	cfg := filepath.Join(dir, "pmult.toml")
	host, port, _ := net.SplitHostPort(ba.String())
	mln, _ := net.Listen("tcp", "127.0.0.1:0")
	maddr := mln.Addr().String()
	mln.Close()
	os.WriteFile(cfg, []byte(fmt.Sprintf("shutdown_timeout = \"5s\"\nmetrics_listen = %q\n"+
		"[milter]\nlisten = [\"edge=unix:%s\", \"unix:%s\"]\n[[backend]]\nname = \"t\"\naddress = \"inet:%s@%s\"\n",
		maddr, edge, plain, port, host)), 0o644)
	cmd := exec.Command(bin, "-c", cfg)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), "msg=listening") < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pmult did not start:\n%s", logs.String())
		}
	}

	// edge: one milter connection, two SMTP sessions (QUIT_NC between).
	m := dialMTA(t, edge, logs)
	m.start()
	m.rt(mp.CmdRcpt, testmilter.Str("<c@d>"))
	m.rt(mp.CmdEOB, nil)
	mp.WritePacket(m.c, mp.CmdQuitNC, nil)
	m.rt(mp.CmdConnect, mp.Connect{Hostname: "h2", Family: 'U'}.Append(nil))
	m.rt(mp.CmdMail, testmilter.Str("<a@b>"))
	m.finish()
	// plain: one connection, one session.
	p := dialMTA(t, plain, logs)
	p.start()
	p.finish()

	wants := []string{
		`pmult_listener_connections_total{listener="edge"} 1`,
		fmt.Sprintf(`pmult_listener_connections_total{listener="unix:%s"} 1`, plain),
		`pmult_listener_sessions_total{listener="edge"} 2`,
		fmt.Sprintf(`pmult_listener_sessions_total{listener="unix:%s"} 1`, plain),
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range wants {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
