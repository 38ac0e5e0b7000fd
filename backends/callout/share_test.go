// share_test.go: backends sharing the process's cache stores
// (ShareCaches): a reload's new backend uses the store its retired
// predecessor holds open while a session stays on it, the store closes
// with the last backend of its location, and a memory cache keeps its
// entries.

package callout

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/pmult"
)

func TestShareCachesAcrossReload(t *testing.T) {
	for _, kind := range []string{"bolt", "memory"} {
		t.Run(kind, func(t *testing.T) {
			w := newWorld(t)
			file := filepath.Join(t.TempDir(), "sav.db")
			text := fmt.Sprintf(`
dns_servers = [%q]
smtp_port = 2525
probe_networks = ["127.0.0.0/8"]
ehlo = "prober.harness.test"
cache = %q
cache_file = %q
`, w.dns.Addr, kind, file)
			loc := "memory:sav"
			if kind == "bolt" {
				loc = "bolt:" + file
			}
			var h cache.Handles
			old := backend(t, text)
			old.ShareCaches(&h)
			held := openSession(t, old) // stays open on the retired backend
			if r := mail(held, "bad@ok.test"); r.Verdict != pmult.Reject {
				t.Fatalf("first MAIL = %+v, want reject", r)
			}
			if n := w.ok.Connections(); n != 1 {
				t.Fatalf("%d probes, want 1", n)
			}

			// The reload: the new backend claims, then the old one retires.
			nb := backend(t, text)
			nb.ShareCaches(&h)
			old.Retire()
			s1 := openSession(t, nb)
			if r := mail(s1, "bad@ok.test"); r.Verdict != pmult.Reject {
				t.Errorf("MAIL on the new backend = %+v, want reject from the cache", r)
			}
			if n := w.ok.Connections(); n != 1 {
				t.Errorf("%d probes, want 1 (the new backend answered from the old one's cache)", n)
			}
			if got := h.Locations(); !slices.Equal(got, []string{loc}) {
				t.Errorf("open stores %v, want [%s]", got, loc)
			}
			held.S.Close() // the old backend's last session: the store stays, the new backend uses it
			if got := h.Locations(); !slices.Equal(got, []string{loc}) {
				t.Errorf("after the old backend's last session: open stores %v, want [%s]", got, loc)
			}
			s2 := openSession(t, nb)
			if r := mail(s2, "bad@ok.test"); r.Verdict != pmult.Reject || w.ok.Connections() != 1 {
				t.Errorf("MAIL after the old backend closed = %+v (%d probes), want reject from the cache", r, w.ok.Connections())
			}

			// A reload dropping the backend: its last session closes the store.
			nb.Retire()
			if got := h.Locations(); !slices.Equal(got, []string{loc}) {
				t.Errorf("retired with sessions open: open stores %v, want [%s]", got, loc)
			}
			s1.S.Close()
			s2.S.Close()
			if got := h.Locations(); len(got) != 0 {
				t.Errorf("after the last backend of %s retired: open stores %v, want none", loc, got)
			}
			if kind == "bolt" { // closed: the file opens again, the entry in it
				st, err := cache.OpenBolt(file)
				if err != nil {
					t.Fatalf("reopen: %v", err)
				}
				defer st.Close()
				c := &cache.Cache{Store: st}
				if e, ok, err := c.Lookup(context.Background(), "bad@ok.test"); err != nil || !ok || e.Result != smtpprobe.NotFound {
					t.Errorf("entry in the file: %+v %v %v", e, ok, err)
				}
			}
		})
	}
}

// Two backends of one configuration naming the same bbolt file share one
// open store (before, the second open waited for the first one's lock
// and failed).
func TestShareCachesOneFileTwoBackends(t *testing.T) {
	w := newWorld(t)
	file := filepath.Join(t.TempDir(), "shared.db")
	text := fmt.Sprintf(`
dns_servers = [%q]
smtp_port = 2525
probe_networks = ["127.0.0.0/8"]
ehlo = "prober.harness.test"
cache_file = %q
`, w.dns.Addr, file)
	var h cache.Handles
	a, b := backend(t, text), backend(t, text)
	a.ShareCaches(&h)
	b.ShareCaches(&h)
	if r := mail(openSession(t, a), "bad@ok.test"); r.Verdict != pmult.Reject {
		t.Fatalf("MAIL on a = %+v", r)
	}
	if r := mail(openSession(t, b), "bad@ok.test"); r.Verdict != pmult.Reject || w.ok.Connections() != 1 {
		t.Errorf("MAIL on b = %+v (%d probes), want reject from the shared cache", r, w.ok.Connections())
	}
	if err := h.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if got := h.Locations(); len(got) != 0 {
		t.Errorf("after Close: %v", got)
	}
}
