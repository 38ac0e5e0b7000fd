// Command calloutd is the callout (sender address verification) server of
// mailmux, speaking mailfromd's calloutd protocol so that mailfromd and
// other existing clients can use it:
//
//	calloutd [--config FILE] [--config-lint] [--foreground] [--stderr|--syslog]
//	         [-S|--source-ip IP] [-X|--transcript|--no-transcript]
//	         [--pidfile FILE] [--resolv-conf-file FILE] [-d|--debug LEVEL]
//	         [--listen URL] [--metrics HOST:PORT] [--single-process] [-V|--version]
//	calloutd cache [-c FILE] list | show ADDRESS|DOMAIN | flush ADDRESS|DOMAIN|--all
//
// It always runs in the foreground (--foreground and --single-process are
// accepted for compatibility). --config-lint checks the file, prints every
// error and exits 0 or 78. SIGTERM and SIGINT stop it: the listeners
// close, sessions finish their command (up to 10 s), background probes are
// cancelled. SIGHUP re-reads the configuration (reload.go). The configuration is described in config.go and
// examples/calloutd.toml; metrics are served on metrics_listen at /metrics
// (Prometheus text) and /stats (JSON).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/internal/service"
)

// Version is the program version.
const Version = "0.1.0"

// Exit statuses (sysexits.h).
const (
	exitUsage     = 64
	exitConfig    = 78
	exitOSErr     = 71
	exitCantCreat = 73
)

// sweepEvery is how often expired entries leave the bolt file.
const sweepEvery = 10 * time.Minute

// shutdownGrace is how long sessions may take to finish on SIGTERM.
const shutdownGrace = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // one pending reload reads the latest file anyway
			}
		}
	}()
	code := runWith(ctx, os.Args[1:], os.Stdout, os.Stderr, reload)
	signal.Stop(hup)
	stop()
	os.Exit(code)
}

type options struct {
	config, sourceIP, pidfile, resolvConf, level, listen, metrics string
	lint, foreground, stderr, syslog, transcript, noTranscript    bool
	single, version                                               bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("calloutd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range []string{"config", "config-file", "c"} {
		fs.StringVar(&o.config, n, "", "configuration `file` (TOML); default: built-in")
	}
	fs.BoolVar(&o.lint, "config-lint", false, "check the configuration, report every error, exit 0 or 78")
	fs.BoolVar(&o.foreground, "foreground", false, "stay in the foreground (always the case)")
	fs.BoolVar(&o.stderr, "stderr", false, "log to standard error (the default)")
	fs.BoolVar(&o.syslog, "syslog", false, "log to syslog (facility mail)")
	for _, n := range []string{"S", "source-ip"} {
		fs.StringVar(&o.sourceIP, n, "", "source `IP` of SMTP probes")
	}
	for _, n := range []string{"X", "transcript"} {
		fs.BoolVar(&o.transcript, n, false, "log SMTP transcripts")
	}
	fs.BoolVar(&o.noTranscript, "no-transcript", false, "do not log SMTP transcripts")
	fs.StringVar(&o.pidfile, "pidfile", "", "write the process id to `file`")
	fs.StringVar(&o.resolvConf, "resolv-conf-file", "", "read name servers from `file`")
	for _, n := range []string{"d", "debug"} {
		fs.StringVar(&o.level, n, "", "log `level`: debug, info, warn, error")
	}
	fs.StringVar(&o.listen, "listen", "", "listen on `URL` (overrides the configuration)")
	fs.StringVar(&o.metrics, "metrics", "", "serve metrics on `host:port`")
	fs.BoolVar(&o.single, "single-process", false, "accepted for compatibility; no effect")
	for _, n := range []string{"V", "version"} {
		fs.BoolVar(&o.version, n, false, "print the version")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if n, err := strconv.Atoi(s); err == nil {
		if n > 0 {
			return slog.LevelDebug, nil
		}
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

// run is main with its environment passed in; ctx's end is SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, nil)
}

// runWith is run with reload requests (SIGHUP; nil: none).
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, reload <-chan struct{}) int {
	if len(args) > 0 && args[0] == "cache" {
		return cacheCmd(ctx, args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "calloutd: %v\n", err)
		return exitUsage
	}
	if o.version {
		fmt.Fprintf(stdout, "calloutd (mailmux) %s\n", Version)
		return 0
	}
	cfg, err := loadConfig(o.config)
	if err == nil {
		err = applyFlags(cfg, o)
	}
	if err != nil {
		errs := configErrors(err)
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		if o.lint {
			fmt.Fprintf(stderr, "calloutd: %d error(s)\n", len(errs))
		}
		return exitConfig
	}
	if o.lint {
		fmt.Fprintf(stdout, "%s: OK\n", o.config)
		return 0
	}
	level := new(slog.LevelVar)
	log, err := newLogger(o, cfg, level, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "calloutd: %v\n", err)
		return exitConfig
	}
	load := func() (*Config, error) {
		c, err := loadConfig(o.config)
		if err == nil {
			err = applyFlags(c, o)
		}
		return c, err
	}
	return serve(ctx, cfg, log, &reloader{req: reload, load: load, file: o.config, level: level})
}

// applyFlags lets command-line options override the file.
func applyFlags(c *Config, o *options) error {
	if o.sourceIP != "" {
		a, err := netip.ParseAddr(o.sourceIP)
		if err != nil {
			return fmt.Errorf("--source-ip: %q is not an IP address", o.sourceIP)
		}
		c.SourceIP = a
	}
	if o.transcript {
		c.Transcript = true
	}
	if o.noTranscript {
		c.Transcript = false
	}
	if o.pidfile != "" {
		c.PIDFile = o.pidfile
	}
	if o.resolvConf != "" {
		c.ResolvConf, c.DNSServers = o.resolvConf, nil
	}
	if o.listen != "" {
		c2, err := parseConfig(fmt.Sprintf("listen = %q", o.listen), "--listen")
		if err != nil {
			return err
		}
		c.Listen = c2.Listen
	}
	if o.metrics != "" {
		c.MetricsListen = o.metrics
	}
	if o.level != "" {
		if _, err := parseLevel(o.level); err != nil {
			return fmt.Errorf("--debug: %w", err)
		}
		c.LogLevel = o.level
	}
	return nil
}

// newLogger returns the log at c's level, held in level (a reload sets it).
func newLogger(o *options, c *Config, level *slog.LevelVar, stderr io.Writer) (*slog.Logger, error) {
	l, err := parseLevel(c.LogLevel)
	if err != nil {
		return nil, err
	}
	level.Set(l)
	var w io.Writer = stderr
	if o.syslog && !o.stderr {
		sw, err := syslog.New(syslog.LOG_MAIL|syslog.LOG_INFO, "calloutd")
		if err != nil {
			fmt.Fprintf(stderr, "calloutd: syslog unavailable (%v), logging to stderr\n", err)
		} else {
			w = sw
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("prog", "calloutd"), nil
}

// build wires the configuration into a Server, opening its cache.
func build(ctx context.Context, c *Config, log *slog.Logger) (*callout.Server, cache.Store, error) {
	var store cache.Store
	switch c.CacheType {
	case "bolt":
		b, err := cache.OpenBolt(c.CachePath)
		if err != nil {
			return nil, nil, err
		}
		store = b
	case "redis":
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := cache.OpenRedis(rctx, c.RedisURL, c.RedisPrefix)
		if err != nil {
			return nil, nil, err
		}
		store = r
	case "memory":
		store = &cache.Memory{}
	}
	return settings(c, log, store), store, nil
}

// settings returns the Server (and its Verifier) of c on an open store
// (nil: no cache); a reload hands them to the running ones' Update.
func settings(c *Config, log *slog.Logger, store cache.Store) *callout.Server {
	p := &smtpprobe.Prober{
		Resolver:              &smtpprobe.Resolver{Servers: c.DNSServers, ResolvConf: c.ResolvConf, Timeout: c.DNSTimeout},
		Port:                  c.SMTPPort,
		SourceIP:              c.SourceIP,
		Ehlo:                  c.Ehlo,
		MailFrom:              c.MailFrom,
		StartTLS:              c.StartTLS,
		Timeouts:              c.Soft,
		MaxAddresses:          c.MaxAddresses,
		ContinueAfterTempFail: c.CalloutdWalk,
	}
	if c.Transcript {
		p.Transcript = func(tag string, sent bool, line string) {
			// calloutd's labels: S: what we sent, C: what the server said.
			dir := "C:"
			if sent {
				dir = "S:"
			}
			log.Info(dir+" "+line, "sid", tag)
		}
	}
	v := &callout.Verifier{
		Prober: p, MaxPending: c.MaxPending, DomainConcurrency: c.DomainConcurrency,
		DomainRate: c.DomainRate, DomainBurst: c.DomainBurst, CatchAll: c.CatchAll,
		HardTimeouts: c.Hard, BgWorkers: c.BgWorkers, BgQueue: c.BgQueue, Logger: log,
	}
	if store != nil {
		v.Cache = &cache.Cache{Store: store, Positive: c.Positive, Negative: c.Negative,
			DeadDomain: c.Dead, DomainDown: c.Down, CatchAll: c.CA}
	}
	srv := &callout.Server{
		Verifier: v, Ehlo: c.Ehlo, MailFrom: c.MailFrom, Timeouts: c.Soft,
		MaxQueue: c.SessionQueue, RunParallel: c.RunParallel, IdleTimeout: c.IdleTimeout,
		ProbeTimeout: c.ProbeTimeout, MaxConns: c.MaxInstances, NoBackground: !c.Background, Logger: log,
	}
	return srv
}

func serve(ctx context.Context, c *Config, log *slog.Logger, rl *reloader) int {
	srv, store, err := build(ctx, c, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitOSErr
	}
	if store != nil {
		defer store.Close()
	}
	defer srv.Verifier.Close()
	var lns []net.Listener
	for _, a := range c.Listen {
		ln, err := listen(a, c.Backlog)
		if err != nil {
			log.Error("cannot listen", "err", err)
			for _, l := range lns {
				l.Close()
			}
			return exitOSErr
		}
		lns = append(lns, ln)
	}
	if c.PIDFile != "" {
		if err := os.WriteFile(c.PIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			log.Error("cannot write pidfile", "file", c.PIDFile, "err", err)
			for _, l := range lns {
				l.Close()
			}
			return exitCantCreat
		}
		defer os.Remove(c.PIDFile)
	}
	if c.MetricsListen != "" {
		ms, err := serveMetrics(c.MetricsListen, srv.Verifier, log)
		if err != nil {
			log.Error("cannot serve metrics", "err", err)
			return exitOSErr
		}
		defer ms.Close()
	}
	if c.User != "" {
		// Sockets, pidfile, metrics and cache are open: switch.
		id, err := service.Account(c.User, c.Group)
		if err == nil {
			err = service.Drop(id)
		}
		if err != nil {
			log.Error("cannot switch to the configured user", "err", err)
			for _, l := range lns {
				l.Close()
			}
			return exitOSErr
		}
		log.Info("running as", "user", id.User, "uid", id.UID, "gid", id.GID)
	} else if os.Geteuid() == 0 {
		log.Warn("running as root: set user (and group) in the configuration to drop privileges once the sockets are bound")
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(lns))
	for i, ln := range lns {
		log.Info("calloutd started", "listen", c.Listen[i].String(), "backlog", c.Backlog, "cache", c.CacheType, "version", Version)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveListener(srv, ln, c.Listen[i].String()); err != nil {
				errc <- err
			}
		}()
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	if b, ok := store.(*cache.Bolt); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(sweepEvery)
			defer t.Stop()
			for {
				select {
				case <-sweepCtx.Done():
					return
				case now := <-t.C:
					if n, err := b.Sweep(now); err != nil {
						log.Warn("cache sweep", "err", err)
					} else if n > 0 {
						log.Debug("cache sweep", "expired", n)
					}
				}
			}
		}()
	}
	status := 0
loop:
	for {
		select {
		case <-rl.req:
			c = rl.reload(c, srv, store, log)
		case <-ctx.Done():
			log.Info("calloutd terminating")
			break loop
		case err := <-errc:
			log.Error("listener failed: calloutd stops", "err", err)
			status = exitOSErr
			break loop
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("sessions cut at shutdown", "err", err)
	}
	stopSweep()
	wg.Wait()
	return status
}

// serveListener serves srv on ln until Shutdown; an error says which
// listen address (addr) failed and how; nil after Shutdown.
func serveListener(srv *callout.Server, ln net.Listener, addr string) error {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, callout.ErrServerClosed) {
		return fmt.Errorf("listen %s: accepting connections: %w", addr, err)
	}
	return nil
}

// serveMetrics serves /metrics (Prometheus text) and /stats (JSON).
func serveMetrics(addr string, v *callout.Verifier, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", strings.TrimPrefix(addr, "inet:"))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		v.Stats().WritePrometheus(w)
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v.Stats())
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics", "err", err)
		}
	}()
	log.Info("metrics", "listen", ln.Addr().String())
	return hs, nil
}
