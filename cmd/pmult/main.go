// Command pmult is the milter multiplexer: MTAs (Postfix, Sendmail) connect
// to it as to one milter, MeTA1's smtps as to a policy milter (the [meta1]
// table; its wire format is a provisional model, see docs/meta1.md); it
// fans every session out to the configured backend milters and merges
// their answers.
//
//	pmult [-c FILE] [--url URL] [--meta1-url URL] [-s|--stderr] [--syslog]
//	      [-x|--debug[=LEVEL]] [--log-tag TAG] [--pidfile FILE] [--no-signal-handler]
//	pmult check -c FILE      validate FILE, report every error (and old key spellings), exit 78 if bad
//	pmult mta-config postfix|sendmail|meta1|exim [-c FILE]   print the MTA-side snippet
//	pmult import -c /etc/mailfromd.conf [-o FILE]   convert a mailfromd pmult configuration
//	pmult callout-cache -c FILE [-b NAME] list|show|flush ...   a callout backend's cache
//	pmult why [-c FILE] [--socket PATH|--metrics HOST:PORT] QUEUEID|SESSION
//	                         the decision record of a recent message, from the running pmult
//	pmult version
//
// Without -c it runs on a built-in default configuration (listen on
// inet:127.0.0.1:7357, no backends: every message is accepted).
//
// This file is the flags, the logging and the signals (SIGTERM/SIGINT
// drain, SIGHUP reload); internal/service runs the rest.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/gotune"
	"github.com/mailmux/mailmux/internal/logx"
	"github.com/mailmux/mailmux/internal/service"
)

// Version is the program version.
const Version = "0.1.0"

// exitConfig is the exit status for a bad configuration (EX_CONFIG).
const exitConfig = 78

func main() {
	keepSysmonAwake(os.Args[1:])
	gotune.SetGC()
	if daemonRun(os.Args[1:]) {
		// For the life of the process (in main, not run: tests run the
		// daemon inside their own process).
		gotune.AdaptProcs(context.Background())
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
		case "callout-cache":
			return calloutCache(args[1:], stdout, stderr)
		case "why":
			return whyCmd(args[1:], stdout, stderr)
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
	live                                          bool   // check, mta-config: negotiate with every backend
	queueDir                                      string // mta-config postfix: Postfix's queue_directory (chroot)
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
	fs.BoolVar(&o.live, "live", false, "check, mta-config: connect to every backend and negotiate (mta-config always does)")
	fs.StringVar(&o.queueDir, "queue-directory", "/var/spool/postfix", "mta-config postfix: Postfix's queue_directory, the chroot of smtpd")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, nil
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
	// logx.NewText: the standard text handler's lines, the decision
	// line's long quoted values written faster, and the attributes of
	// the loggers pmult derives for every session and backend (most of
	// which write nothing) formatted only when one writes.
	h := logx.NewText(w, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("prog", tag), nil
}

// logBatchDelay is how long a log line written under load may be held
// (logx.Batch).
const logBatchDelay = 50 * time.Millisecond

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
		cfg.Milter.ListenAddrs = []config.Address{a}
	}
	if o.meta1URL != "" {
		a, err := config.ParseAddress(o.meta1URL)
		if err != nil {
			fmt.Fprintf(stderr, "pmult: --meta1-url: %v\n", err)
			return exitConfig
		}
		cfg.Meta1.ListenAddrs = []config.Address{a}
	}
	if o.pidfile != "" {
		cfg.PIDFile = o.pidfile
	}
	if o.metrics != "" {
		cfg.MetricsListen = o.metrics
	}
	// Under load, the lines (a decision line per message) go to standard
	// error in batches: one write(2) where there were tens, and its
	// reader (journald) woken as rarely. A line after a quiet spell, and
	// every warning and error, are written at once.
	out := logx.NewBatch(stderr, logBatchDelay)
	defer out.Close()
	stderr = out
	log, err := newLogger(o, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pmult: %v\n", err)
		return exitConfig
	}
	var mlog *slog.Logger // pmilter_debug > 0: the MeTA1 front logs at debug level
	if cfg.Meta1.PmilterDebug > 0 {
		do := *o
		do.level = "debug"
		if l, err := newLogger(&do, cfg, stderr); err == nil {
			mlog = l
		}
	}
	var load func() (*config.Config, error)
	if o.config != "" {
		load = func() (*config.Config, error) { return config.Load(o.config) }
	}

	ctx := context.Background()
	reload := make(chan struct{}, 1)
	if !o.noSignals {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case <-hup:
					select {
					case reload <- struct{}{}:
					default: // one already pending
					}
				case <-done:
					return
				}
			}
		}()
	}
	return service.Run(ctx, service.Options{
		Config: cfg, File: o.config, Load: load, Reload: reload,
		Log: log, Meta1Log: mlog, Version: Version,
	})
}
