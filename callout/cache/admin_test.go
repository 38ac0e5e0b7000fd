// admin_test.go: list, show and flush on every store.

package cache

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

func TestAdmin(t *testing.T) {
	ctx := context.Background()
	// Redis expires entries on its own clock: now must be the real time.
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			c := &Cache{Store: st, Now: func() time.Time { return now }}
			c.Record(ctx, "bad@ok.test", smtpprobe.NotFound)
			c.Record(ctx, "good@ok.test", smtpprobe.Success)
			c.Record(ctx, "good@ok.test|hostonly|10.0.0.1", smtpprobe.Success)
			c.Record(ctx, "x@other.test", smtpprobe.Success)
			c.RecordDead(ctx, "nx.test", smtpprobe.NotFound)
			c.RecordDown(ctx, "ok.test")
			run := func(args ...string) string {
				var b strings.Builder
				if err := Admin(ctx, st, args, &b, now); err != nil {
					t.Fatalf("%v: %v", args, err)
				}
				return b.String()
			}
			out := run("list")
			for _, want := range []string{
				"address   bad@ok.test not_found stored " + ts(0) + " expires " + ts(12*time.Hour) + " (in 12h0m0s): a probe answered not_found",
				"domain    nx.test not_found stored " + ts(0) + " expires " + ts(12*time.Hour) + " (in 12h0m0s): the domain has no mail host",
				"domain    ok.test temp_failure stored " + ts(0) + " expires " + ts(5*time.Minute) + " (in 5m0s): no host of the domain could be reached",
				"6 entries",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("list lacks %q:\n%s", want, out)
				}
			}
			if out := run("show", "<Good@OK.test>"); strings.Count(out, "\n") != 3 || !strings.Contains(out, "good@ok.test|hostonly|10.0.0.1") {
				t.Errorf("show address (its two entries and its domain's):\n%s", out)
			}
			if out := run("flush", "ok.test"); !strings.Contains(out, "flushed 4 entries") {
				t.Errorf("flush domain: %s", out)
			}
			if out := run("list"); !strings.Contains(out, "2 entries") || strings.Contains(out, "@ok.test") {
				t.Errorf("after flush:\n%s", out)
			}
			if _, ok, _ := c.Lookup(ctx, "bad@ok.test"); ok {
				t.Errorf("flushed entry still found")
			}
			run("flush", "--all")
			if out := run("list"); !strings.Contains(out, "0 entries") {
				t.Errorf("after flush --all:\n%s", out)
			}
			var b strings.Builder
			if err := Admin(ctx, st, []string{"bogus"}, &b, now); err != ErrUsage {
				t.Errorf("bogus: %v", err)
			}
		})
	}
}
