// mta.go: the keys about pmult's side toward the MTA: the end-of-message
// keep-alive and the [mta_macros] table.
//
//	progress_interval = "5s"   # SMFIR_PROGRESS to the MTA during end of message; "0": off
//
//	[mta_macros]               # what the MTA sends without a list (main.cf milter_*_macros)
//	connect = ["j", "{daemon_name}", "{daemon_addr}", "v", "_", "{client_ptr}"]
//	helo = []                  # the stages: connect helo mail rcpt data eoh eom
//
// A stage left out of [mta_macros] keeps the MTA defaults (the union of
// Postfix's and Sendmail's default lists). When a backend asks for a macro
// list at a stage, pmult asks the MTA for that list plus this baseline, so
// the MTA's own configuration for the stage no longer applies.

package config

import (
	"fmt"
	"time"

	"github.com/mailmux/mailmux/macros"
)

// DefaultProgressInterval is progress_interval's default: well under the
// MTAs' timers that a packet restarts (Postfix's milter_content_timeout,
// 300 s by default, often lowered to tens of seconds; Sendmail's per-read
// T=R:, 10 s by default). Sendmail's overall T=E: is not extended by it.
const DefaultProgressInterval = 5 * time.Second

// UsualMTAContentTimeout is the MTAs' default end-of-message timeout
// (Postfix milter_content_timeout, Sendmail T=E:): without the keep-alive,
// a backend's eom_timeout must stay below it for its failure action to act
// before the MTA gives up.
const UsualMTAContentTimeout = 300 * time.Second

// MTAMacros is the [mta_macros] table: per stage, the macro names the MTA
// sends when asked for no list; nil: the MTA defaults. Names are kept in
// wire form ("j", "{client_ptr}").
type MTAMacros struct {
	Connect []string `toml:"connect"`
	Helo    []string `toml:"helo"`
	Mail    []string `toml:"mail"`
	Rcpt    []string `toml:"rcpt"`
	Data    []string `toml:"data"`
	EOH     []string `toml:"eoh"`
	EOM     []string `toml:"eom"`
}

type rawMTAMacros struct {
	Connect any `toml:"connect"`
	Helo    any `toml:"helo"`
	Mail    any `toml:"mail"`
	Rcpt    any `toml:"rcpt"`
	Data    any `toml:"data"`
	EOH     any `toml:"eoh"`
	EOM     any `toml:"eom"`
}

// Stages returns the lists in milter stage (SMFIM_*) order; a nil entry
// means the MTA defaults.
func (m MTAMacros) Stages() [macros.NumStages][]string {
	var s [macros.NumStages][]string
	s[macros.Connect], s[macros.Helo], s[macros.EnvFrom], s[macros.EnvRcpt] = m.Connect, m.Helo, m.Mail, m.Rcpt
	s[macros.Data], s[macros.EOH], s[macros.EOM] = m.Data, m.EOH, m.EOM
	return s
}

// Baseline returns what the MTA sends at stage st without a list: the
// configured list, else the union of Postfix's and Sendmail's defaults.
func (m MTAMacros) Baseline(st macros.Stage) []string {
	if l := m.Stages()[st]; l != nil {
		return l
	}
	return macros.Union(macros.PostfixDefaults[st], macros.SendmailDefaults[st]...)
}

// mtaSide validates progress_interval and [mta_macros].
func (v *validator) mtaSide(cfg *Config, progress any, raw *rawMTAMacros) {
	top := scope{v: v, backend: -1}
	cfg.ProgressInterval = Duration{Duration: DefaultProgressInterval}
	if progress != nil {
		var d Duration
		if err := d.UnmarshalTOML(progress); err != nil {
			top.fail("progress_interval", err)
		} else {
			cfg.ProgressInterval = d // 0: off
		}
	}
	if raw == nil {
		return
	}
	list := func(key string, val any) []string {
		field := "mta_macros." + key
		switch x := val.(type) {
		case nil:
			return nil
		case string:
			return macros.Union(nil, macros.Split(x)...)
		case []any:
			names := make([]string, 0, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					top.fail(fmt.Sprintf("%s[%d]", field, i), wantErr("a string", e))
					continue
				}
				names = append(names, macros.Split(s)...)
			}
			return macros.Union(nil, names...) // not nil: an empty list is a list
		default:
			top.fail(field, wantErr("an array of macro names", val))
			return nil
		}
	}
	cfg.MTAMacros = MTAMacros{
		Connect: list("connect", raw.Connect), Helo: list("helo", raw.Helo), Mail: list("mail", raw.Mail),
		Rcpt: list("rcpt", raw.Rcpt), Data: list("data", raw.Data), EOH: list("eoh", raw.EOH), EOM: list("eom", raw.EOM),
	}
}
