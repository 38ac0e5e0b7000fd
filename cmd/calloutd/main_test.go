// main_test.go: calloutd end to end in-process: --config-lint (all errors,
// exit 78), the example configuration, serving with a bolt and a Redis
// cache (real redis-server), metrics, SIGTERM-like shutdown, and the
// built binary answering like mailfromd's calloutd.

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestConfigLint(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(`
listen = "inet:99999@127.0.0.1"
backlog = 0
starttls = "sometimes"
mx_walk = "random"
source_ip = "not-an-ip"
bogus_key = 1
[smtp_timeout.soft]
rcpt = "-3s"
helo = "soon"
[cache]
type = "redis"
`), 0o644)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--config-lint", "--config", bad}, &out, &errb); code != exitConfig {
		t.Fatalf("exit %d, want 78\n%s", code, errb.String())
	}
	for _, want := range []string{"listen", "backlog", "starttls", "mx_walk", "source_ip", "bogus_key", "cache.redis_url",
		"smtp_timeout.soft.rcpt", "smtp_timeout.soft.helo", "9 error(s)"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("lint output lacks %q:\n%s", want, errb.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"--config-lint", "-c", "../../examples/calloutd.toml"}, &out, &errb); code != 0 {
		t.Errorf("example config: exit %d\n%s", code, errb.String())
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// daemon runs calloutd in-process with a configuration and returns its
// address and a stop function that returns the exit status.
func daemon(t *testing.T, conf string) (addr string, stop func() int) {
	t.Helper()
	dir := t.TempDir()
	port := realpeer.FreePort(t)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	path := filepath.Join(dir, "calloutd.toml")
	conf = fmt.Sprintf("listen = \"inet://%s\"\npidfile = %q\n", addr, filepath.Join(dir, "pid")) + conf
	os.WriteFile(path, []byte(conf), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb syncBuffer
	go func() { done <- run(ctx, []string{"--config", path, "--stderr"}, io.Discard, &errb) }()
	deadline := time.Now().Add(5 * time.Second)
	for !realpeer.Listening("tcp", addr) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("calloutd not listening:\n%s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "pid")); err != nil {
		t.Errorf("pidfile: %v", err)
	}
	return addr, func() int {
		cancel()
		select {
		case code := <-done:
			if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
				t.Error("pidfile left behind")
			}
			if t.Failed() {
				t.Logf("calloutd log:\n%s", errb.String())
			}
			return code
		case <-time.After(15 * time.Second):
			t.Fatal("calloutd did not stop")
			return -1
		}
	}
}

func testTargets(t *testing.T) (dns string, port int) {
	n := callouttest.NewNet()
	d := callouttest.StartDNS(t, n.Addr(53, 0), "d.test. 60 IN MX 10 mx.d.test.", "mx.d.test. 60 IN A "+n.IP(2))
	callouttest.StartSMTP(t, n.Addr(2, 2525), callouttest.SMTPOptions{})
	return d.Addr, 2525
}

func TestServeBoltAndMetrics(t *testing.T) {
	dns, port := testTargets(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", realpeer.FreePort(t))
	dbPath := filepath.Join(t.TempDir(), "c.db")
	conf := fmt.Sprintf(`
smtp_port = %d
dns_servers = [%q]
ehlo_domain = "probe.example"
metrics_listen = %q
transcript = true
[cache]
path = %q
positive_expire = "1 day"
negative_expire = "12 hours"
[smtp_timeout.soft]
connection = 2
rcpt = "2 seconds"
`, port, dns, metrics, dbPath)
	addr, stop := daemon(t, conf)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := callout.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cl.Get(ctx, "ehlo", "mailfrom"); err != nil || v["ehlo"] != "probe.example" || v["mailfrom"] != "<>" {
		t.Errorf("GET: %v %v", v, err)
	}
	for i, want := range []callout.Result{callout.Success, callout.Success} {
		r, err := cl.Verify(ctx, callout.Request{Email: "good@d.test"})
		if err != nil || r != want {
			t.Errorf("verify %d: %v %v", i, r, err)
		}
	}
	if r, _ := cl.Verify(ctx, callout.Request{Email: "bad@d.test"}); r != callout.NotFound {
		t.Errorf("bad: %v", r)
	}
	cl.Quit(ctx)
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"calloutd_probes_total 2", "calloutd_cache_hits_total 1", `calloutd_results_total{result="success"} 2`, "calloutd_sessions_total 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if code := stop(); code != 0 {
		t.Errorf("exit %d", code)
	}

	// calloutd cache: list, show, flush on the file the daemon left.
	cfgFile := filepath.Join(t.TempDir(), "calloutd.toml")
	os.WriteFile(cfgFile, []byte(conf), 0o644)
	admin := func(args ...string) string {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append([]string{"cache", "-c", cfgFile}, args...), &out, &errb); code != 0 {
			t.Fatalf("cache %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	if out := admin("list"); !strings.Contains(out, "address   good@d.test success stored ") ||
		!strings.Contains(out, "address   bad@d.test not_found") || !strings.Contains(out, "a probe answered not_found") ||
		!strings.Contains(out, "2 entries") {
		t.Errorf("cache list:\n%s", out)
	}
	if out := admin("show", "bad@d.test"); !strings.Contains(out, "bad@d.test not_found") || strings.Contains(out, "good@") {
		t.Errorf("cache show:\n%s", out)
	}
	if out := admin("flush", "bad@d.test"); !strings.Contains(out, "flushed 1 entries") {
		t.Errorf("cache flush: %s", out)
	}
	if out := admin("list"); !strings.Contains(out, "1 entries") {
		t.Errorf("after flush:\n%s", out)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"cache", "-c", cfgFile, "frobnicate"}, &out, &errb); code != exitUsage {
		t.Errorf("bad subcommand: exit %d", code)
	}
}

func TestServeRedis(t *testing.T) {
	dns, port := testTargets(t)
	redis := realpeer.StartRedis(t)
	conf := fmt.Sprintf("smtp_port = %d\ndns_servers = [%q]\n[cache]\ntype = \"redis\"\nredis_url = \"redis://%s/0\"\n", port, dns, redis)
	// Two daemons share the Redis cache: what one found, the other knows.
	a1, stop1 := daemon(t, conf)
	a2, stop2 := daemon(t, conf)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, a := range []string{a1, a2} {
		cl, err := callout.Dial(ctx, "tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		a, err := cl.Check(ctx, callout.Request{Email: "good@d.test"})
		if err != nil || a.Result != callout.Success {
			t.Fatalf("daemon %d: %+v %v", i, a, err)
		}
		if (i == 0) == a.Cached() {
			t.Errorf("daemon %d: progress lines %+v (the second must answer from the shared cache)", i, a.Progress)
		}
		cl.Quit(ctx)
	}
	if stop1() != 0 || stop2() != 0 {
		t.Error("bad exit")
	}
}

// TestBinary builds calloutd and checks the greeting, --version and that
// SIGTERM stops it with status 0.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "calloutd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "calloutd (mailmux)") {
		t.Errorf("--version: %q %v", out, err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", realpeer.FreePort(t))
	cmd := exec.Command(bin, "--foreground", "--stderr", "--listen", "inet://"+addr, "--config", "../../examples/calloutd.toml")
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	// The example's bolt path is absolute; point it elsewhere with a copy.
	conf := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(conf, []byte(strings.Replace(mustRead(t, "../../examples/calloutd.toml"),
		"/var/lib/mailmux/calloutd.db", filepath.Join(t.TempDir(), "c.db"), 1)), 0o644)
	cmd.Args[len(cmd.Args)-1] = conf
	p := realpeer.StartProcess(t, "calloutd", cmd)
	p.WaitReady(t, "tcp:"+addr, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := callout.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Greeting != callout.Greeting {
		t.Errorf("greeting %q", cl.Greeting)
	}
	cl.Quit(ctx)
	p.Stop()
	if err := p.ExitErr(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.Output())
	}
}
