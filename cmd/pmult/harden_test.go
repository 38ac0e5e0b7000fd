// harden_test.go: the binary with a symlinked pidfile, metrics on
// loopback (the unit tests of harden.go are internal/service's).

package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The binary refuses a symlinked pidfile with a clear line and exit 73.
func TestPidfileSymlinkExit(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "passwd")
	os.WriteFile(target, []byte("root:x:0:0\n"), 0o644)
	pid := filepath.Join(dir, "pmult.pid")
	os.Symlink(target, pid)
	// The binary refuses to start with a clear line and exit 73.
	bin := buildPmult(t)
	var errb bytes.Buffer
	cmd := exec.Command(bin, "--url", "inet:127.0.0.1:0", "--pidfile", pid)
	cmd.Stderr = &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 73 {
		t.Fatalf("pmult with a symlinked pidfile: %v, want exit 73\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "cannot write pidfile") || !strings.Contains(errb.String(), "symlink") {
		t.Errorf("no clear log line:\n%s", errb.String())
	}
	if b, _ := os.ReadFile(target); string(b) != "root:x:0:0\n" {
		t.Fatalf("symlink target overwritten: %q", b)
	}
}

// A bare --metrics port serves on loopback, with the process gauges.
func TestMetricsBarePortIsLoopback(t *testing.T) {
	bin := buildPmult(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "--url", "inet:127.0.0.1:0", "--metrics", port)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "serving metrics"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics not served:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "http://127.0.0.1:"+port+"/metrics") {
		t.Errorf("metrics not on loopback:\n%s", logs.String())
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"go_goroutines ", "process_resident_memory_bytes ", "process_open_fds "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if strings.Contains(logs.String(), "every address") {
		t.Errorf("wildcard warning for loopback:\n%s", logs.String())
	}
}
