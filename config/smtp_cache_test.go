// smtp_cache_test.go: [smtp]'s next-hop connection cache keys.

package config

import (
	"strings"
	"testing"
	"time"
)

func TestSmtpNextHopCacheKeys(t *testing.T) {
	base := "listen = []\n[smtp]\nlisten = [\"inet:127.0.0.1:10025\"]\nnext_hop = \"inet:127.0.0.1:10026\"\n"
	cfg, err := Parse([]byte(base), "d.toml")
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Smtp
	if !r.NextHopCache || r.NextHopCacheSize != 16 || r.NextHopReuseLimit != 0 || r.NextHopReuseTime.Duration != 300*time.Second || r.NextHopIdle.Duration != 2*time.Second {
		t.Errorf("defaults: %+v", r)
	}
	cfg, err = Parse([]byte(base+`next_hop_cache = false
next_hop_cache_size = 4
next_hop_reuse_limit = 10
next_hop_reuse_time = "60s"
next_hop_idle = "5s"
`), "s.toml")
	if err != nil {
		t.Fatal(err)
	}
	r = cfg.Smtp
	if r.NextHopCache || r.NextHopCacheSize != 4 || r.NextHopReuseLimit != 10 || r.NextHopReuseTime.Duration != time.Minute || r.NextHopIdle.Duration != 5*time.Second {
		t.Errorf("values: %+v", r)
	}
	_, err = Parse([]byte(base+`next_hop_cache = "yes"
next_hop_cache_size = 0
next_hop_reuse_limit = -1
next_hop_reuse_time = "0s"
next_hop_idle = "soon"
`), "e.toml")
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"smtp.next_hop_cache:", "smtp.next_hop_cache_size", "smtp.next_hop_reuse_limit",
		"smtp.next_hop_reuse_time", "smtp.next_hop_idle"} {
		if !strings.Contains(all, want) {
			t.Errorf("no error %q in\n%s", want, all)
		}
	}
}
