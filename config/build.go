// build.go: turns a loaded configuration into the engine and its milter
// backends (the wiring; the rest of the package is pure data).

package config

import (
	"fmt"
	"log/slog"

	backend "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/pmult"
)

// Engine builds the pmult engine for this configuration.
func (c *Config) Engine(log *slog.Logger) (*pmult.Engine, error) {
	e := &pmult.Engine{Parallel: c.Content == ContentParallel, MaxMessage: c.MaxMessage, Log: log}
	for _, b := range c.Backends {
		act, err := pmult.ParseFailAction(b.OnFailure)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", b.Name, err)
		}
		be := backend.New(backend.Config{
			Name:           b.Name,
			Network:        b.Addr.Network,
			Address:        b.Addr.Addr,
			ConnectTimeout: b.ConnectTimeout.Duration,
			ReadTimeout:    b.ReadTimeout.Duration,
			WriteTimeout:   b.WriteTimeout.Duration,
			EOMTimeout:     b.EOMTimeout.Duration,
			MaxVersion:     uint32(b.Protocol),
			MaxPacket:      c.MaxBackendPacket,
			Reuse:          b.Reuse,
			Log:            log,
		})
		e.Slots = append(e.Slots, pmult.Slot{Backend: be, Policy: pmult.Policy{
			OnFailure: act,
			Evaluate:  b.Mode == ModeEvaluate,
		}})
	}
	return e, nil
}
