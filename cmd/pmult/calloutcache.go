// calloutcache.go: "pmult callout-cache -c FILE [-b BACKEND] [--socket
// PATH] list | show ADDRESS|DOMAIN | flush ADDRESS|DOMAIN|--all": the
// cache of a callout backend of the configuration, with why each entry is
// there and when it expires. While pmult runs it is asked over its
// control socket (control_socket, or --socket): the cache its sessions
// use, so a flush applies at once; when nothing listens there (pmult is
// not running) the cache is opened directly (its bbolt file, which a
// running pmult holds locked, or its Redis). The output is the same.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	callout "github.com/mailmux/mailmux/backends/callout"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/config"
)

func calloutCache(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmult callout-cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path, name, socket string
	fs.StringVar(&socket, "socket", "", "the running pmult's control socket `path` (default: the configuration's control_socket)")
	fs.StringVar(&path, "c", "", "configuration `file`")
	fs.StringVar(&path, "config", "", "configuration `file`")
	fs.StringVar(&name, "b", "", "the callout `backend` (default: the only one)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pmult callout-cache -c FILE [-b BACKEND] [--socket PATH] list | show ADDRESS|DOMAIN | flush ADDRESS|DOMAIN|--all")
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
	if socket == "" {
		socket = cfg.ControlSocket
	}
	if socket != "" {
		code, err := askCalloutCache(socket, backend, fs.Args(), stdout, stderr)
		if err == nil {
			return code
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			fmt.Fprintf(stderr, "pmult callout-cache: %v\n", err)
			return 69
		}
		// Nothing listens: pmult is not running; open the cache itself.
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := settings.CacheOpener(backend)(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pmult callout-cache: backend %s: %v (a running pmult holds a bolt file locked: set control_socket to administer it live)\n", backend, err)
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

// askCalloutCache sends the command to the running pmult's control
// socket and copies its answer; the last line says how it went ("ok",
// "usage: ...", "error: ..."). err is the dial error when nothing
// listens (then nothing was written).
func askCalloutCache(path, backend string, args []string, stdout, stderr io.Writer) (int, error) {
	c, err := net.DialTimeout("unix", path, whyTimeout)
	if err != nil {
		return 0, fmt.Errorf("control socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(whyTimeout))
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			fmt.Fprintf(stderr, "pmult callout-cache: argument %q cannot be sent (empty or with white space)\n", a)
			return 64, nil
		}
	}
	if _, err := fmt.Fprintf(c, "callout-cache %s %s\n", backend, strings.Join(args, " ")); err != nil {
		fmt.Fprintf(stderr, "pmult callout-cache: control socket %s: %v\n", path, err)
		return 69, nil
	}
	b, err := io.ReadAll(c)
	if err != nil {
		fmt.Fprintf(stderr, "pmult callout-cache: control socket %s: %v\n", path, err)
		return 69, nil
	}
	out := strings.TrimSuffix(string(b), "\n")
	last := out
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		last, out = out[i+1:], out[:i+1]
	} else {
		out = ""
	}
	io.WriteString(stdout, out)
	switch {
	case last == "ok":
		return 0, nil
	case strings.HasPrefix(last, "usage: "):
		fmt.Fprintln(stderr, "usage: pmult callout-cache -c FILE [-b BACKEND] [--socket PATH] list | show ADDRESS|DOMAIN | flush ADDRESS|DOMAIN|--all")
		return 64, nil
	case strings.HasPrefix(last, "error: "):
		fmt.Fprintf(stderr, "pmult callout-cache: %s\n", strings.TrimPrefix(last, "error: "))
		return 71, nil
	}
	fmt.Fprintf(stderr, "pmult callout-cache: control socket %s: the answer ended early (%q)\n", path, last)
	return 69, nil
}
