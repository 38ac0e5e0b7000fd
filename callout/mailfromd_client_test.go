// mailfromd_client_test.go: mailfromd 8.15 itself as the client
// (callout.mfl's callout_open and callout_do, run with mailfromd --run):
// the same script against mailfromd's calloutd and against our server
// must print the same results, cache_used flags and last_poll_recv, so
// mailfromd can use our server, SET and quoted addresses included, and
// our extra progress lines change nothing for it.

package callout

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestMailfromdClient(t *testing.T) {
	realpeer.Require(t, "mailfromd", "calloutd")
	w := newWorld(t, 25, 53)
	ours := startServer(t, &Server{Verifier: &Verifier{Prober: w.prober(2 * time.Second), Cache: newMemCache()}, NoBackground: true})
	real := realpeer.StartCalloutd(t, realpeer.CalloutdOptions{Nameserver: w.net.IP(53)})
	run := func(addr string) string {
		t.Helper()
		dir := t.TempDir()
		script := filepath.Join(dir, "client.mfl")
		mfl := `require callout

func main(...)
  returns number
do
  number fd callout_open("inet://` + addr + `")
  number r callout_do(fd, "good@mx1.test")
  echo "good=%r cache=%cache_used host=%last_poll_host recv=%last_poll_recv"
  set r callout_do(fd, "good@mx1.test")
  echo "again=%r cache=%cache_used"
  set r callout_do(fd, "bad@mx3.test")
  echo "bad=%r cache=%cache_used recv=%last_poll_recv"
  set r callout_do(fd, "a@nx.test")
  echo "nx=%r cache=%cache_used"
  set r callout_do(fd, "grey@example.com", "mode=hostonly host=` + w.net.IP(2) + `")
  echo "grey=%r cache=%cache_used recv=%last_poll_recv"
  callout_close(fd)
  return 0
done
`
		if err := os.WriteFile(script, []byte(mfl), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("mailfromd", "--no-config", "--state-directory="+dir, "--run", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mailfromd --run against %s: %v\n%s", addr, err, out)
		}
		return string(out)
	}
	want := run(real.Addr)
	got := run(ours)
	if testing.Verbose() {
		t.Logf("mailfromd against calloutd:\n%s", want)
	}
	if got != want {
		t.Errorf("mailfromd as the client prints differently\nagainst calloutd:\n%s\nagainst ours:\n%s", want, got)
	}
	for _, l := range []string{"good=0 cache=0 host=mxb.mx1.test recv=250 2.1.5 Ok", "again=0 cache=1", "nx=", "grey="} {
		if !strings.Contains(got, l) {
			t.Errorf("mailfromd's output lacks %q:\n%s", l, got)
		}
	}
}
