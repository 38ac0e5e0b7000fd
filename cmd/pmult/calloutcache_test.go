// calloutcache_test.go: pmult callout-cache on a callout backend's bbolt
// file and on its Redis (real redis-server, administered while in use).

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestCalloutCache(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "sav.db")
	redis := realpeer.StartRedis(t)
	ctx := context.Background()
	for name, c := range map[string]struct {
		keys string
		open func() (cache.Store, error)
	}{
		"bolt": {fmt.Sprintf("cache_file = %q", db), func() (cache.Store, error) { return cache.OpenBolt(db) }},
		"redis": {fmt.Sprintf("cache = \"redis\"\nredis_url = \"redis://%s/0\"", redis),
			func() (cache.Store, error) { return cache.OpenRedis(ctx, "redis://"+redis+"/0", "") }},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := c.open()
			if err != nil {
				t.Fatal(err)
			}
			cc := &cache.Cache{Store: st}
			cc.Record(ctx, "bad@ok.test", smtpprobe.NotFound)
			cc.Record(ctx, "good@ok.test", smtpprobe.Success)
			if name == "bolt" {
				st.Close() // pmult would hold it; redis stays in use
			} else {
				defer st.Close()
			}
			cfg := filepath.Join(dir, name+".toml")
			os.WriteFile(cfg, []byte(`[[backend]]
name = "m"
address = "inet:127.0.0.1:8891"
[[backend]]
name = "sav"
type = "callout"
`+c.keys+"\n"), 0o644)
			pm := func(args ...string) (string, int) {
				var out, errb bytes.Buffer
				code := run(append([]string{"callout-cache", "-c", cfg}, args...), &out, &errb)
				return out.String() + errb.String(), code
			}
			if out, code := pm("list"); code != 0 || !strings.Contains(out, "address   bad@ok.test not_found stored ") ||
				!strings.Contains(out, "a probe answered not_found") || !strings.Contains(out, "2 entries") {
				t.Errorf("list: exit %d\n%s", code, out)
			}
			if out, code := pm("flush", "bad@ok.test"); code != 0 || !strings.Contains(out, "flushed 1 entries") {
				t.Errorf("flush: exit %d %s", code, out)
			}
			if out, _ := pm("show", "ok.test"); strings.Contains(out, "bad@") || !strings.Contains(out, "good@ok.test success") {
				t.Errorf("show after flush:\n%s", out)
			}
			if out, code := pm("-b", "m", "list"); code != 64 || !strings.Contains(out, `no callout backend "m"`) {
				t.Errorf("-b m: exit %d %s", code, out)
			}
		})
	}
}
