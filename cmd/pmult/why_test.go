// why_test.go: pmult why QUEUEID through the binary: pmult with a
// header-adding testmilter, one message, and its record read back over the
// control socket and the metrics listener's /why.

package main

import (
	"bytes"
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

func TestWhyThroughBinary(t *testing.T) {
	dir := t.TempDir()
	bin := buildPmult(t)
	ba := startHeaderMilter(t)
	sock := filepath.Join(dir, "pmult.sock")
	ctl := filepath.Join(dir, "control.sock")
	cfg := filepath.Join(dir, "pmult.toml")
	host, port, _ := net.SplitHostPort(ba.String())
	mln, _ := net.Listen("tcp", "127.0.0.1:0")
	maddr := mln.Addr().String()
	mln.Close()
	os.WriteFile(cfg, []byte(fmt.Sprintf("shutdown_timeout = \"5s\"\ncontrol_socket = %q\nmetrics_listen = %q\n"+
		"[milter]\nlisten = [\"unix:%s\"]\n[[backend]]\nname = \"signer\"\naddress = \"inet:%s@%s\"\n",
		ctl, maddr, sock, port, host)), 0o644)
	cmd := exec.Command(bin, "-c", cfg)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "listening"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pmult did not start:\n%s", logs.String())
		}
	}
	if fi, err := os.Stat(ctl); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v", fi, err)
	}

	m := dialMTA(t, sock, logs)
	m.start()
	m.rt(mp.CmdRcpt, testmilter.Str("<c@d>"))
	mp.WritePacket(m.c, mp.CmdMacro, mp.Macro{Cmd: mp.CmdEOB, Pairs: []string{"i", "7QX2Z1"}}.Append(nil))
	if got := m.rt(mp.CmdEOB, nil); got != "hc" {
		t.Fatalf("EOM answered %q", got)
	}
	mp.WritePacket(m.c, mp.CmdQuit, nil)
	m.c.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "msg=decision"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no decision line:\n%s", logs.String())
		}
	}
	if line := logs.String(); !strings.Contains(line, "level=INFO msg=decision") || !strings.Contains(line, "qid=7QX2Z1 client=h from=<a@b> rcpts=1 rcpts_rejected=0 reply=accept") ||
		!strings.Contains(line, `edits="signer(add_header=1)"`) {
		t.Errorf("decision line:\n%s", line)
	}

	var out, errb bytes.Buffer
	why := exec.Command(bin, "why", "-c", cfg, "7QX2Z1")
	why.Stdout, why.Stderr = &out, &errb
	if err := why.Run(); err != nil {
		t.Fatalf("pmult why: %v\n%s%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"message qid=7QX2Z1", "from=<a@b> rcpts=1", "reply accept at eom by -",
		"eom      signer           continue", "signer           add_header X-Test: yes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("pmult why lacks %q:\n%s", want, out.String())
		}
	}
	viaHTTP, _ := exec.Command(bin, "why", "--metrics", maddr, "7QX2Z1").Output()
	if !bytes.Equal(viaHTTP, out.Bytes()) {
		t.Errorf("why over /why differs:\n%s\nvs socket:\n%s", viaHTTP, out.String())
	}
	missing := exec.Command(bin, "why", "--socket", ctl, "NOSUCH")
	mout, _ := missing.Output()
	if missing.ProcessState.ExitCode() != 1 || !strings.Contains(string(mout), "not found: NOSUCH") {
		t.Errorf("unknown id: exit %d, %q", missing.ProcessState.ExitCode(), mout)
	}

	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`pmult_backend_latency_seconds_count{backend="signer",stage="eom"} 1`,
		`pmult_decisions_total{backend="",reply="accept"} 1`,
		`pmult_backend_up{backend="signer"} 1`,
		`pmult_backend_breaker_state{backend="signer",state="closed"} 1`,
		fmt.Sprintf(`pmult_listener_connections_total{listener="unix:%s"} 1`, sock),
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
