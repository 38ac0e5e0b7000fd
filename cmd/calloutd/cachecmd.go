// cachecmd.go: "calloutd cache [-c FILE] list | show ADDRESS|DOMAIN |
// flush ADDRESS|DOMAIN|--all": the cache of a calloutd configuration
// (its bbolt file, which must not be held by a running calloutd: bbolt
// locks it; or its Redis), with why each entry is there and when it
// expires.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mailmux/mailmux/callout/cache"
)

// cacheCmd runs the cache subcommand.
func cacheCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("calloutd cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path string
	fs.StringVar(&path, "c", "", "configuration `file`")
	fs.StringVar(&path, "config", "", "configuration `file`")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: calloutd cache [-c FILE] list | show ADDRESS|DOMAIN | flush ADDRESS|DOMAIN|--all")
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg, err := loadConfig(path)
	if err != nil {
		for _, e := range configErrors(err) {
			fmt.Fprintln(stderr, e)
		}
		return exitConfig
	}
	var st cache.Store
	switch cfg.CacheType {
	case "bolt":
		st, err = cache.OpenBolt(cfg.CachePath)
	case "redis":
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err = cache.OpenRedis(rctx, cfg.RedisURL, cfg.RedisPrefix)
		cancel()
	default:
		fmt.Fprintf(stderr, "calloutd cache: the cache is %q: nothing kept to administer\n", cfg.CacheType)
		return exitConfig
	}
	if err != nil {
		fmt.Fprintf(stderr, "calloutd cache: %v\n", err)
		return exitOSErr
	}
	defer st.Close()
	if err := cache.Admin(ctx, st, fs.Args(), stdout, time.Now()); err != nil {
		if errors.Is(err, cache.ErrUsage) {
			fs.Usage()
			return exitUsage
		}
		fmt.Fprintf(stderr, "calloutd cache: %v\n", err)
		return exitOSErr
	}
	return 0
}
