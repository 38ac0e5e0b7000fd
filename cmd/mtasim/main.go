// Command mtasim is an MTA simulator for testing and measuring any milter,
// command-compatible with mailfromd's mtasim where that makes sense:
//
//	mtasim [--stdio|-bs] [-X PORT] [options] < script     SMTP on stdin/stdout
//	mtasim --daemon|-bd [--listen ADDR] [--once] -X PORT  SMTP server
//	mtasim --mail-file FILE [--from A] [--rcpt B]… -X PORT
//	mtasim --bsmtp FILE -X PORT                           batched SMTP (Exim -bS)
//	mtasim --concurrency N (--count M | --duration D) [--json] -X PORT
//
// PORT is inet:PORT@HOST, unix:/path (or the Postfix and mailfromd forms)
// or a sendmail.cf X line ("name, S=inet:…, F=T, T=C:5s;R:10s;E:1m").
// --pmilter PORT (same forms) drives a MeTA1 policy-milter server (pmult's
// MeTA1 front end) instead, as smtps would, over the project's provisional
// pmilter model (sim/meta1; see docs/meta1.md), with --pmilter-timeout and
// --pmilter-flags abort|accept_but_reconnect as smtps's policy_milter.
// Exit codes: 0 ok, 1 an \E expectation failed, 64 usage, 65 malformed
// script, 66 unreadable input, 69 milter unreachable or broken, 70 other.
// See docs/mtasim.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/sim/meta1"
	"github.com/mailmux/mailmux/sim/mta"
)

// Version is the program version.
const Version = "0.1.0"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

type options struct {
	stdio, daemon, once, appendTrace, noInteractive, verbose, version   bool
	jsonOut, full, showEdits                                            bool
	port, timeouts, traceFile, listen, senderSocket, prompt, hostname   string
	mailFile, bsmtp, from, macroSet, pmilter, pmilterFlags              string
	pmilterTimeout                                                      time.Duration
	milterVersion, bodyChunk, concurrency, count, messages, rcptsPerMsg int
	duration                                                            time.Duration
	defines, rcpts                                                      listFlag
}

// normalizeArgs turns mtasim's sendmail-style short options into flag's:
// -bs, -bd, -Xspec, -Dname=value.
func normalizeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case a == "-bs":
			out = append(out, "--stdio")
		case a == "-bd":
			out = append(out, "--daemon")
		case len(a) > 2 && (strings.HasPrefix(a, "-X") || strings.HasPrefix(a, "-D")) && a[2] != '=':
			out = append(out, a[:2], a[2:])
		default:
			out = append(out, a)
		}
	}
	return out
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("mtasim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.stdio, "stdio", false, "SMTP on standard input and output (the default mode)")
	fs.BoolVar(&o.daemon, "daemon", false, "run as an SMTP server (-bd)")
	fs.StringVar(&o.listen, "listen", "inet:0@127.0.0.1", "daemon: address to listen on (port 0: any free port, printed)")
	fs.BoolVar(&o.once, "once", false, "daemon: serve one session, then exit with its status (mailfromd's mtasim -bd)")
	for _, n := range []string{"port", "X"} {
		fs.StringVar(&o.port, n, "", "milter port: inet:PORT@HOST, unix:/path, or a sendmail.cf X line")
	}
	fs.StringVar(&o.pmilter, "pmilter", "", "MeTA1 policy-milter port (pmult's MeTA1 front), same forms as -X; mtasim plays smtps")
	fs.DurationVar(&o.pmilterTimeout, "pmilter-timeout", 0, "--pmilter: smtps's policy_milter timeout per reply (default: R= of the port, else 5m)")
	fs.StringVar(&o.pmilterFlags, "pmilter-flags", "", "--pmilter: smtps's policy_milter flags on a timeout: abort (421) or accept_but_reconnect")
	fs.StringVar(&o.timeouts, "milter-timeout", "", "milter timeouts C=connect,S=send,R=read,E=end of message (e.g. C=3,R=10s)")
	fs.IntVar(&o.milterVersion, "milter-version", 6, "highest milter protocol version offered (2..6)")
	fs.StringVar(&o.macroSet, "macros", "postfix", "default per-stage macro lists: postfix or sendmail")
	for _, n := range []string{"define", "D"} {
		fs.Var(&o.defines, n, "define macro=value (repeatable)")
	}
	fs.StringVar(&o.senderSocket, "sender-socket", "", "client socket family[,hostname,address[,port]] (like \\S)")
	fs.StringVar(&o.traceFile, "trace-file", "", "write the session transcript to this file")
	for _, n := range []string{"append", "a"} {
		fs.BoolVar(&o.appendTrace, n, false, "append to the trace file")
	}
	fs.IntVar(&o.bodyChunk, "body-chunk", 65535, "body chunk size (bytes) for body events")
	fs.BoolVar(&o.noInteractive, "no-interactive", false, "no prompt or line editing even on a terminal")
	fs.StringVar(&o.prompt, "prompt", "(mtasim) ", "interactive prompt")
	fs.StringVar(&o.hostname, "hostname", "", "host name of the simulated MTA (j macro, greeting)")
	fs.StringVar(&o.mailFile, "mail-file", "", "send this stored RFC 5322 message and print the result")
	fs.StringVar(&o.from, "from", "", "--mail-file: envelope sender (default: From: header)")
	fs.Var(&o.rcpts, "rcpt", "--mail-file: envelope recipient (repeatable; default: To:, Cc:)")
	fs.StringVar(&o.bsmtp, "bsmtp", "", "replay batched SMTP from this file (- for stdin), Exim -bS semantics")
	for _, n := range []string{"output-message", "full"} {
		fs.BoolVar(&o.full, n, false, "--mail-file/--bsmtp: print each resulting message in full")
	}
	fs.BoolVar(&o.showEdits, "show-edits", false, "script mode: print the milter's edits after each end-of-data reply (\"edit: ...\" lines)")
	fs.IntVar(&o.concurrency, "concurrency", 0, "load mode: parallel sessions")
	fs.IntVar(&o.count, "count", 0, "load mode: sessions in total")
	fs.DurationVar(&o.duration, "duration", 0, "load mode: run time")
	fs.IntVar(&o.messages, "messages", 1, "load mode: messages per session")
	fs.IntVar(&o.rcptsPerMsg, "rcpts", 1, "load mode: recipients per generated message")
	fs.BoolVar(&o.jsonOut, "json", false, "load mode: print the result as JSON")
	for _, n := range []string{"verbose", "v"} {
		fs.BoolVar(&o.verbose, n, false, "log milter traffic to stderr")
	}
	fs.BoolVar(&o.version, "version", false, "print the version")
	if err := fs.Parse(normalizeArgs(args)); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (-Xauto with a mailfromd command line is not supported)", fs.Arg(0))
	}
	modes := 0
	isLoad := o.concurrency > 0 || o.count > 0 || o.duration > 0
	for _, b := range []bool{o.daemon, o.mailFile != "" && !isLoad, o.bsmtp != "", isLoad} {
		if b {
			modes++
		}
	}
	if modes > 1 {
		return nil, errors.New("choose one of --daemon, --mail-file, --bsmtp and load mode (--concurrency/--count/--duration)")
	}
	return o, nil
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "mtasim: %v\n", err)
		return mtasim.ExitUsage
	}
	if o.version {
		fmt.Fprintf(stdout, "mtasim (mailmux) %s\n", Version)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = dispatch(ctx, o, stdin, stdout, stderr)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "mtasim: %v\n", err)
	}
	if errors.Is(err, errUsage) {
		return mtasim.ExitUsage
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return mtasim.ExitNoInput
	}
	if errors.Is(err, context.Canceled) {
		return 0
	}
	return mtasim.ExitCode(err)
}

var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// config builds the session configuration from the options.
func buildConfig(o *options, log *slog.Logger) (*mtasim.Config, error) {
	cfg := &mtasim.Config{Hostname: o.hostname, Defines: o.defines, BodyChunk: o.bodyChunk, Log: log, RequireHelo: true}
	for _, d := range o.defines {
		if !strings.Contains(d, "=") {
			return nil, usageErr("--define %q: want macro=value", d)
		}
	}
	switch o.macroSet {
	case "postfix":
	case "sendmail":
		cfg.Macros = macros.SendmailDefaults
		for i, l := range cfg.Macros {
			if l == nil {
				cfg.Macros[i] = []string{}
			}
		}
	default:
		return nil, usageErr("--macros %q: want postfix or sendmail", o.macroSet)
	}
	if o.senderSocket != "" {
		s, err := mtasim.ParseSender(strings.Split(o.senderSocket, ","))
		if err != nil {
			return nil, usageErr("--sender-socket: %v", err)
		}
		cfg.Sender = &s
	}
	if o.port != "" && o.pmilter != "" {
		return nil, usageErr("-X and --pmilter exclude each other")
	}
	if o.pmilter == "" && (o.pmilterTimeout != 0 || o.pmilterFlags != "") {
		return nil, usageErr("--pmilter-timeout and --pmilter-flags need --pmilter")
	}
	if o.pmilter != "" {
		p, err := mtasim.ParsePort(o.pmilter)
		if err != nil {
			return nil, usageErr("--pmilter: %v", err)
		}
		if o.timeouts != "" {
			if err := p.SetTimeouts(o.timeouts, ",", "="); err != nil {
				return nil, usageErr("--milter-timeout: %v", err)
			}
		}
		fl, err := meta1sim.ParseFlags(o.pmilterFlags)
		if err != nil {
			return nil, usageErr("--pmilter-flags: %v", err)
		}
		timeout := o.pmilterTimeout
		if timeout <= 0 {
			timeout = p.Read
		}
		name := p.Name
		if name == "" {
			name = p.Address.Raw
		}
		cfg.Backend = meta1sim.NewBackend(meta1sim.BackendConfig{
			Name:           name,
			Client:         meta1sim.Config{Network: p.Address.Network, Address: p.Address.Addr, Timeout: timeout, Flags: fl, Log: log},
			ConnectTimeout: p.Connect, ChunkSize: o.bodyChunk,
		})
		cfg.FilterName = o.pmilter
		cfg.OnFailure = p.OnFailure
	}
	if o.port != "" {
		p, err := mtasim.ParsePort(o.port)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		if o.timeouts != "" {
			if err := p.SetTimeouts(o.timeouts, ",", "="); err != nil {
				return nil, usageErr("--milter-timeout: %v", err)
			}
		}
		if o.milterVersion < 2 || o.milterVersion > 6 {
			return nil, usageErr("--milter-version %d: want 2..6", o.milterVersion)
		}
		cfg.Backend = p.Backend(uint32(o.milterVersion))
		cfg.FilterName = o.port
		cfg.OnFailure = p.OnFailure
	}
	return cfg, nil
}

func dispatch(ctx context.Context, o *options, stdin io.Reader, stdout, stderr io.Writer) error {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := buildConfig(o, log)
	if err != nil {
		return err
	}
	if b, ok := cfg.Backend.(*meta1sim.Backend); ok {
		defer b.Close()
	}
	var trace io.Writer
	if o.traceFile != "" {
		flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if o.appendTrace {
			flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		f, err := os.OpenFile(o.traceFile, flags, 0o644)
		if err != nil {
			return fmt.Errorf("trace file: %w", err)
		}
		defer f.Close()
		trace = f
	}
	switch {
	case o.daemon:
		return daemon(ctx, o, cfg, trace, stdout, log)
	case o.concurrency > 0 || o.count > 0 || o.duration > 0:
		return load(ctx, o, cfg, stdout, stderr)
	case o.mailFile != "":
		data, err := os.ReadFile(o.mailFile)
		if err != nil {
			return err
		}
		m := &mtasim.MailFile{Content: data, From: o.from, Rcpts: o.rcpts}
		st, err := mtasim.RunMailFile(ctx, cfg, m, stdout, mtasim.BatchOptions{Full: o.full, Trace: trace})
		if err == nil && st.Messages == 0 {
			err = errors.New("no message was sent")
		}
		return err
	case o.bsmtp != "":
		in := stdin
		if o.bsmtp != "-" {
			f, err := os.Open(o.bsmtp)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		st, err := mtasim.RunBatch(ctx, cfg, mtasim.NewLineReader(in), stdout, mtasim.BatchOptions{Full: o.full, Trace: trace})
		fmt.Fprintf(stdout, "=== %d messages: %d delivered, %d refused, discarded or held\n", st.Messages, st.Delivered, st.Refused)
		return err
	}
	return stdio(ctx, o, cfg, stdin, stdout, trace)
}

func isTerminal(f any) (int, bool) {
	if f, ok := f.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return int(f.Fd()), true
	}
	return 0, false
}

func stdio(ctx context.Context, o *options, cfg *mtasim.Config, stdin io.Reader, stdout, trace io.Writer) error {
	fd, tty := isTerminal(stdin)
	if _, out := isTerminal(stdout); !tty || !out || o.noInteractive {
		return mtasim.RunScript(ctx, cfg, mtasim.NewLineReader(stdin), stdout, mtasim.ScriptOptions{Trace: trace, ShowEdits: o.showEdits})
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return mtasim.RunScript(ctx, cfg, mtasim.NewLineReader(stdin), stdout, mtasim.ScriptOptions{Trace: trace, Interactive: true, ShowEdits: o.showEdits})
	}
	defer term.Restore(fd, old)
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{stdin, stdout}, o.prompt)
	return mtasim.RunScript(ctx, cfg, termReader{t}, t, mtasim.ScriptOptions{Trace: trace, Interactive: true, ShowEdits: o.showEdits})
}

// termReader reads lines with editing and history (golang.org/x/term).
type termReader struct{ t *term.Terminal }

func (r termReader) ReadLine() (string, error) { return r.t.ReadLine() }

func daemon(ctx context.Context, o *options, cfg *mtasim.Config, trace io.Writer, stdout io.Writer, log *slog.Logger) error {
	a, err := syntax.ParseAddress(o.listen)
	if err != nil {
		return usageErr("--listen: %v", err)
	}
	if a.Network == "unix" {
		os.Remove(a.Addr)
	}
	ln, err := net.Listen(a.Network, a.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		fmt.Fprintln(stdout, strconv.Itoa(ta.Port))
	} else {
		fmt.Fprintln(stdout, ln.Addr().String())
	}
	if f, ok := stdout.(interface{ Sync() error }); ok {
		f.Sync()
	}
	cfg.RequireHelo = true
	srv := &mtasim.Server{Config: cfg, Once: o.once, Log: log}
	if trace != nil {
		srv.Trace = mtasim.NewSyncWriter(trace)
	}
	return srv.Serve(ctx, ln)
}

func load(ctx context.Context, o *options, cfg *mtasim.Config, stdout, stderr io.Writer) error {
	if cfg.Backend == nil {
		return usageErr("load mode needs a milter (-X) or a policy milter (--pmilter)")
	}
	opt := mtasim.LoadOptions{Concurrency: max(o.concurrency, 1), Count: o.count, Duration: o.duration,
		Messages: o.messages, Rcpts: o.rcptsPerMsg}
	if o.mailFile != "" {
		data, err := os.ReadFile(o.mailFile)
		if err != nil {
			return err
		}
		opt.Mail = &mtasim.MailFile{Content: data, From: o.from, Rcpts: o.rcpts}
	}
	if _, tty := isTerminal(stderr); tty && !o.jsonOut {
		opt.Progress = mtasim.ProgressBar(stderr, time.Now())
	}
	res, err := mtasim.RunLoad(ctx, cfg, opt)
	if res != nil {
		if o.jsonOut {
			res.JSON(stdout)
		} else {
			res.Print(stdout)
		}
	}
	if err == nil && res.Errors > 0 && res.Sessions == 0 {
		return &mtasim.FilterError{Name: cfg.FilterName, Err: errors.New(res.FirstError)}
	}
	return err
}
