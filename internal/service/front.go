// front.go: the MTA-side settings of the milter front end
// (progress_interval, [mta_macros]) and the check of the MTA's timer.

package service

import (
	"fmt"
	"slices"

	adapter "github.com/mailmux/mailmux/adapters/milter"
	milter "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/config"
)

// frontSettings copies the MTA-side settings into the milter server.
func frontSettings(srv *adapter.Server, cfg *config.Config) {
	srv.ProgressInterval = cfg.ProgressInterval.Duration
	if srv.ProgressInterval == 0 {
		srv.ProgressInterval = -1 // progress_interval = 0: no keep-alive
	}
	srv.MTAMacros = cfg.MTAMacros.Stages()
	switch cfg.Milter.DeferContent {
	case config.DeferContentOn:
		srv.DeferContent = adapter.DeferOn
	case config.DeferContentOff:
		srv.DeferContent = adapter.DeferOff
	default:
		srv.DeferContent = adapter.DeferAuto
	}
}

// TimerWarnings says which backends' failure actions cannot act in time:
// without the keep-alive the MTA times the whole end of message with one
// timer (Postfix milter_content_timeout, Sendmail T=E:, both 300 s by
// default), which fires before an eom_timeout that is not below it.
func TimerWarnings(cfg *config.Config) []string {
	if cfg.ProgressInterval.Duration > 0 {
		return nil
	}
	var out []string
	for _, b := range cfg.Backends {
		ms, ok := b.Settings.(*milter.Settings)
		if ok && ms.EOMTimeout.Duration >= config.UsualMTAContentTimeout {
			out = append(out, fmt.Sprintf("backend %q: eom_timeout %s is not below the usual MTA content timeout (%s) "+
				"and progress_interval = 0: the MTA may give up (tempfail) before on_failure = %s applies; "+
				"keep progress_interval on or lower eom_timeout",
				b.Name, ms.EOMTimeout.Duration, config.UsualMTAContentTimeout, b.OnFailure))
		}
	}
	return out
}

// frontChanged reports whether a reloaded configuration changes the
// MTA-side settings, which apply from the start only (like listen).
func frontChanged(old, new *config.Config) bool {
	if old.ProgressInterval != new.ProgressInterval {
		return true
	}
	a, b := old.MTAMacros.Stages(), new.MTAMacros.Stages()
	for st := range a {
		if (a[st] == nil) != (b[st] == nil) || !slices.Equal(a[st], b[st]) {
			return true
		}
	}
	return false
}
