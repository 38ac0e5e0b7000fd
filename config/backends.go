// backends.go: the backend types a [[backend]] table may have, in one
// explicit table. Adding a type is a package with its keys, their
// validation and its constructor (as backends/milter/config.go), plus one
// entry in backendKinds.

package config

import (
	"log/slog"

	callout "github.com/mailmux/mailmux/backends/callout"
	filter "github.com/mailmux/mailmux/backends/filter"
	milter "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/pmult"
)

// Backend types (the type key).
const (
	TypeMilter  = "milter"  // a remote milter (backends/milter); the default
	TypeCallout = "callout" // sender (and recipient) verification (backends/callout)
	TypeFilter  = "filter"  // ordered rules, in process (backends/filter)
)

// DefaultType is the type of a [[backend]] without a type key.
const DefaultType = TypeMilter

// BackendSettings are the keys of one backend type, parsed by its package.
type BackendSettings interface {
	// Validate checks what needs several keys, after every key was read;
	// each error is a *syntax.KeyError (or names no key).
	Validate() []error
	// NewBackend returns the backend: name is the backend's, maxPacket
	// the largest packet accepted from it (max_backend_packet), log its
	// logger (already at its log_level).
	NewBackend(name string, maxPacket int, log *slog.Logger) pmult.Backend
}

// kind is what config needs of a backend type.
type kind struct {
	// name is the value of the type key.
	name string
	// keys are the type's own TOML keys, old spellings included.
	keys []string
	// renamed maps its old key spellings to the keys replacing them.
	renamed map[string]string
	// parse reads its keys: decode fills a struct of the package's from
	// the table; maxMessage is the top-level max_message. Each error is
	// a *syntax.KeyError.
	parse func(decode func(any) error, maxMessage int) (settings BackendSettings, old []string, errs []error)
}

// backendKinds lists the backend types, one entry each: the one place
// that knows them (explicit wiring, no init() registry). A new type is a
// package and one entry here.
func backendKinds() []kind {
	return []kind{{
		name: TypeMilter, keys: milter.Keys(), renamed: milter.Renamed(),
		parse: func(decode func(any) error, maxMessage int) (BackendSettings, []string, []error) {
			s, errs := milter.ParseConfig(decode, maxMessage)
			return s, s.Old, errs
		},
	}, {
		name: TypeCallout, keys: callout.Keys(), renamed: callout.Renamed(),
		parse: func(decode func(any) error, _ int) (BackendSettings, []string, []error) {
			s, errs := callout.ParseConfig(decode)
			return s, nil, errs
		},
	}, {
		name: TypeFilter, keys: filter.Keys(), renamed: filter.Renamed(),
		parse: func(decode func(any) error, _ int) (BackendSettings, []string, []error) {
			s, errs := filter.ParseConfig(decode)
			return s, nil, errs
		},
	}}
}

// backendKind returns the type named t.
func backendKind(t string) (kind, bool) {
	for _, k := range backendKinds() {
		if k.name == t {
			return k, true
		}
	}
	return kind{}, false
}

// typeNames lists the names of the types, for messages.
func typeNames() []string {
	var names []string
	for _, k := range backendKinds() {
		names = append(names, k.name)
	}
	return names
}
