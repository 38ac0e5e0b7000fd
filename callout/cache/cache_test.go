// cache_test.go: the caching policy on every store: memory, a bbolt file,
// and a real redis-server started by the test.

package cache

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/internal/realpeer"
)

func stores(t *testing.T) map[string]Store {
	t.Helper()
	b, err := OpenBolt(filepath.Join(t.TempDir(), "callout.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	addr := realpeer.StartRedis(t)
	r, err := OpenRedis(context.Background(), "redis://"+addr+"/0", "test:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return map[string]Store{"memory": &Memory{}, "bolt": b, "redis": r}
}

func TestPolicy(t *testing.T) {
	ctx := context.Background()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			now := time.Now()
			c := &Cache{Store: st, Now: func() time.Time { return now }}
			if _, ok, err := c.Lookup(ctx, "x@y"); ok || err != nil {
				t.Fatalf("empty cache: %v %v", ok, err)
			}
			// success lives a day
			if s, err := c.Record(ctx, "good@y", smtpprobe.Success); !s || err != nil {
				t.Fatalf("record success: %v %v", s, err)
			}
			e, ok, err := c.Lookup(ctx, "good@y")
			if !ok || err != nil || e.Result != smtpprobe.Success || e.Expires.Sub(now) != DefaultPositive {
				t.Fatalf("lookup success: %+v %v %v", e, ok, err)
			}
			// a failed probe never overwrites a good entry
			for _, r := range []smtpprobe.Result{smtpprobe.NotFound, smtpprobe.TempFailure, smtpprobe.Failure, smtpprobe.Timeout} {
				if s, _ := c.Record(ctx, "good@y", r); s {
					t.Errorf("%v overwrote a success", r)
				}
			}
			if e, _, _ := c.Lookup(ctx, "good@y"); e.Result != smtpprobe.Success {
				t.Errorf("success replaced by %v", e.Result)
			}
			// temp results are never stored
			if s, _ := c.Record(ctx, "grey@y", smtpprobe.TempFailure); s {
				t.Error("temp_failure stored")
			}
			if _, ok, _ := c.Lookup(ctx, "grey@y"); ok {
				t.Error("temp_failure cached")
			}
			// not_found lives 12 hours, and a success replaces it
			c.Record(ctx, "bad@y", smtpprobe.NotFound)
			if e, ok, _ := c.Lookup(ctx, "bad@y"); !ok || e.Expires.Sub(now) != DefaultNegative {
				t.Errorf("negative: %+v", e)
			}
			now = now.Add(13 * time.Hour)
			if _, ok, _ := c.Lookup(ctx, "bad@y"); ok {
				t.Error("negative entry alive after 13 h")
			}
			if _, ok, _ := c.Lookup(ctx, "good@y"); !ok {
				t.Error("positive entry gone after 13 h")
			}
			// an expired success may be replaced by not_found
			now = now.Add(12 * time.Hour)
			if s, _ := c.Record(ctx, "good@y", smtpprobe.NotFound); !s {
				t.Error("not_found did not replace an expired success")
			}
			// domains
			c.RecordDead(ctx, "dead.test", smtpprobe.NotFound)
			c.RecordDown(ctx, "down.test")
			if e, ok, _ := c.LookupDomain(ctx, "dead.test"); !ok || e.Result != smtpprobe.NotFound {
				t.Errorf("dead domain: %+v", e)
			}
			now = now.Add(6 * time.Minute)
			if _, ok, _ := c.LookupDomain(ctx, "down.test"); ok {
				t.Error("down domain remembered after 6 minutes")
			}
			c.RecordCatchAll(ctx, "ca.test", true)
			c.RecordCatchAll(ctx, "nca.test", false)
			if ca, known, _ := c.LookupCatchAll(ctx, "ca.test"); !ca || !known {
				t.Error("catch-all lost")
			}
			if ca, known, _ := c.LookupCatchAll(ctx, "nca.test"); ca || !known {
				t.Error("not catch-all lost")
			}
			if _, known, _ := c.LookupCatchAll(ctx, "other.test"); known {
				t.Error("unknown domain known")
			}
		})
	}
}

func TestBoltPersistsAndSweeps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	b.Put(ctx, "a:old", Entry{Result: smtpprobe.Success, Stored: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)})
	b.Put(ctx, "a:new", Entry{Result: smtpprobe.NotFound, Stored: now, Expires: now.Add(time.Hour)})
	b.Close()
	b, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n, err := b.Sweep(now); n != 1 || err != nil {
		t.Errorf("sweep: %d %v", n, err)
	}
	e, ok, err := b.Get(ctx, "a:new")
	if !ok || err != nil || e.Result != smtpprobe.NotFound || !e.Stored.Equal(time.Unix(0, now.UnixNano())) {
		t.Errorf("after reopen: %+v %v %v", e, ok, err)
	}
}

func TestRedisExpiresItself(t *testing.T) {
	addr := realpeer.StartRedis(t)
	ctx := context.Background()
	r, err := OpenRedis(ctx, "redis://"+addr+"/0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	now := time.Now()
	r.Put(ctx, "a:x", Entry{Result: smtpprobe.Success, Stored: now, Expires: now.Add(200 * time.Millisecond)})
	if ttl := r.Client.PTTL(ctx, DefaultRedisPrefix+"a:x").Val(); ttl <= 0 || ttl > 200*time.Millisecond {
		t.Errorf("ttl %v", ttl)
	}
	time.Sleep(300 * time.Millisecond)
	if _, ok, _ := r.Get(ctx, "a:x"); ok {
		t.Error("entry still in redis after its lifetime")
	}
	if _, err := OpenRedis(ctx, "redis://127.0.0.1:1/0", ""); err == nil {
		t.Error("no error for an unreachable redis")
	}
}
