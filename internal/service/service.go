// service.go: pmult as a running service: listeners, pidfile, the
// front ends (milter, MeTA1, SMTP) on one engine Switch, process-owned
// metrics and callout caches (caches.go), reload and drain. cmd/pmult
// parses flags, sets up logging and signals, and calls Run.

package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailmux/mailmux/adapters/meta1"
	adapter "github.com/mailmux/mailmux/adapters/milter"
	"github.com/mailmux/mailmux/adapters/smtp"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/connserve"
	"github.com/mailmux/mailmux/pmult"
)

// Exit statuses of Run (sysexits.h).
const (
	ExitOK        = 0
	ExitFailed    = 1  // a listener failed while serving
	ExitConfig    = 78 // EX_CONFIG: the configuration cannot be built
	ExitOSErr     = 71 // EX_OSERR: cannot listen
	ExitCantCreat = 73 // EX_CANTCREAT: cannot write the pidfile
)

// Options are what Run needs besides the context.
type Options struct {
	// Config is the loaded configuration, command-line overrides applied
	// (listen addresses, pidfile, metrics_listen).
	Config *config.Config
	// File names the configuration file in logs.
	File string
	// Load reloads the configuration for a reload; nil: reloading is not
	// possible (no file), the request is logged and ignored.
	Load func() (*config.Config, error)
	// Reload receives a value for each reload request (SIGHUP).
	Reload <-chan struct{}
	// Log is the process log; Meta1Log the MeTA1 front's (pmilter_debug),
	// nil: Log.
	Log      *slog.Logger
	Meta1Log *slog.Logger
	// Version is logged and sent to MeTA1 (mult_version).
	Version string
}

// Run serves until ctx is done (SIGTERM: open sessions get
// ShutdownTimeout to finish) or a listener fails, and returns the exit
// status. A reload builds a new engine from Load and stores it in the
// Switch the front ends share: new sessions use it, open ones finish on
// theirs, and counters (owned here, keyed by backend name) go on, as do
// the callout backends' open caches (owned here, one per location).
// Listen addresses, [smtp], progress_interval, [mta_macros], user, group and the
// socket keys apply from the start only (a reload changing them is warned
// about). Started as root with user set, Run switches to that account
// once the sockets, the pidfile and the metrics listener are open (see
// privileges.go).
func Run(ctx context.Context, o Options) int {
	cfg, log := o.Config, o.Log
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "warning", w.Error())
	}
	metrics := pmult.NewMetrics()
	var records *pmult.Recorder // the decision ring, process-owned like metrics
	if cfg.DecisionRing > 0 {
		records = pmult.NewRecorder(cfg.DecisionRing)
	}
	eng, err := cfg.Engine(log)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return ExitConfig
	}
	// One memory budget for the process (memory_budget): the engines of
	// every reload and the SMTP front draw on it.
	budget := pmult.NewBudget(int64(cfg.MemoryBudget))
	eng.Counters, eng.Records, eng.Budget = metrics, records, budget
	caches := &cache.Handles{} // the callout caches, process-owned like metrics
	defer closeCaches(caches, log)
	shareCaches(eng, caches)
	eng.Macros.Version = o.Version // {mult_version}
	if len(eng.Slots) == 0 {
		log.Warn("no backends configured: every message is accepted unfiltered")
	}
	engines := pmult.NewSwitch(eng)
	srv := &adapter.Server{
		Engines:     engines,
		Log:         log,
		MaxData:     cfg.Milter.MaxPacket,
		MaxSessions: cfg.Milter.MaxConnections,

		NegotiateTimeout: cfg.NegotiateTimeout.Duration,
		IdleTimeout:      cfg.IdleTimeout.Duration,
		WriteTimeout:     cfg.WriteTimeout.Duration,
	}
	frontSettings(srv, cfg)
	for _, w := range TimerWarnings(cfg) {
		log.Warn(w)
	}
	mlog := o.Meta1Log
	if mlog == nil {
		mlog = log
	}
	msrv := &meta1.Server{
		Engines:        engines,
		Log:            mlog,
		Macros:         cfg.Meta1.Macros,
		Version:        o.Version,
		MaxRecord:      cfg.Milter.MaxPacket,
		MaxSessions:    cfg.Meta1.MaxSessions,
		SoftSessions:   cfg.Meta1.MaxSessionsSoft,
		MaxConnections: cfg.Meta1.MaxConnections,
	}
	ssrv, err := smtpFront(cfg, engines, budget, log)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return ExitConfig
	}
	id, err := ResolveIdentity(cfg)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("bad configuration", "err", line)
		}
		return ExitConfig
	}
	addrs := append(append(slices.Clone(cfg.Milter.ListenAddrs), cfg.Meta1.ListenAddrs...), cfg.Smtp.ListenAddrs...)
	names := append(append(slices.Clone(cfg.Milter.ListenNames), cfg.Meta1.ListenNames...), cfg.Smtp.ListenNames...)
	var lns, mlns, slns []net.Listener
	closeAll := func() {
		for _, l := range append(append(lns, mlns...), slns...) {
			l.Close()
		}
	}
	var counts listenerCounts
	for i, a := range addrs {
		ln, err := listen(a, id.perm())
		if err != nil {
			log.Error("cannot listen", "err", err)
			closeAll()
			return ExitOSErr
		}
		label, name := a.Raw, "" // the metric's listener label: its name when it has one
		if i < len(names) && names[i] != "" {
			label, name = names[i], names[i]
		}
		ln = counts.wrap(ln, label, name)
		warnWildcard(log, "pmult", a)
		switch {
		case i < len(cfg.Milter.ListenAddrs):
			lns = append(lns, ln)
		case i < len(cfg.Milter.ListenAddrs)+len(cfg.Meta1.ListenAddrs):
			mlns = append(mlns, ln)
		default:
			slns = append(slns, ln)
		}
	}
	if cfg.PIDFile != "" {
		uid, gid := -1, -1
		if id.Switch() {
			uid, gid = id.UID, id.GID
		}
		if err := writePidfile(cfg.PIDFile, uid, gid); err != nil {
			log.Error("cannot write pidfile", "file", cfg.PIDFile, "err", err)
			closeAll()
			return ExitCantCreat
		}
		defer removePidfile(cfg.PIDFile, log)
	}
	if cfg.MetricsListen != "" {
		ms, err := serveMetrics(cfg.MetricsListen, cfg.MetricsPprof, metrics, runningFronts(srv, msrv, ssrv, cfg), log, engines, records, &counts)
		if err != nil {
			log.Error("cannot serve metrics", "err", err)
			closeAll()
			return ExitOSErr
		}
		defer ms.Close()
	}
	if cfg.ControlSocket != "" {
		ctl, err := serveControl(cfg.ControlSocket, records, engines, log)
		if err != nil {
			log.Error("cannot serve the control socket", "err", err)
			closeAll()
			return ExitOSErr
		}
		defer ctl.Close(cfg.ControlSocket)
	}
	// Every socket is bound and the pidfile written: switch to user.
	if err := switchAccount(cfg, id, o.File, log); err != nil {
		log.Error("cannot switch to the configured user", "err", err)
		closeAll()
		return ExitOSErr
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(lns)+len(mlns)+len(slns))
	for i, ln := range lns {
		log.Info("listening", "address", cfg.Milter.ListenAddrs[i].String(), "backends", len(eng.Slots), "version", o.Version)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(connserve.Named(ln, cfg.Milter.ListenNames[i])); err != nil && !errors.Is(err, adapter.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	for i, ln := range mlns {
		log.Info("listening for MeTA1 smtps (provisional pmilter model)", "address", cfg.Meta1.ListenAddrs[i].String(),
			"backends", len(eng.Slots), "version", o.Version)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := msrv.Serve(connserve.Named(ln, cfg.Meta1.ListenNames[i])); err != nil && !errors.Is(err, meta1.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	for i, ln := range slns {
		log.Info("listening for SMTP", "address", cfg.Smtp.ListenAddrs[i].String(), "mode", cfg.Smtp.Mode,
			"next_hop", cfg.Smtp.NextHopAddr.String(), "backends", len(eng.Slots), "version", o.Version)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ssrv.Serve(connserve.Named(ln, cfg.Smtp.ListenNames[i])); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	status := ExitOK
loop:
	for {
		select {
		case <-o.Reload:
			reload(cfg, o.File, o.Load, engines, metrics, records, budget, log, caches)
			if ssrv != nil {
				smtp.FlushNextHop(ssrv.NextHop) // idle next-hop connections: new ones from now on
			}
		case <-ctx.Done():
			open := srv.ActiveSessions() + msrv.ActiveSessions()
			if ssrv != nil {
				open += ssrv.ActiveSessions()
			}
			log.Info("shutting down: letting open sessions finish", "sessions", open,
				"deadline", cfg.ShutdownTimeout.Duration.String())
			break loop
		case err := <-errc:
			log.Error("listener failed", "err", err)
			status = ExitFailed
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
	if ssrv != nil {
		sdwg.Add(1)
		go func() {
			defer sdwg.Done()
			if err := ssrv.Shutdown(sctx); err != nil {
				log.Warn("shutdown", "err", err)
			}
		}()
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	sdwg.Wait()
	if ssrv != nil {
		smtp.CloseNextHop(ssrv.NextHop) // the cached next-hop connections (QUIT)
	}
	wg.Wait()
	engines.Retire()
	for _, a := range addrs {
		if a.Network == "unix" {
			os.Remove(a.Addr)
		}
	}
	log.Info("stopped")
	return status
}

// reload builds an engine from a freshly loaded configuration and stores
// it; on error the running one stays. Listen addresses stay.
func reload(cfg *config.Config, file string, load func() (*config.Config, error), engines *pmult.Switch, metrics *pmult.Metrics,
	records *pmult.Recorder, budget *pmult.Budget, log *slog.Logger, caches *cache.Handles) {
	if load == nil {
		log.Info("SIGHUP: no configuration file to reload")
		return
	}
	ncfg, err := load()
	if err == nil {
		var ne *pmult.Engine
		if ne, err = ncfg.Engine(log); err == nil {
			ne.Counters, ne.Records, ne.Budget = metrics, records, budget
			// The process's one budget, resized to the new memory_budget.
			budget.SetLimit(int64(ncfg.MemoryBudget))
			shareCaches(ne, caches) // claimed before the old engine's backends release theirs
			ne.Macros.Version = engines.Engine().Macros.Version
			engines.Store(ne) // the old engine's open sessions finish on it, then close their connections
			for _, w := range ncfg.Warnings {
				log.Warn("configuration", "warning", w.Error())
			}
			log.Info("configuration reloaded", "file", file, "backends", len(ne.Slots))
			if !slices.EqualFunc(ncfg.Milter.ListenAddrs, cfg.Milter.ListenAddrs, func(a, b config.Address) bool { return a == b }) {
				log.Warn("listen addresses changed: restart pmult to apply them")
			}
			if accountChanged(cfg, ncfg) {
				log.Warn("user, group or socket_owner/socket_group/socket_mode changed: restart pmult to apply them")
			}
			if ncfg.DecisionRing != cfg.DecisionRing || ncfg.ControlSocket != cfg.ControlSocket {
				log.Warn("decision_ring or control_socket changed: restart pmult to apply them")
			}
			if smtpChanged(cfg, ncfg) {
				log.Warn("[smtp] changed: restart pmult to apply it (new sessions use the reloaded backends)")
			}
			if frontChanged(cfg, ncfg) {
				log.Warn("progress_interval or [mta_macros] changed: restart pmult to apply them")
			}
			return
		}
	}
	for _, e := range config.Errors(err) {
		log.Error("reload failed, keeping the running configuration", "err", e)
	}
}

// serveMetrics serves the process's counters on addr at /metrics: they
// survive reloads (SIGHUP); and the decision records at /why?id=. A bare port means loopback; a wildcard address
// is warned about. With pprof (metrics_pprof) it also serves Go's runtime
// profiles at /debug/pprof/ (see pprofHandlers).
func serveMetrics(addr string, pprof bool, metrics *pmult.Metrics, fronts []frontConns, log *slog.Logger,
	engines *pmult.Switch, records *pmult.Recorder, counts *listenerCounts) (*http.Server, error) {
	addr = metricsAddr(addr)
	if isWildcard(addr) {
		log.Warn("metrics listen on every address: anyone who can reach it reads pmult's counters", "address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := metricsMux(pprof, metrics, fronts, engines, records, counts)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	log.Info("serving metrics", "address", "http://"+ln.Addr().String()+"/metrics")
	if pprof {
		log.Info("serving runtime profiles", "address", "http://"+ln.Addr().String()+"/debug/pprof/")
	}
	return hs, nil
}

// metricsMux is the metrics listener's handler: /metrics, /why and, with
// pprof, /debug/pprof/.
func metricsMux(pprof bool, metrics *pmult.Metrics, fronts []frontConns,
	engines *pmult.Switch, records *pmult.Recorder, counts *listenerCounts) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metrics.WriteText(w)
		pmult.WriteBackendState(w, engines.Engine())
		counts.writeText(w, metrics)
		writeFrontConns(w, fronts)
		writeProcessMetrics(w)
	})
	mux.HandleFunc("/why", whyHandler(records))
	if pprof {
		pprofHandlers(mux)
	}
	return mux
}

// frontConns is one front end's count of open MTA (or SMTP client)
// connections, for the metrics.
type frontConns struct {
	front  string // "milter", "meta1", "smtp"
	active func() int
}

// runningFronts are the fronts whose connections the metrics count: the
// milter front always (pmult_mta_connections counted it alone before),
// MeTA1 and SMTP when they listen.
func runningFronts(srv *adapter.Server, msrv *meta1.Server, ssrv *smtp.Server, cfg *config.Config) []frontConns {
	fronts := []frontConns{{"milter", srv.ActiveSessions}}
	if len(cfg.Meta1.ListenAddrs) > 0 {
		fronts = append(fronts, frontConns{"meta1", msrv.ActiveConnections})
	}
	if ssrv != nil {
		fronts = append(fronts, frontConns{"smtp", ssrv.ActiveSessions})
	}
	return fronts
}

// writeFrontConns writes pmult_mta_connections, the open connections of
// every front together (the series of old, which counted the milter
// front alone), and pmult_front_connections{front}, each front's.
func writeFrontConns(w io.Writer, fronts []frontConns) {
	n := make([]int, len(fronts))
	total := 0
	for i, f := range fronts {
		n[i] = f.active()
		total += n[i]
	}
	fmt.Fprintf(w, "# TYPE pmult_mta_connections gauge\npmult_mta_connections %d\n", total)
	fmt.Fprint(w, "# TYPE pmult_front_connections gauge\n")
	for i, f := range fronts {
		fmt.Fprintf(w, "pmult_front_connections{front=%q} %d\n", f.front, n[i])
	}
}
