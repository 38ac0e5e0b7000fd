// meta1_test.go: `pmult import` on the manual's pmult example, mta-config
// meta1, and the binary serving MeTA1 smtps (simulated) next to a milter
// listener.

package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailmux/mailmux/adapters/meta1/pmilter"
	milter "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/sim/meta1"
)

func TestImportManualExample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "pmult.toml")
	var stdout, stderr bytes.Buffer
	code := run([]string{"import", "-c", "testdata/manual-example.conf", "-o", out}, &stdout, &stderr)
	if code != 1 { // logging facility local2 cannot be converted
		t.Fatalf("exit %d, want 1\n%s", code, stderr.String())
	}
	for _, want := range []string{
		`manual-example.conf:10: cannot convert "facility"`,
		`1 top-level statement(s) outside`,
		`approximated as log_level = "debug"`,
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stderr.String())
		}
	}
	cfg, err := config.Load(out)
	if err != nil {
		t.Fatalf("converted file does not load: %v", err)
	}
	if len(cfg.Milter.ListenAddrs) != 0 || len(cfg.Meta1.ListenAddrs) != 1 || cfg.Meta1.ListenAddrs[0].Addr != "127.0.0.1:3333" {
		t.Errorf("listen %+v meta1 %+v", cfg.Milter.ListenAddrs, cfg.Meta1.ListenAddrs)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("the converted file uses old spellings: %v", cfg.Warnings)
	}
	if got := strings.Join(cfg.Meta1.Macros[macros.M1Mail], " "); got != "auth_type auth_authen auth_author tls_vrfy" {
		t.Errorf("mail macros %q", got)
	}
	if got := strings.Join(cfg.Meta1.Macros[macros.M1Rcpt], " "); got != "auth_type auth_authen auth_author" {
		t.Errorf("rcpt macros %q", got)
	}
	b := cfg.Backends[0]
	ms, _ := b.Settings.(*milter.Settings)
	if ms == nil || ms.Addr.Network != "unix" || ms.Addr.Addr != "/usr/local/var/mailfromd/mailfrom" || ms.WriteTimeout.Duration != 30*time.Second ||
		ms.ReadTimeout.Duration != 5*time.Minute || ms.EOMTimeout.Duration != 5*time.Minute || b.LogLevel != "info" || cfg.LogLevel != "debug" {
		t.Errorf("backend %+v %+v", b, ms)
	}
}

// TestServeMeta1 runs the binary with a milter and a MeTA1 listener.
func TestServeMeta1(t *testing.T) {
	dir := t.TempDir()
	bin := buildPmult(t)
	ba := startHeaderMilter(t)
	sock := filepath.Join(dir, "meta1.sock")
	cfg := filepath.Join(dir, "pmult.toml")
	host, port, _ := net.SplitHostPort(ba.String())
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = [\"unix:%s/milter.sock\"]\nshutdown_timeout = \"5s\"\n[meta1]\nlisten = \"unix://%s\"\n[meta1.define_macros]\nmail = [\"taid\"]\n[[backend]]\nname = \"t\"\nurl = \"inet:%s@%s\"\n", dir, sock, port, host)), 0o644)
	cmd := exec.Command(bin, "-c", cfg)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var c *meta1sim.Client
	var err error
	for i := 0; i < 100; i++ {
		if c, err = meta1sim.Dial(context.Background(), meta1sim.Config{Network: "unix", Address: sock, Timeout: 10 * time.Second}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, logs.String())
	}
	defer c.Close()
	if req := c.MacroRequests(); len(req[pmilter.StageMail]) != 1 {
		t.Errorf("macro requests %v", req)
	}
	ctx := context.Background()
	s, _ := c.NewSession(ctx)
	s.Connect(ctx, netip.MustParseAddr("192.0.2.1"), 25, "")
	s.Ehlo(ctx, "x")
	s.Mail(ctx, "<a@x>")
	s.Rcpt(ctx, 0, "<b@x>")
	s.Data(ctx)
	r, err := s.Message(ctx, []byte("Subject: t\r\n\r\nhi\r\n"), 0)
	if err != nil || len(r.HdrMods) != 1 || r.HdrMods[0].Name != "X-Test" {
		t.Fatalf("dot: %+v %v\n%s", r, err, logs.String())
	}
	s.Close()
	c.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("MeTA1 socket left behind")
	}
}
