// calloutcache.go: "pmult callout-cache -c FILE [-b BACKEND] list | show
// ADDRESS|DOMAIN | flush ADDRESS|DOMAIN|--all": the cache of a callout
// backend of the configuration (its bbolt file, which a running pmult
// holds locked, or its Redis, which can be administered live), with why
// each entry is there and when it expires.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	callout "github.com/mailmux/mailmux/backends/callout"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/config"
)

func calloutCache(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmult callout-cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path, name string
	fs.StringVar(&path, "c", "", "configuration `file`")
	fs.StringVar(&path, "config", "", "configuration `file`")
	fs.StringVar(&name, "b", "", "the callout `backend` (default: the only one)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pmult callout-cache -c FILE [-b BACKEND] list | show ADDRESS|DOMAIN | flush ADDRESS|DOMAIN|--all")
	}
	if err := fs.Parse(args); err != nil {
		return 64
	}
	if path == "" {
		fs.Usage()
		return 64
	}
	cfg, err := config.Load(path)
	if err != nil {
		for _, e := range config.Errors(err) {
			fmt.Fprintln(stderr, e)
		}
		return exitConfig
	}
	var found []string
	var settings *callout.Settings
	var backend string
	for _, b := range cfg.Backends {
		s, ok := b.Settings.(*callout.Settings)
		if !ok {
			continue
		}
		found = append(found, b.Name)
		if name == "" || b.Name == name {
			settings, backend = s, b.Name
		}
	}
	switch {
	case len(found) == 0:
		fmt.Fprintf(stderr, "pmult callout-cache: %s has no backend of type callout\n", path)
		return exitConfig
	case name == "" && len(found) > 1:
		fmt.Fprintf(stderr, "pmult callout-cache: %s has several callout backends %v: choose one with -b\n", path, found)
		return 64
	case settings == nil:
		fmt.Fprintf(stderr, "pmult callout-cache: no callout backend %q (have %v)\n", name, found)
		return 64
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := settings.CacheOpener(backend)(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pmult callout-cache: backend %s: %v (a running pmult holds a bolt file locked)\n", backend, err)
		return 71
	}
	if c == nil || settings.Cache == "memory" {
		fmt.Fprintf(stderr, "pmult callout-cache: backend %s keeps its cache in memory or none: nothing to administer\n", backend)
		return exitConfig
	}
	defer c.Store.Close()
	if err := cache.Admin(ctx, c.Store, fs.Args(), stdout, time.Now()); err != nil {
		if errors.Is(err, cache.ErrUsage) {
			fs.Usage()
			return 64
		}
		fmt.Fprintf(stderr, "pmult callout-cache: %v\n", err)
		return 71
	}
	return 0
}
