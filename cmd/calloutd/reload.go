// reload.go: SIGHUP re-reads the configuration (the same file, the same
// command-line overrides). Limits, timeouts, the prober's settings
// (ehlo_domain, mail_from_address, source_ip, starttls, DNS, transcript),
// the log level and the cache lifetimes apply to the sessions and
// requests that start after it (calloutd's Server and Verifier Update);
// open sessions finish with theirs, probes in flight and background
// completion go on. What is bound or opened at startup (listen, backlog,
// max_instances, the cache's type and location, pidfile, metrics_listen,
// user, group, the background workers and queue) is not changed: a
// changed value gets a warning naming it (restart calloutd to apply it)
// and the running one stays. A file that does not load, or does not
// validate, changes nothing: one error line with every problem.

package main

import (
	"log/slog"
	"slices"
	"strings"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/config/syntax"
)

// reloader is what serve needs to reload.
type reloader struct {
	req   <-chan struct{} // reload requests (nil: none)
	load  func() (*Config, error)
	file  string // for the log ("": built-in defaults)
	level *slog.LevelVar
}

// reload loads the configuration again and applies what can change to
// srv; it returns the configuration now in force (old on error).
func (rl *reloader) reload(old *Config, srv *callout.Server, store cache.Store, log *slog.Logger) *Config {
	file := rl.file
	if file == "" {
		file = "built-in defaults"
	}
	nc, err := rl.load()
	if err != nil {
		var msgs []string
		for _, e := range configErrors(err) {
			msgs = append(msgs, e.Error())
		}
		log.Error("reload failed, keeping the running configuration", "file", file, "err", strings.Join(msgs, "; "))
		return old
	}
	for _, k := range keepRestartOnly(old, nc) {
		log.Warn("reload: "+k+" changed: restart calloutd to apply it (keeping the running value)", "file", file)
	}
	l, _ := parseLevel(nc.LogLevel) // validated by the load
	rl.level.Set(l)
	n := settings(nc, log, store)
	srv.Verifier.Update(n.Verifier)
	srv.Update(n)
	log.Info("configuration reloaded", "file", file, "log_level", nc.LogLevel)
	return nc
}

// keepRestartOnly puts old's values of the settings that apply from the
// start only into nc and returns the names of those that differed.
func keepRestartOnly(old, nc *Config) []string {
	var changed []string
	keep := func(name string, differ bool, restore func()) {
		if differ {
			changed = append(changed, name)
			restore()
		}
	}
	keep("listen", !slices.EqualFunc(old.Listen, nc.Listen, func(a, b syntax.Address) bool { return a == b }),
		func() { nc.Listen = old.Listen })
	keep("backlog", old.Backlog != nc.Backlog, func() { nc.Backlog = old.Backlog })
	keep("max_instances", old.MaxInstances != nc.MaxInstances, func() { nc.MaxInstances = old.MaxInstances })
	keep("cache.type", old.CacheType != nc.CacheType, func() { nc.CacheType = old.CacheType })
	keep("cache.path/redis_url/redis_prefix", old.CachePath != nc.CachePath || old.RedisURL != nc.RedisURL ||
		old.RedisPrefix != nc.RedisPrefix, func() { nc.CachePath, nc.RedisURL, nc.RedisPrefix = old.CachePath, old.RedisURL, old.RedisPrefix })
	keep("pidfile", old.PIDFile != nc.PIDFile, func() { nc.PIDFile = old.PIDFile })
	keep("metrics_listen", old.MetricsListen != nc.MetricsListen, func() { nc.MetricsListen = old.MetricsListen })
	keep("user/group", old.User != nc.User || old.Group != nc.Group, func() { nc.User, nc.Group = old.User, old.Group })
	keep("limits.background_workers/background_queue", old.BgWorkers != nc.BgWorkers || old.BgQueue != nc.BgQueue,
		func() { nc.BgWorkers, nc.BgQueue = old.BgWorkers, old.BgQueue })
	return changed
}
