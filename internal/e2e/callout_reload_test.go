// callout_reload_test.go: a pmult reload (SIGHUP, twice) with a callout
// backend whose cache is a bbolt file, memory or Redis, real Postfix in
// front, while an SMTP session started before the reloads stays open on
// the retired engine: every reload succeeds at once, and the MAIL after
// each is still answered from the cache (no second probe), because the
// open cache is the process's, handed to the new backend (one open of a
// bbolt file per process).

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestCalloutCacheSurvivesReload(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks")
	for _, kind := range []string{"bolt", "memory", "redis"} {
		t.Run(kind, func(t *testing.T) {
			w := startSAVWorld(t)
			dir := realpeer.Dir(t)
			var ckeys string
			switch kind {
			case "bolt":
				ckeys = fmt.Sprintf("cache_file = %q\n", filepath.Join(dir, "sav.db"))
			case "memory":
				ckeys = "cache = \"memory\"\n"
			case "redis":
				ckeys = fmt.Sprintf("cache = \"redis\"\nredis_url = \"redis://%s/0\"\nredis_prefix = \"reload-%d:\"\n",
					realpeer.StartRedis(t), time.Now().UnixNano())
			}
			spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
			cfg := filepath.Join(dir, "pmult.toml")
			ctl := filepath.Join(dir, "pmult.ctl")
			conf := func(ioTimeout string) []byte {
				return []byte(fmt.Sprintf("listen = [%q]\nshutdown_timeout = \"2s\"\ncontrol_socket = %q\n[[backend]]\nname = \"sav\"\ntype = \"callout\"\n%s%sconnect_timeout = %q\n",
					spec, ctl, w.keys(), ckeys, ioTimeout))
			}
			if err := os.WriteFile(cfg, conf("10s"), 0o644); err != nil {
				t.Fatal(err)
			}
			p := realpeer.StartProcess(t, "pmult", exec.Command(pmultBin, "-c", cfg, "--debug=debug"))
			p.WaitReady(t, spec, 10*time.Second)
			logPmultOnFailure(t, p)
			pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})

			if got := mailReply(sendFrom(t, pf, "bad@ok.test")); !strings.Contains(got, "550 5.1.7 ") {
				t.Fatalf("first MAIL FROM:<bad@ok.test>: %q", got)
			}
			if n := w.ok.Connections(); n != 1 {
				t.Fatalf("%d probes of ok.test, want 1", n)
			}
			// An SMTP session open across both reloads: its pmult session
			// (and its callout backend session) stays on the first engine.
			held, err := net.Dial("tcp", pf.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			br := bufio.NewReader(held)
			expect := func(what, prefix string) {
				t.Helper()
				held.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("held session, %s: %v", what, err)
					}
					if !strings.HasPrefix(l, prefix) {
						t.Fatalf("held session, %s: %q", what, l)
					}
					if len(l) > 3 && l[3] == ' ' {
						return
					}
				}
			}
			expect("greeting", "220")
			fmt.Fprintf(held, "EHLO held.test\r\n")
			expect("EHLO", "250")
			fmt.Fprintf(held, "MAIL FROM:<bad@ok.test>\r\n") // the held session's callout session in use
			expect("MAIL", "550")

			for i := 1; i <= 2; i++ {
				if err := os.WriteFile(cfg, conf(fmt.Sprintf("%ds", 10+i)), 0o644); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if err := syscall.Kill(p.PID(), syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
				if !waitFor(10*time.Second, func() bool { return strings.Count(p.Output(), "configuration reloaded") == i }) {
					t.Fatalf("reload %d not logged", i)
				}
				if got := mailReply(sendFrom(t, pf, "bad@ok.test")); !strings.Contains(got, "550 5.1.7 ") {
					t.Errorf("MAIL FROM:<bad@ok.test> after reload %d (%v): %q", i, time.Since(start).Round(time.Millisecond), got)
				}
				if n := w.ok.Connections(); n != 1 {
					t.Errorf("after reload %d: %d probes of ok.test, want 1 (answered from the cache kept across the reload)", i, n)
				}
				// The running pmult administers the same store (control socket).
				out, err := exec.Command(pmultBin, "callout-cache", "-c", cfg, "list").CombinedOutput()
				if err != nil || !strings.Contains(string(out), "address   bad@ok.test not_found stored ") {
					t.Errorf("callout-cache list after reload %d: %v\n%s", i, err, out)
				}
			}
			fmt.Fprintf(held, "QUIT\r\n")
			expect("QUIT", "221")
			held.Close()
			if got := mailReply(sendFrom(t, pf, "bad@ok.test")); !strings.Contains(got, "550 5.1.7 ") {
				t.Errorf("MAIL after the held session ended: %q", got)
			}
			if n := w.ok.Connections(); n != 1 {
				t.Errorf("after the held session ended: %d probes of ok.test, want 1", n)
			}
			for _, bad := range []string{"level=ERROR", "cache: open"} {
				if l := logLine(settledLog(p), bad); l != "" {
					t.Errorf("pmult logged %q: %s", bad, l)
				}
			}
		})
	}
}
