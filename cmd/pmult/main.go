// Command pmult is the milter multiplexer: MTAs (Postfix, Sendmail) connect
// to it as to one milter, MeTA1's smtps as to a policy milter (the [meta1]
// table; its wire format is a provisional model, see docs/meta1.md); it
// fans every session out to the configured backend milters and merges
// their answers.
//
//	pmult [-c FILE] [--url URL] [--meta1-url URL] [-s|--stderr] [--syslog]
//	      [-x|--debug[=LEVEL]] [--log-tag TAG] [--pidfile FILE] [--no-signal-handler]
//	pmult check -c FILE      validate FILE, report every error, exit 78 if bad
//	pmult mta-config postfix|sendmail|meta1 [-c FILE]   print the MTA-side snippet
//	pmult import -c /etc/mailfromd.conf [-o FILE]   convert a mailfromd pmult configuration
//	pmult version
//
// Without -c it runs on a built-in default configuration (listen on
// inet:127.0.0.1:7357, no backends: every message is accepted).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailmux/mailmux/adapters/meta1"
	adapter "github.com/mailmux/mailmux/adapters/milter"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/pmult"
)

// Version is the program version.
const Version = "0.1.0"

// exitConfig is the exit status for a bad configuration (EX_CONFIG).
const exitConfig = 78

// gcPercent is pmult's garbage collector target unless GOGC is set: the
// live heap is small (tens of KiB per session), so collecting less often
// costs little memory and removes most collector pauses from the tail
// latency of milter replies (measured with make bench).
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return check(args[1:], stdout, stderr)
		case "mta-config":
			return mtaConfig(args[1:], stdout, stderr)
		case "import":
			return importCmd(args[1:], stdout, stderr)
		case "version", "--version", "-V":
			fmt.Fprintf(stdout, "pmult (mailmux) %s\n", Version)
			return 0
		case "run":
			args = args[1:]
		}
	}
	return serve(args, stderr)
}

// debugFlag is -x/--debug: alone it means debug level; --debug=LEVEL takes
// a level name (debug, info, warn, error) or a number (>0: debug).
type debugFlag struct{ level *string }

func (d debugFlag) String() string {
	if d.level == nil {
		return ""
	}
	return *d.level
}
func (d debugFlag) IsBoolFlag() bool { return true }
func (d debugFlag) Set(s string) error {
	switch strings.ToLower(s) {
	case "true":
		*d.level = "debug"
	case "false":
	default:
		if n, err := strconv.Atoi(s); err == nil {
			if n > 0 {
				*d.level = "debug"
			}
			return nil
		}
		if _, err := parseLevel(s); err != nil {
			return err
		}
		*d.level = s
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

type options struct {
	config, url, meta1URL, logTag, pidfile, level string
	metrics                                       string
	stderr, syslog, noSignals                     bool
}

func parseFlags(name string, args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "c", "", "configuration `file` (TOML); default: built-in")
	fs.StringVar(&o.config, "config", "", "configuration `file` (TOML); default: built-in")
	fs.StringVar(&o.url, "url", "", "listen on `URL` (overrides the configuration's listen)")
	fs.StringVar(&o.meta1URL, "meta1-url", "", "MeTA1 front: listen on `URL` (overrides [meta1] listen; mailfromd pmult's --url)")
	fs.BoolVar(&o.stderr, "s", false, "log to standard error (default)")
	fs.BoolVar(&o.stderr, "stderr", false, "log to standard error (default)")
	fs.BoolVar(&o.syslog, "syslog", false, "log to syslog")
	fs.Var(debugFlag{&o.level}, "x", "debug logging (or --debug=LEVEL)")
	fs.Var(debugFlag{&o.level}, "debug", "log `level`: debug, info, warn, error")
	fs.StringVar(&o.logTag, "log-tag", "", "syslog identifier")
	fs.StringVar(&o.pidfile, "pidfile", "", "write the process id to `file`")
	fs.BoolVar(&o.noSignals, "no-signal-handler", false, "do not handle signals (debugging)")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on `host:port` (/metrics)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, nil
}

func check(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags("pmult check", args, stderr)
	if err != nil {
		return 64
	}
	if o.config == "" {
		fmt.Fprintln(stderr, "pmult check: -c FILE is required")
		return 64
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		errs := config.Errors(err)
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintf(stderr, "%s: %d error(s)\n", o.config, len(errs))
		return exitConfig
	}
	for _, w := range timerWarnings(cfg) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", o.config, w)
	}
	if !checkSpool(cfg, stdout, stderr) {
		fmt.Fprintf(stderr, "%s: spool_dir unusable\n", o.config)
		return exitConfig
	}
	fmt.Fprintf(stdout, "%s: OK (%d listen address(es), %d MeTA1 listen address(es), %d backend(s))\n",
		o.config, len(cfg.ListenAddrs), len(cfg.Meta1.ListenAddrs), len(cfg.Backends))
	return 0
}

func newLogger(o *options, cfg *config.Config, stderr io.Writer) (*slog.Logger, error) {
	lv := cfg.LogLevel
	if o.level != "" {
		lv = o.level
	}
	level, err := parseLevel(lv)
	if err != nil {
		return nil, err
	}
	tag := cfg.LogTag
	if o.logTag != "" {
		tag = o.logTag
	}
	var w io.Writer = stderr
	if o.syslog && !o.stderr {
		sw, err := syslog.New(syslog.LOG_MAIL|syslog.LOG_INFO, tag)
		if err != nil {
			fmt.Fprintf(stderr, "pmult: syslog unavailable (%v), logging to stderr\n", err)
		} else {
			w = sw
		}
	}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("prog", tag), nil
}

func serve(args []string, stderr io.Writer) int {
	o, err := parseFlags("pmult", args, stderr)
	if err != nil {
		return 64
	}
	var cfg *config.Config
	if o.config != "" {
		cfg, err = config.Load(o.config)
		if err != nil {
			for _, e := range config.Errors(err) {
				fmt.Fprintln(stderr, e)
			}
			return exitConfig
		}
	} else {
		cfg = config.Default()
	}
	if o.url != "" {
		a, err := config.ParseAddress(o.url)
		if err != nil {
			fmt.Fprintf(stderr, "pmult: --url: %v\n", err)
			return exitConfig
		}
		cfg.ListenAddrs = []config.Address{a}
	}
	if o.meta1URL != "" {
		a, err := config.ParseAddress(o.meta1URL)
		if err != nil {
			fmt.Fprintf(stderr, "pmult: --meta1-url: %v\n", err)
			return exitConfig
		}
		cfg.Meta1.ListenAddrs = []config.Address{a}
	}
	log, err := newLogger(o, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pmult: %v\n", err)
		return exitConfig
	}
	eng, err := cfg.Engine(log)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return exitConfig
	}
	if len(eng.Slots) == 0 {
		log.Warn("no backends configured: every message is accepted unfiltered")
	}
	srv := &adapter.Server{
		Engine:      eng,
		Log:         log,
		MaxData:     cfg.MaxPacket,
		MaxSessions: cfg.MaxSessions,

		NegotiateTimeout: cfg.NegotiateTimeout.Duration,
		IdleTimeout:      cfg.IdleTimeout.Duration,
		WriteTimeout:     cfg.WriteTimeout.Duration,
	}
	frontSettings(srv, cfg)
	for _, w := range timerWarnings(cfg) {
		log.Warn(w)
	}
	msrv := meta1Server(o, cfg, eng, log, stderr)
	var lns, mlns []net.Listener
	for i, a := range append(slices.Clone(cfg.ListenAddrs), cfg.Meta1.ListenAddrs...) {
		ln, err := listen(a)
		if err != nil {
			log.Error("cannot listen", "err", err)
			for _, l := range append(lns, mlns...) {
				l.Close()
			}
			return 71
		}
		warnWildcard(log, "pmult", a)
		if i < len(cfg.ListenAddrs) {
			lns = append(lns, ln)
		} else {
			mlns = append(mlns, ln)
		}
	}
	pidfile := cfg.PIDFile
	if o.pidfile != "" {
		pidfile = o.pidfile
	}
	if pidfile != "" {
		if err := writePidfile(pidfile); err != nil {
			log.Error("cannot write pidfile", "file", pidfile, "err", err)
			return 73
		}
		defer os.Remove(pidfile)
	}
	if o.metrics != "" {
		cfg.MetricsListen = o.metrics
	}
	if cfg.MetricsListen != "" {
		ms, err := serveMetrics(cfg.MetricsListen, srv, log)
		if err != nil {
			log.Error("cannot serve metrics", "err", err)
			return 71
		}
		defer ms.Close()
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(lns)+len(mlns))
	for i, ln := range lns {
		log.Info("listening", "address", cfg.ListenAddrs[i].String(), "backends", len(eng.Slots), "version", Version)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, adapter.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	for i, ln := range mlns {
		log.Info("listening for MeTA1 smtps (provisional pmilter model)", "address", cfg.Meta1.ListenAddrs[i].String(),
			"backends", len(eng.Slots), "version", Version)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := msrv.Serve(ln); err != nil && !errors.Is(err, meta1.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	ctx := context.Background()
	stop := func() {}
	hup := make(chan os.Signal, 1)
	if !o.noSignals {
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	defer stop()
	status := 0
	old := []*pmult.Engine{eng}
loop:
	for {
		select {
		case <-hup:
			// Reload: new sessions use the new backends and policies; open
			// sessions finish on the old ones. Listen addresses stay.
			if o.config == "" {
				log.Info("SIGHUP: no configuration file to reload")
				continue
			}
			ncfg, err := config.Load(o.config)
			if err == nil {
				var ne *pmult.Engine
				if ne, err = ncfg.Engine(log); err == nil {
					srv.SetEngine(ne)
					msrv.SetEngine(ne)
					old[len(old)-1].Retire() // its open sessions still finish on it, then close their connections
					old = append(old, ne)
					log.Info("configuration reloaded", "file", o.config, "backends", len(ne.Slots))
					if !slices.EqualFunc(ncfg.ListenAddrs, cfg.ListenAddrs, func(a, b config.Address) bool { return a == b }) {
						log.Warn("listen addresses changed: restart pmult to apply them")
					}
					if frontChanged(cfg, ncfg) {
						log.Warn("progress_interval or [mta_macros] changed: restart pmult to apply them")
					}
					continue
				}
			}
			for _, e := range config.Errors(err) {
				log.Error("reload failed, keeping the running configuration", "err", e)
			}
		case <-ctx.Done():
			log.Info("shutting down: letting open sessions finish", "sessions", srv.ActiveSessions(),
				"deadline", cfg.ShutdownTimeout.Duration.String())
			break loop
		case err := <-errc:
			log.Error("listener failed", "err", err)
			status = 1
			break loop
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.Duration)
	defer cancel()
	var sdwg sync.WaitGroup
	sdwg.Add(1)
	go func() {
		defer sdwg.Done()
		if err := msrv.Shutdown(sctx); err != nil {
			log.Warn("shutdown", "err", err)
		}
	}()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	sdwg.Wait()
	wg.Wait()
	for _, e := range old {
		e.Retire()
	}
	for _, a := range append(slices.Clone(cfg.ListenAddrs), cfg.Meta1.ListenAddrs...) {
		if a.Network == "unix" {
			os.Remove(a.Addr)
		}
	}
	log.Info("stopped")
	return status
}

// serveMetrics serves the current engine's counters on addr at /metrics.
// After a reload (SIGHUP) the counters start again from zero.
// A bare port means loopback; a wildcard address is warned about.
func serveMetrics(addr string, srv *adapter.Server, log *slog.Logger) (*http.Server, error) {
	addr = metricsAddr(addr)
	if isWildcard(addr) {
		log.Warn("metrics listen on every address: anyone who can reach it reads pmult's counters", "address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		e := srv.CurrentEngine()
		e.Metrics().WriteText(w, e.BackendNames())
		fmt.Fprintf(w, "# TYPE pmult_mta_connections gauge\npmult_mta_connections %d\n", srv.ActiveSessions())
		writeProcessMetrics(w)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	log.Info("serving metrics", "address", "http://"+ln.Addr().String()+"/metrics")
	return hs, nil
}

// meta1Server builds the MeTA1 front end (used only when [meta1] listens).
// pmilter_debug > 0 logs it at debug level.
func meta1Server(o *options, cfg *config.Config, eng *pmult.Engine, log *slog.Logger, stderr io.Writer) *meta1.Server {
	mlog := log
	if cfg.Meta1.PmilterDebug > 0 {
		do := *o
		do.level = "debug"
		if l, err := newLogger(&do, cfg, stderr); err == nil {
			mlog = l
		}
	}
	return &meta1.Server{
		Engine:         eng,
		Log:            mlog,
		Macros:         cfg.Meta1.Macros,
		Version:        Version,
		MaxRecord:      cfg.MaxPacket,
		MaxSessions:    cfg.Meta1.MaxSessions,
		SoftSessions:   cfg.Meta1.MaxSessionsSoft,
		MaxConnections: cfg.Meta1.MaxConnections,
	}
}
