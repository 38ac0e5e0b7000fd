// limits_test.go: the MTA-side timeouts come from the configuration.

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNegotiateTimeoutFromConfig(t *testing.T) {
	dir := t.TempDir()
	bin := buildPmult(t)
	sock := filepath.Join(dir, "pmult.sock")
	cfg := filepath.Join(dir, "pmult.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = \"unix:%s\"\nnegotiate_timeout = \"300ms\"\nidle_timeout = \"2m\"\nwrite_timeout = \"3s\"\n", sock)), 0o644)
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "-c", cfg)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var c net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pmult did not listen: %v\n%s", err, logs.String())
		}
	}
	defer c.Close()
	// A silent connection is closed by pmult (well before the 30s default).
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from pmult on a silent connection")
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "timeout=300ms"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no negotiation timeout line with the configured 300ms:\n%s", logs.String())
		}
	}
}
