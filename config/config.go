// config.go: the TOML schema of pmult's configuration, its defaults, and the
// loader that validates a file and reports every problem in it at once.

package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-multierror"
)

// Defaults, applied to keys left out of the file.
const (
	DefaultListen           = "inet:127.0.0.1:7357"
	DefaultMaxPacket        = 1 << 20   // max_packet
	DefaultMaxBackendPacket = 64 << 20  // max_backend_packet
	DefaultMaxMessage       = 0         // max_message: no limit of pmult's
	DefaultSpoolMemory      = 1 << 20   // spool_memory
	DefaultMemoryBudget     = 256 << 20 // memory_budget
	DefaultShutdownTimeout  = 30 * time.Second
	// The MTA side's timeouts (negotiate_timeout, idle_timeout,
	// write_timeout).
	DefaultNegotiateTimeout = 30 * time.Second
	DefaultIdleTimeout      = time.Hour
	DefaultMTAWriteTimeout  = 30 * time.Second
	DefaultContent          = ContentSerial
	DefaultOpenTimeout      = 10 * time.Second // open_timeout
	DefaultReadOnly         = ReadOnlyInOrder
	DefaultMerge            = MergeStrongest
	DefaultLogLevel         = "info"
	DefaultLogTag           = "pmult"

	DefaultConnectTimeout = 300 * time.Second // pmult's default
	DefaultReadTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultEOMTimeout     = 300 * time.Second
	DefaultOnFailure      = OnFailureTempfail
	DefaultMode           = ModeEnforce
	DefaultProtocol       = 6

	// MinPacket is the smallest max_packet, max_backend_packet, max_body
	// and max_message (other than 0) allowed: one milter body chunk.
	MinPacket = 65536
	// MinProtocol is the lowest milter protocol version a backend may be
	// limited to.
	MinProtocol = 2
)

// Values of the enumerated keys, as they are after Parse (lower case).
const (
	ContentSerial   = "serial"
	ContentParallel = "parallel"

	ReadOnlyInOrder = "in_order"
	ReadOnlyLive    = "live"

	MergeStrongest = "strongest"
	MergeChain     = "chain"

	OnFailureAccept   = "accept"
	OnFailureTempfail = "tempfail"
	OnFailureReject   = "reject"
	OnFailureDiscard  = "discard"

	ModeEnforce  = "enforce"
	ModeEvaluate = "evaluate"
)

// errPrefix starts the errors of this package that stand alone; FieldError
// drops it from the errors it wraps.
const errPrefix = "config: "

// Config is pmult's configuration. Parse and Load fill every field: keys
// left out of the file get their defaults, enumerations are lower-cased,
// addresses are parsed into ListenAddrs and Backend.Addr.
type Config struct {
	// Listen holds the addresses the MTA connects to, in any dialect
	// ParseAddress accepts. Default [DefaultListen]. TOML: a string or an
	// array of strings.
	Listen []string `toml:"listen"`
	// PIDFile is where to write the process id; empty: nowhere.
	PIDFile string `toml:"pidfile"`
	// MaxSessions limits concurrent MTA connections; 0 means no limit.
	MaxSessions int `toml:"max_sessions"`
	// MaxPacket is the largest milter packet data, in bytes, accepted from
	// the MTA. Default 1 MiB, at least MinPacket.
	MaxPacket int `toml:"max_packet"`
	// MaxBackendPacket is the largest packet data, in bytes, accepted from a
	// backend. Default 64 MiB, at least MinPacket.
	MaxBackendPacket int `toml:"max_backend_packet"`
	// MaxMessage is the largest message (header and body bytes) pmult lets
	// through: a bigger one is refused at end of data with 552 5.3.4.
	// Default 0: no limit of pmult's (the MTA's applies); else at least
	// MinPacket. pmult counts what it receives: with no backend asking for
	// the body and no replay, only the headers.
	MaxMessage int `toml:"max_message"`
	// SpoolMemory is how many bytes of a message kept to replay the
	// content phase to later backends stay in memory; the rest goes to a
	// file in SpoolDir. Default 1 MiB; 0: every byte to the file.
	SpoolMemory int `toml:"spool_memory"`
	// MemoryBudget bounds the bytes of all messages kept in memory at once
	// (all sessions); beyond it they go to files too. Default 256 MiB; 0:
	// nothing in memory.
	MemoryBudget int `toml:"memory_budget"`
	// SpoolDir is the directory of spool files (created 0600, unlinked at
	// once); an absolute path. Default "": os.TempDir() ($TMPDIR or /tmp).
	SpoolDir string `toml:"spool_dir"`
	// ShutdownTimeout is how long open sessions may take to finish on
	// SIGTERM. Default 30s.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// NegotiateTimeout is how long a new MTA connection may take to send
	// its OPTNEG. Default 30s.
	NegotiateTimeout Duration `toml:"negotiate_timeout"`
	// IdleTimeout is how long the MTA may be silent between two commands
	// of a session. Default 1h.
	IdleTimeout Duration `toml:"idle_timeout"`
	// WriteTimeout bounds each write to the MTA. Default 30s. (A
	// backend's write_timeout is its own key in [[backend]].)
	WriteTimeout Duration `toml:"write_timeout"`
	// Content is "serial" (default: later backends see earlier edits) or
	// "parallel" (every backend sees the original, edits merged in order).
	Content string `toml:"content"`
	// OpenTimeout is the budget of a session's open: every backend must
	// be connected and negotiated within it, or fails for that session
	// (its on_failure applies). Default 10s; keep it below the MTA's
	// command timeout (Postfix milter_command_timeout, 30s).
	OpenTimeout Duration `toml:"open_timeout"`
	// ReadOnly is "in_order" (default: a read-only backend after an editor
	// sees the earlier edits, by replay at end of message, as in the MTA's
	// chain) or "live" (read-only backends see the original message as it
	// arrives: faster, and they miss earlier edits).
	ReadOnly string `toml:"read_only"`
	// Merge is "strongest" (default: the strongest verdict wins at every
	// stage) or "chain" (the first objection in configured order wins,
	// the MTA's chain semantics).
	Merge string `toml:"merge"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `toml:"log_level"`
	// LogTag is the syslog identifier. Default "pmult".
	LogTag string `toml:"log_tag"`
	// MetricsListen is a host:port where GET /metrics serves the counters
	// in the Prometheus text format; a bare port ("9100" or ":9100")
	// means 127.0.0.1; empty (default): no metrics server.
	MetricsListen string `toml:"metrics_listen"`
	// Backends are the [[backend]] tables, in file order. Parse accepts a
	// file with none; the caller decides whether that is useful.
	Backends []Backend `toml:"backend"`
	// Meta1 is the [meta1] table: the MeTA1 (pmilter) front end; see
	// meta1.go. Absent: no MeTA1 front (the zero value).
	Meta1 Meta1 `toml:"meta1"`
	// ProgressInterval is how often SMFIR_PROGRESS goes to the MTA while
	// the end of message is pending (the MTA's timer restarts on it);
	// 0: never. Default 5s. See mta.go.
	ProgressInterval Duration `toml:"progress_interval"`
	// MTAMacros is the [mta_macros] table: per stage, the macros the MTA
	// sends without a list. See mta.go.
	MTAMacros MTAMacros `toml:"mta_macros"`

	// ListenAddrs are the parsed Listen addresses.
	ListenAddrs []Address `toml:"-"`
}

// Backend is one [[backend]] table: a remote milter.
type Backend struct {
	// Name identifies the backend in logs; required and unique.
	Name string `toml:"name"`
	// URL is the milter's socket address in any dialect ParseAddress
	// accepts; required.
	URL string `toml:"url"`
	// ConnectTimeout bounds connecting and negotiating together; the
	// engine's open budget ends them sooner when it comes first. Default
	// 300s.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// ReadTimeout bounds waiting for a reply. Default 10s.
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout bounds sending a packet. Default 10s.
	WriteTimeout Duration `toml:"write_timeout"`
	// EOMTimeout bounds waiting for the end-of-message replies. Default 300s.
	EOMTimeout Duration `toml:"eom_timeout"`
	// OnFailure is what a failing backend means for the message: accept
	// (skip this backend), tempfail (default), reject or discard.
	OnFailure string `toml:"on_failure"`
	// Mode is enforce (default) or evaluate (shadow: verdicts and edits
	// are logged, never applied).
	Mode string `toml:"mode"`
	// Protocol is the highest milter protocol version offered, 2 to 6.
	// Default 6.
	Protocol int `toml:"protocol"`
	// MaxBody limits a replacement body (SMFIR_REPLBODY) from this backend,
	// in bytes: over it the backend fails with its on_failure action.
	// Default max_message, at least MinPacket.
	MaxBody int `toml:"max_body"`
	// Reuse keeps a backend connection after its SMTP session ended (it
	// is sent QUIT_NC, protocol 6 only) for the next session, saving a
	// connect and a negotiation each time. libmilter-based milters support
	// it; MTAs never use it, so enable it per backend once tested.
	Reuse bool `toml:"reuse"`
	// LogLevel, when set, raises the level of this backend's log lines
	// (debug, info, warn, error; pmult's client log-level). It cannot go
	// below the global log_level.
	LogLevel string `toml:"log_level"`

	// Addr is the parsed URL.
	Addr Address `toml:"-"`
}

// rawConfig and rawBackend are what the TOML is decoded into: every value
// as it came, so that a value of the wrong type is one more error to report
// rather than the end of decoding. Their keys must be those of Config and
// Backend (a test checks it).
type rawConfig struct {
	Listen           any          `toml:"listen"`
	PIDFile          any          `toml:"pidfile"`
	MaxSessions      any          `toml:"max_sessions"`
	MaxPacket        any          `toml:"max_packet"`
	MaxBackendPacket any          `toml:"max_backend_packet"`
	MaxMessage       any          `toml:"max_message"`
	SpoolMemory      any          `toml:"spool_memory"`
	MemoryBudget     any          `toml:"memory_budget"`
	SpoolDir         any          `toml:"spool_dir"`
	ShutdownTimeout  any          `toml:"shutdown_timeout"`
	NegotiateTimeout any          `toml:"negotiate_timeout"`
	IdleTimeout      any          `toml:"idle_timeout"`
	WriteTimeout     any          `toml:"write_timeout"`
	Content          any          `toml:"content"`
	OpenTimeout      any          `toml:"open_timeout"`
	ReadOnly         any          `toml:"read_only"`
	Merge            any          `toml:"merge"`
	LogLevel         any          `toml:"log_level"`
	LogTag           any          `toml:"log_tag"`
	MetricsListen    any          `toml:"metrics_listen"`
	Backends         []rawBackend `toml:"backend"`
	Meta1            *rawMeta1    `toml:"meta1"`

	// The MTA side (mta.go).
	ProgressInterval any           `toml:"progress_interval"`
	MTAMacros        *rawMTAMacros `toml:"mta_macros"`
}

type rawBackend struct {
	Name           any `toml:"name"`
	URL            any `toml:"url"`
	ConnectTimeout any `toml:"connect_timeout"`
	ReadTimeout    any `toml:"read_timeout"`
	WriteTimeout   any `toml:"write_timeout"`
	EOMTimeout     any `toml:"eom_timeout"`
	OnFailure      any `toml:"on_failure"`
	Mode           any `toml:"mode"`
	Protocol       any `toml:"protocol"`
	MaxBody        any `toml:"max_body"`
	Reuse          any `toml:"reuse"`
	LogLevel       any `toml:"log_level"`
}

// FieldError is one problem found in a configuration.
type FieldError struct {
	Source  string // the file name given to Parse or Load
	Line    int    // line number when known (TOML syntax errors), else 0
	Backend int    // index of the [[backend]] table, counting from 0; -1 outside one
	Name    string // that backend's name, when it has one
	Field   string // the key, e.g. "on_failure" or "listen[1]"; may be empty
	Err     error
}

// Error reads like
//
//	config.toml: backend[1] "dkim": on_failure: unknown action "acept" (want accept, tempfail, reject or discard)
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Backend >= 0 {
		fmt.Fprintf(&b, "backend[%d]", e.Backend)
		if e.Name != "" {
			fmt.Fprintf(&b, " %q", e.Name)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Err == nil {
		b.WriteString("invalid")
	} else {
		b.WriteString(strings.TrimPrefix(e.Err.Error(), errPrefix))
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// Errors returns the errors that err, as returned by Parse or Load, is made
// of: each a *FieldError, or the error reading the file. It returns nil for
// a nil err and err alone for an error of another kind.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	var me *multierror.Error
	if errors.As(err, &me) {
		return me.WrappedErrors()
	}
	return []error{err}
}

// Load reads and parses the TOML file at path; see Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, multierror.Append(nil, fmt.Errorf("%s%w", errPrefix, err)).ErrorOrNil()
	}
	return Parse(data, path)
}

// Parse parses and validates a TOML configuration; source names it in
// errors. On error the configuration is nil and the error is a
// *multierror.Error holding one *FieldError per problem, all of them:
// syntax errors (with their line; nothing else is checked then), unknown
// keys, values of the wrong type, bad addresses and durations, out-of-range
// numbers, unknown enumeration values, missing or duplicate backend names.
// Use Errors to list them.
//
// Keys left out get their defaults. A key given explicitly must be valid:
// timeouts must be positive, sizes at least MinPacket, protocol 2 to 6;
// only max_sessions may be 0 (no limit).
func Parse(data []byte, source string) (*Config, error) {
	if source == "" {
		source = "config"
	}
	v := &validator{source: source}
	var raw rawConfig
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		v.errs = append(v.errs, decodeError(source, err))
		return nil, v.result()
	}
	v.unknownKeys(data, md)
	cfg := v.build(&raw)
	if err := v.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// tomlError is a toml.ParseError with a shorter message: FieldError says
// where it is.
type tomlError struct {
	msg string
	pe  toml.ParseError
}

func (e *tomlError) Error() string { return e.msg }
func (e *tomlError) Unwrap() error { return e.pe }

// decodeError turns an error of toml.Decode into a FieldError: a syntax
// error with its line, or (the only other error decoding into rawConfig can
// meet) backend not being an array of tables.
func decodeError(source string, err error) *FieldError {
	fe := &FieldError{Source: source, Backend: -1, Err: err}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		fe.Line = pe.Position.Line
		msg := pe.Message
		if pe.LastKey != "" {
			msg += fmt.Sprintf(" (last key %q)", pe.LastKey)
		}
		fe.Err = &tomlError{msg: msg, pe: pe}
		return fe
	}
	// "toml: line 1 (last key "backend"): incompatible types: ..."
	msg := err.Error()
	if strings.Contains(msg, `(last key "backend")`) {
		fe.Field = "backend"
		fe.Err = fmt.Errorf("must be an array of tables: write [[backend]], with double brackets, above each backend (%w)", err)
		if _, after, ok := strings.Cut(msg, "line "); ok {
			fmt.Sscanf(after, "%d", &fe.Line)
		}
	}
	return fe
}

// Default returns the built-in configuration: every default applied,
// listening on DefaultListen, no backends.
func Default() *Config {
	cfg, err := Parse(nil, "built-in default")
	if err != nil {
		panic(err) // the defaults above do not validate: a bug in this package
	}
	return cfg
}

// validator collects the errors found while building a Config.
type validator struct {
	source string
	errs   []error
}

func (v *validator) result() error {
	if len(v.errs) == 0 {
		return nil
	}
	me := &multierror.Error{Errors: v.errs, ErrorFormat: formatErrors}
	return me.ErrorOrNil()
}

// formatErrors puts each error on a line of its own.
func formatErrors(errs []error) string {
	if len(errs) == 1 {
		return errs[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d configuration errors:", len(errs))
	for _, e := range errs {
		b.WriteString("\n\t")
		b.WriteString(e.Error())
	}
	return b.String()
}

// scope says where the values being checked are: the top level
// (backend -1) or one backend.
type scope struct {
	v       *validator
	backend int
	name    string
}

func (s scope) fail(field string, err error) {
	s.v.errs = append(s.v.errs, &FieldError{
		Source: s.v.source, Backend: s.backend, Name: s.name, Field: field, Err: err,
	})
}

// str returns a string value, "" when absent.
func (s scope) str(field string, val any) string {
	switch x := val.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		s.fail(field, wantErr("a string", val))
		return ""
	}
}

// enum returns a string value that must be one of allowed (any case), def
// when absent or empty. what names the kind of value in the message.
func (s scope) enum(field string, val any, def, what string, allowed ...string) string {
	orig := s.str(field, val)
	str := strings.ToLower(strings.TrimSpace(orig))
	if str == "" {
		return def
	}
	for _, a := range allowed {
		if str == a {
			return str
		}
	}
	s.fail(field, fmt.Errorf("unknown %s %q (want %s)", what, orig, orList(allowed)))
	return def
}

// integer returns an integer value in [lo, hi], def when absent or wrong.
func (s scope) integer(field string, val any, def, lo, hi int) int {
	if val == nil {
		return def
	}
	n, ok := val.(int64)
	if !ok {
		s.fail(field, wantErr("an integer", val))
		return def
	}
	switch {
	case n < int64(lo) && hi == math.MaxInt:
		s.fail(field, fmt.Errorf("%d is too small (minimum %d)", n, lo))
	case n < int64(lo) || n > int64(hi):
		s.fail(field, fmt.Errorf("%d is out of range (want %d to %d)", n, lo, hi))
	default:
		return int(n)
	}
	return def
}

// boolean returns a boolean value, false when absent or wrong.
func (s scope) boolean(field string, val any) bool {
	switch x := val.(type) {
	case nil:
		return false
	case bool:
		return x
	default:
		s.fail(field, wantErr("true or false", val))
		return false
	}
}

// timeout returns a positive duration, def when absent or wrong.
func (s scope) timeout(field string, val any, def time.Duration) Duration {
	if val == nil {
		return Duration{def}
	}
	var d Duration
	if err := d.UnmarshalTOML(val); err != nil {
		s.fail(field, err)
		return Duration{def}
	}
	if d.Duration <= 0 {
		s.fail(field, fmt.Errorf("must be positive (leave it out for the default, %s)", def))
		return Duration{def}
	}
	return d
}

// build turns the decoded values into a Config, reporting every problem.
func (v *validator) build(raw *rawConfig) *Config {
	top := scope{v: v, backend: -1}
	cfg := &Config{
		PIDFile:          top.str("pidfile", raw.PIDFile),
		MaxSessions:      top.integer("max_sessions", raw.MaxSessions, 0, 0, math.MaxInt),
		MaxPacket:        top.integer("max_packet", raw.MaxPacket, DefaultMaxPacket, MinPacket, math.MaxInt),
		MaxBackendPacket: top.integer("max_backend_packet", raw.MaxBackendPacket, DefaultMaxBackendPacket, MinPacket, math.MaxInt),
		MaxMessage:       top.integer("max_message", raw.MaxMessage, DefaultMaxMessage, 0, math.MaxInt),
		SpoolMemory:      top.integer("spool_memory", raw.SpoolMemory, DefaultSpoolMemory, 0, math.MaxInt),
		MemoryBudget:     top.integer("memory_budget", raw.MemoryBudget, DefaultMemoryBudget, 0, math.MaxInt),
		SpoolDir:         top.str("spool_dir", raw.SpoolDir),
		ShutdownTimeout:  top.timeout("shutdown_timeout", raw.ShutdownTimeout, DefaultShutdownTimeout),
		NegotiateTimeout: top.timeout("negotiate_timeout", raw.NegotiateTimeout, DefaultNegotiateTimeout),
		IdleTimeout:      top.timeout("idle_timeout", raw.IdleTimeout, DefaultIdleTimeout),
		WriteTimeout:     top.timeout("write_timeout", raw.WriteTimeout, DefaultMTAWriteTimeout),
		Content:          top.enum("content", raw.Content, DefaultContent, "content mode", ContentSerial, ContentParallel),
		OpenTimeout:      top.timeout("open_timeout", raw.OpenTimeout, DefaultOpenTimeout),
		ReadOnly:         top.enum("read_only", raw.ReadOnly, DefaultReadOnly, "read-only mode", ReadOnlyInOrder, ReadOnlyLive),
		Merge:            top.enum("merge", raw.Merge, DefaultMerge, "merge mode", MergeStrongest, MergeChain),
		LogLevel:         top.enum("log_level", raw.LogLevel, DefaultLogLevel, "level", "debug", "info", "warn", "error"),
		LogTag:           top.str("log_tag", raw.LogTag),
		MetricsListen:    top.str("metrics_listen", raw.MetricsListen),
	}
	if cfg.LogTag == "" {
		cfg.LogTag = DefaultLogTag
	}
	if cfg.MaxMessage > 0 && cfg.MaxMessage < MinPacket {
		top.fail("max_message", fmt.Errorf("%d is too small (minimum %d, or 0 for no limit)", cfg.MaxMessage, MinPacket))
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.SpoolDir != "" && !filepath.IsAbs(cfg.SpoolDir) {
		top.fail("spool_dir", fmt.Errorf("%q is not an absolute path", cfg.SpoolDir))
	}
	if cfg.MetricsListen != "" {
		if _, err := strconv.ParseUint(cfg.MetricsListen, 10, 16); err == nil {
			// A bare port: pmult listens on 127.0.0.1.
		} else if _, _, err := net.SplitHostPort(cfg.MetricsListen); err != nil {
			top.fail("metrics_listen", fmt.Errorf("want host:port or a port (loopback): %w", err))
		}
	}
	v.listen(cfg, raw.Listen, raw.Meta1 != nil && raw.Meta1.Listen != nil)
	v.meta1(cfg, raw.Meta1)
	v.mtaSide(cfg, raw.ProgressInterval, raw.MTAMacros)

	seen := make(map[string]int)
	for i, rb := range raw.Backends {
		sc := scope{v: v, backend: i}
		name := strings.TrimSpace(sc.str("name", rb.Name))
		sc.name = name
		b := Backend{
			Name:           name,
			URL:            strings.TrimSpace(sc.str("url", rb.URL)),
			ConnectTimeout: sc.timeout("connect_timeout", rb.ConnectTimeout, DefaultConnectTimeout),
			ReadTimeout:    sc.timeout("read_timeout", rb.ReadTimeout, DefaultReadTimeout),
			WriteTimeout:   sc.timeout("write_timeout", rb.WriteTimeout, DefaultWriteTimeout),
			EOMTimeout:     sc.timeout("eom_timeout", rb.EOMTimeout, DefaultEOMTimeout),
			OnFailure: sc.enum("on_failure", rb.OnFailure, DefaultOnFailure, "action",
				OnFailureAccept, OnFailureTempfail, OnFailureReject, OnFailureDiscard),
			Mode:     sc.enum("mode", rb.Mode, DefaultMode, "mode", ModeEnforce, ModeEvaluate),
			Protocol: sc.integer("protocol", rb.Protocol, DefaultProtocol, MinProtocol, DefaultProtocol),
			MaxBody:  sc.integer("max_body", rb.MaxBody, cfg.MaxMessage, MinPacket, math.MaxInt),
			Reuse:    sc.boolean("reuse", rb.Reuse),
			LogLevel: sc.enum("log_level", rb.LogLevel, "", "level", "debug", "info", "warn", "error"),
		}
		_, nameIsString := rb.Name.(string)
		switch j, dup := seen[name]; {
		case rb.Name == nil:
			sc.fail("name", errors.New("missing (every backend needs a unique name)"))
		case !nameIsString:
			// Reported by str.
		case name == "":
			sc.fail("name", errors.New("empty (every backend needs a unique name)"))
		case dup:
			sc.fail("name", fmt.Errorf("duplicate: backend[%d] has the same name", j))
		default:
			seen[name] = i
		}
		if b.URL == "" {
			if _, ok := rb.URL.(string); ok || rb.URL == nil {
				sc.fail("url", errors.New("missing (the milter's socket, e.g. inet:127.0.0.1:8891 or unix:/run/milter.sock)"))
			}
		} else if a, err := ParseAddress(b.URL); err != nil {
			sc.fail("url", err)
		} else if a.port() == 0 {
			sc.fail("url", fmt.Errorf("address %q: port 0 cannot be connected to", b.URL))
		} else {
			b.Addr = a
		}
		cfg.Backends = append(cfg.Backends, b)
	}
	return cfg
}

// listen fills Listen and ListenAddrs from the listen key: absent means
// DefaultListen; a string is one address; an array must not be empty,
// unless the MeTA1 front listens (meta1: a MeTA1-only pmult).
func (v *validator) listen(cfg *Config, val any, meta1 bool) {
	top := scope{v: v, backend: -1}
	type item struct {
		field, text string
	}
	var items []item
	switch x := val.(type) {
	case nil:
		items = []item{{"listen", DefaultListen}}
	case string:
		items = []item{{"listen", x}}
	case []any:
		if len(x) == 0 && !meta1 {
			top.fail("listen", errors.New("no listen address (leave the key out for the default, "+DefaultListen+")"))
		}
		for i, e := range x {
			field := fmt.Sprintf("listen[%d]", i)
			if s, ok := e.(string); ok {
				items = append(items, item{field, s})
			} else {
				top.fail(field, wantErr("a string", e))
			}
		}
	default:
		top.fail("listen", wantErr("a string or an array of strings", val))
	}
	seen := make(map[Address]string)
	for _, it := range items {
		cfg.Listen = append(cfg.Listen, it.text)
		a, err := ParseAddress(it.text)
		if err != nil {
			top.fail(it.field, err)
			continue
		}
		key := Address{Network: a.Network, Addr: a.Addr}
		if prev, dup := seen[key]; dup {
			top.fail(it.field, fmt.Errorf("address %q: same as %s", it.text, prev))
			continue
		}
		seen[key] = it.field
		cfg.ListenAddrs = append(cfg.ListenAddrs, a)
	}
}

// unknownKeys reports the keys of the file that match no field, naming the
// backend they are in and suggesting the key probably meant.
func (v *validator) unknownKeys(data []byte, md toml.MetaData) {
	undecoded := md.Undecoded()
	if len(undecoded) == 0 {
		return
	}
	// Keys of array tables carry no index; find the backends that hold
	// each one in a second, untyped decoding.
	var probe struct {
		Backend []map[string]any `toml:"backend"`
	}
	probed := false
	reported := make(map[string]bool)
	for _, k := range undecoded {
		if len(k) >= 3 && k[0] == "meta1" && k[1] == "define_macros" {
			continue // a table of handlers, checked by meta1
		}
		under := false // a key already reported, or under one
		for j := 1; j <= len(k); j++ {
			if reported[k[:j].String()] {
				under = true
				break
			}
		}
		if under {
			continue
		}
		reported[k.String()] = true
		if len(k) == 2 && k[0] == "backend" {
			if !probed {
				_, _ = toml.Decode(string(data), &probe) // it decoded once already
				probed = true
			}
			err := unknownKeyErr(k, tomlKeys(rawBackend{}))
			found := false
			for i, m := range probe.Backend {
				if _, ok := m[k[1]]; ok {
					name, _ := m["name"].(string)
					scope{v: v, backend: i, name: strings.TrimSpace(name)}.fail("", err)
					found = true
				}
			}
			if found {
				continue
			}
		}
		var known []string
		if len(k) == 1 {
			known = tomlKeys(rawConfig{})
		} else if len(k) == 2 && k[0] == "meta1" {
			known = tomlKeys(rawMeta1{})
		} else if len(k) == 2 && k[0] == "mta_macros" {
			known = tomlKeys(rawMTAMacros{})
		}
		scope{v: v, backend: -1}.fail("", unknownKeyErr(k, known))
	}
}

// unknownKeyErr says that key k is unknown, with a suggestion among known.
func unknownKeyErr(k toml.Key, known []string) error {
	if s := suggest(k[len(k)-1], known); s != "" {
		return fmt.Errorf("unknown key %q (did you mean %q?)", k.String(), s)
	}
	return fmt.Errorf("unknown key %q", k.String())
}

// tomlKeys lists the TOML keys of a struct's fields.
func tomlKeys(v any) []string {
	t := reflect.TypeOf(v)
	keys := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

// suggest returns the known key closest to word when it is close enough
// to be a typo (including mailfromd's dashes for underscores).
func suggest(word string, known []string) string {
	w := strings.ReplaceAll(strings.ToLower(word), "-", "_")
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(w, k); d < bestDist && d < len(w) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment) between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// wantErr says a value has the wrong TOML type.
func wantErr(want string, val any) error {
	return fmt.Errorf("want %s, not a TOML %s", want, tomlType(val))
}

// tomlType names the TOML type of a decoded value.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	case time.Time:
		return "date-time"
	default:
		return fmt.Sprintf("value (%T)", v)
	}
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
