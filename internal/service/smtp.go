// smtp.go: the SMTP front (adapters/smtp) as the service runs it: built
// from [smtp], on the same engine Switch as the milter and MeTA1 fronts.

package service

import (
	"fmt"
	"log/slog"
	"reflect"

	"github.com/mailmux/mailmux/adapters/smtp"
	"github.com/mailmux/mailmux/adapters/smtp/relay"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/pmult"
)

// smtpFront builds the SMTP front server; nil when [smtp] has no
// listener. Its messages count against budget, the process's one
// memory_budget that the engines share.
func smtpFront(cfg *config.Config, engines *pmult.Switch, budget *pmult.Budget, log *slog.Logger) (*smtp.Server, error) {
	sc := &cfg.Smtp
	if len(sc.ListenAddrs) == 0 {
		return nil, nil
	}
	r, err := relay.New(relayConfig(sc), log.With("front", "smtp"))
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	srv := &smtp.Server{
		Engines:          engines,
		Log:              log,
		NextHop:          smtp.RelayHop(r),
		Trusted:          sc.TrustedNets,
		Proxy:            map[string]bool{},
		Hostname:         sc.Hostname,
		MaxLine:          sc.MaxLine,
		MaxMessage:       int64(sc.MaxMessage),
		MaxHeader:        sc.MaxHeader,
		MaxRecipients:    sc.MaxRecipients,
		MaxErrors:        sc.MaxErrors,
		CommandTimeout:   sc.Timeout.Duration,
		DataTimeout:      sc.DataTimeout.Duration,
		DataDeadline:     sc.DataDeadline.Duration,
		WriteTimeout:     sc.Timeout.Duration,
		AllowPipelining:  !sc.ForbidUnauthPipelining,
		MaxConnections:   sc.MaxConnections,
		QuarantineHeader: sc.QuarantineHeader,
		LoopMarker:       sc.LoopMarker,
		SpoolMemory:      cfg.SpoolMemory,
		Budget:           budget,
		SpoolDir:         cfg.SpoolDir,
	}
	if sc.MaxMessage == 0 {
		srv.MaxMessage = -1 // max_message = 0: no limit
	}
	if cfg.SpoolMemory == 0 {
		srv.SpoolMemory = -1
	}
	if sc.Mode == "after" {
		srv.Mode = smtp.AfterQueue
	}
	if sc.BareLF == "reject" {
		srv.BareLF = smtp.BareLFReject
	}
	switch sc.Quarantine {
	case "tempfail":
		srv.Quarantine = smtp.QuarantineTempfail
	case "reject":
		srv.Quarantine = smtp.QuarantineReject
	}
	for _, n := range sc.ProxyProtocol {
		srv.Proxy[n] = true
	}
	return srv, nil
}

// smtpChanged reports whether [smtp] changed (applied at restart only).
func smtpChanged(old, new *config.Config) bool {
	return !reflect.DeepEqual(old.Smtp, new.Smtp)
}

// relayConfig is the next hop's relay.Config from [smtp].
func relayConfig(sc *config.Smtp) relay.Config {
	return relay.Config{
		Address:        sc.NextHopAddr.String(),
		LMTP:           sc.LMTP,
		HeloName:       sc.HeloName,
		ConnectTimeout: sc.NextHopConnectTimeout.Duration,
		CommandTimeout: sc.NextHopCommandTimeout.Duration,
		DataTimeout:    sc.NextHopDataTimeout.Duration,
		XForward:       sc.XForward,
		Cache:          sc.NextHopCache,
		CacheSize:      sc.NextHopCacheSize,
		ReuseLimit:     sc.NextHopReuseLimit,
		ReuseTime:      sc.NextHopReuseTime.Duration,
		IdleTimeout:    sc.NextHopIdle.Duration,
	}
}
