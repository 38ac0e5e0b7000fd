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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-multierror"

	milter "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/internal/cond"
	"github.com/mailmux/mailmux/pmult"
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
	DefaultDecisionRing     = 1000 // decision records kept for pmult why

	// A milter backend's defaults (backends/milter owns its keys).
	DefaultConnectTimeout = milter.DefaultConnectTimeout
	DefaultReadTimeout    = milter.DefaultReadTimeout
	DefaultWriteTimeout   = milter.DefaultWriteTimeout
	DefaultEOMTimeout     = milter.DefaultEOMTimeout
	DefaultProtocol       = milter.DefaultMilterVersion

	DefaultOnFailure = OnFailureTempfail
	DefaultMode      = ModeEnforce

	// MinPacket is the smallest max_packet, max_backend_packet, max_body
	// and max_message (other than 0) allowed: one milter body chunk.
	MinPacket = 65536
	// MinProtocol is the lowest milter protocol version a backend may be
	// limited to.
	MinProtocol = milter.MinMilterVersion
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
const errPrefix = syntax.ErrPrefix

// Config is pmult's configuration. Parse and Load fill every field: keys
// left out of the file get their defaults, enumerations are lower-cased,
// addresses are parsed into Milter.ListenAddrs, Meta1.ListenAddrs and each
// backend's settings.
type Config struct {
	// Milter is the [milter] table: the milter front end, where MTAs
	// (Postfix, Sendmail) connect. Its keys were top-level before (listen,
	// max_sessions, max_packet); those spellings still load.
	Milter Milter `toml:"milter"`
	// PIDFile is where to write the process id; empty (default): nowhere.
	PIDFile string `toml:"pidfile"`
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
	// (all sessions of every front: the engine's replay copies and the SMTP
	// front's held messages share one budget); beyond it they go to files
	// too. Default 256 MiB; 0: nothing in memory.
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
	// MetricsPprof serves Go's runtime profiles (net/http/pprof) at
	// /debug/pprof/ on the metrics listener. Default false; requires
	// metrics_listen. Profiles show goroutine stacks and timing: keep
	// the listener on loopback.
	MetricsPprof bool `toml:"metrics_pprof"`
	// DecisionLog logs one info line per message (the decision line: who
	// decided, every backend's verdicts and latencies, edits, policies).
	// Default true.
	DecisionLog bool `toml:"decision_log"`
	// DecisionRing is how many recent messages' decision records pmult
	// keeps in memory for `pmult why` (default DefaultDecisionRing; 0: none).
	DecisionRing int `toml:"decision_ring"`
	// ControlSocket is a unix socket path (mode 0600) where `pmult why`
	// asks for a record; empty (default): none (the metrics listener's
	// /why?id= still answers).
	ControlSocket string `toml:"control_socket"`
	// Backends are the [[backend]] tables, in file order. Parse accepts a
	// file with none; the caller decides whether that is useful.
	Backends []Backend `toml:"backend"`
	// Meta1 is the [meta1] table: the MeTA1 (pmilter) front end; see
	// meta1.go. Absent: no MeTA1 front (the zero value).
	Meta1 Meta1 `toml:"meta1"`
	// Smtp is the [smtp] table: the SMTP front end and its next hop; see
	// smtp.go. Absent: no SMTP front (the zero value).
	Smtp Smtp `toml:"smtp"`
	// ProgressInterval is how often SMFIR_PROGRESS goes to the MTA while
	// the end of message is pending (the MTA's timer restarts on it);
	// 0: never. Default 5s. See mta.go.
	ProgressInterval Duration `toml:"progress_interval"`
	// MTAMacros is the [mta_macros] table: per stage, the macros the MTA
	// sends without a list. See mta.go.
	MTAMacros MTAMacros `toml:"mta_macros"`
	// Macros is the [macros] table: macro translation tables, global
	// and per listener. See macros.go.
	Macros Macros `toml:"macros"`

	// User is the account pmult switches to once its sockets are bound
	// and its pidfile written (a name or a numeric uid); "": stay as
	// started (a warning when that is root). See daemon.go.
	User string `toml:"user"`
	// Group is the primary group after the switch; "": User's primary
	// group. Setting it without User is an error.
	Group string `toml:"group"`
	// SocketOwner and SocketGroup own pmult's unix sockets (names or
	// numeric ids); "": User and Group when set, else the process's.
	SocketOwner string `toml:"socket_owner"`
	SocketGroup string `toml:"socket_group"`
	// SocketMode is the unix sockets' permission bits, set at the bind.
	// Default DefaultSocketMode (0666).
	SocketMode uint32 `toml:"socket_mode"`

	// Warnings are the problems that do not stop the file from loading,
	// each a *FieldError: old spellings of keys (which key replaces
	// each). pmult check prints them; pmult logs them at start.
	Warnings []error `toml:"-"`
}

// Milter is the [milter] table: the milter front end (symmetric with
// [meta1]).
//
//	[milter]
//	listen = ["inet:127.0.0.1:7357"]  # default; old spelling: top-level listen
//	max_connections = 0               # concurrent MTA connections (0: no limit); old: top-level max_sessions
//	max_packet = 1048576              # bytes of packet data from the MTA; old: top-level max_packet
//	defer_content = "auto"            # the MTA need not wait for replies to headers, EOH, body chunks (true, false, "auto")
type Milter struct {
	// Listen holds the addresses the MTA connects to, in any dialect
	// ParseAddress accepts, each optionally named: "inbound=inet:...". Default [DefaultListen]; an empty array is
	// allowed when [meta1] listens (a MeTA1-only pmult). TOML: a string or
	// an array of strings.
	Listen []string `toml:"listen"`
	// MaxConnections limits concurrent MTA connections (each carries one
	// SMTP session at a time); 0 (default): no limit.
	MaxConnections int `toml:"max_connections"`
	// MaxPacket is the largest milter packet data, in bytes, accepted from
	// the MTA. Default 1 MiB, at least MinPacket.
	MaxPacket int `toml:"max_packet"`
	// DeferContent lets the MTA not wait for the replies to headers, EOH
	// and body chunks (NR_HDR, NR_EOH, NR_BODY, where it offers them)
	// even when backends answer them: a verdict given there reaches the
	// MTA at end of message, where Postfix and Sendmail act on it anyway.
	// "auto" (default, [DeferContentAuto]): so for every MTA except one
	// whose offer is known to wait for those replies regardless
	// (mailfromd's mtasim); true ([DeferContentOn]): for every MTA;
	// false ([DeferContentOff]): never.
	DeferContent DeferContent `toml:"defer_content"`

	// ListenAddrs are the parsed Listen addresses.
	ListenAddrs []Address `toml:"-"`
	// ListenNames are their names, "" for an unnamed one: an entry
	// "name=address" (name: a letter, then letters, digits, - or _)
	// names its listener, for [macros.listener.NAME] and {listener}; a
	// name is unique across the milter, MeTA1 and SMTP fronts.
	ListenNames []string `toml:"-"`
}

// DeferContent is [milter] defer_content.
type DeferContent int

const (
	// DeferContentAuto lets the MTA off the content replies unless its
	// offer is one known to wait for them anyway (mailfromd's mtasim).
	DeferContentAuto DeferContent = iota
	// DeferContentOn lets every MTA off them (defer_content = true).
	DeferContentOn
	// DeferContentOff keeps every MTA waiting for them where a backend
	// answers them (defer_content = false).
	DeferContentOff
)

// String is the TOML spelling: "auto", "true" or "false".
func (d DeferContent) String() string {
	switch d {
	case DeferContentOn:
		return "true"
	case DeferContentOff:
		return "false"
	}
	return "auto"
}

// Backend is one [[backend]] table. Config reads the keys every backend
// has (those of this struct; keys that apply to any backend, such as
// conditions on when it is asked, belong here too); the others belong to
// its type, whose package parses, validates and builds them (see
// backends.go).
type Backend struct {
	// Name identifies the backend in logs and metrics; required and
	// unique.
	Name string `toml:"name"`
	// Type is the kind of backend: "milter" (default, a remote milter;
	// its keys: backends/milter.Settings).
	Type string `toml:"type"`
	// OnFailure is what a failing backend means for the message: accept
	// (skip this backend), tempfail (default), reject or discard.
	OnFailure string `toml:"on_failure"`
	// Mode is enforce (default) or evaluate (shadow: verdicts and edits
	// are logged, never applied).
	Mode string `toml:"mode"`
	// LogLevel, when set, raises the level of this backend's log lines
	// (debug, info, warn, error; pmult's client log-level). It cannot go
	// below the global log_level. Default "": the global level.
	LogLevel string `toml:"log_level"`
	// WaitEarlier lists envelope stages (connect, helo, mail, rcpt,
	// data, unknown) where the backend gets the event only once the
	// other backends have answered it, so that it, and its condition,
	// see the macros the backends before it set at that very stage
	// (pmult/assign.go). It costs their latency there. Default none.
	WaitEarlier []string `toml:"wait_earlier"`

	// If is the backend's condition (the `if` table, compiled by
	// internal/cond): which sessions and messages it takes part in. nil
	// (no `if`): all of them.
	If pmult.Condition `toml:"if"`

	// Settings are the keys of the backend's type, parsed and validated
	// by its package (*milter.Settings for type "milter").
	Settings BackendSettings `toml:"-"`
}

// rawConfig, rawMilter and rawBackend are what the TOML is decoded into:
// every value as it came, so that a value of the wrong type is one more
// error to report rather than the end of decoding. Their keys must be
// those of Config, Milter and Backend, plus the old spellings in renamed
// (a test checks it). A backend's own keys are decoded by its package.
type rawConfig struct {
	Milter           *rawMilter       `toml:"milter"`
	PIDFile          any              `toml:"pidfile"`
	MaxBackendPacket any              `toml:"max_backend_packet"`
	MaxMessage       any              `toml:"max_message"`
	SpoolMemory      any              `toml:"spool_memory"`
	MemoryBudget     any              `toml:"memory_budget"`
	SpoolDir         any              `toml:"spool_dir"`
	ShutdownTimeout  any              `toml:"shutdown_timeout"`
	NegotiateTimeout any              `toml:"negotiate_timeout"`
	IdleTimeout      any              `toml:"idle_timeout"`
	WriteTimeout     any              `toml:"write_timeout"`
	Content          any              `toml:"content"`
	OpenTimeout      any              `toml:"open_timeout"`
	ReadOnly         any              `toml:"read_only"`
	Merge            any              `toml:"merge"`
	LogLevel         any              `toml:"log_level"`
	LogTag           any              `toml:"log_tag"`
	MetricsListen    any              `toml:"metrics_listen"`
	MetricsPprof     any              `toml:"metrics_pprof"`
	DecisionLog      any              `toml:"decision_log"`
	DecisionRing     any              `toml:"decision_ring"`
	ControlSocket    any              `toml:"control_socket"`
	Backends         []toml.Primitive `toml:"backend"`
	Meta1            *rawMeta1        `toml:"meta1"`
	Smtp             *rawSmtp         `toml:"smtp"`

	// The MTA side (mta.go).
	ProgressInterval any            `toml:"progress_interval"`
	MTAMacros        *rawMTAMacros  `toml:"mta_macros"`
	Macros           map[string]any `toml:"macros"`

	// The process's identity and its sockets (daemon.go).
	User        any `toml:"user"`
	Group       any `toml:"group"`
	SocketOwner any `toml:"socket_owner"`
	SocketGroup any `toml:"socket_group"`
	SocketMode  any `toml:"socket_mode"`

	// Old spellings of [milter] keys (see renamed).
	Listen      any `toml:"listen"`
	MaxSessions any `toml:"max_sessions"`
	MaxPacket   any `toml:"max_packet"`
}

type rawMilter struct {
	Listen         any `toml:"listen"`
	MaxConnections any `toml:"max_connections"`
	MaxPacket      any `toml:"max_packet"`
	DeferContent   any `toml:"defer_content"`
}

type rawBackend struct {
	Name        any `toml:"name"`
	Type        any `toml:"type"`
	OnFailure   any `toml:"on_failure"`
	Mode        any `toml:"mode"`
	LogLevel    any `toml:"log_level"`
	WaitEarlier any `toml:"wait_earlier"`
	If          any `toml:"if"`
}

// renamed maps the old top-level spellings to the [milter] keys that
// replace them.
func renamed() map[string]string {
	return map[string]string{
		"listen":       "milter.listen",
		"max_sessions": "milter.max_connections",
		"max_packet":   "milter.max_packet",
	}
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
	v.md = md
	cfg := v.build(&raw)
	// Unknown keys are known once every backend's keys were decoded;
	// they are reported first.
	found := v.errs
	v.errs = nil
	v.unknownKeys(data, md)
	v.errs = append(v.errs, found...)
	if err := v.result(); err != nil {
		return nil, err
	}
	cfg.Warnings = v.warnings
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
	source   string
	md       toml.MetaData
	errs     []error
	warnings []error
	kinds    []kind // of each backend, for unknownKeys
	// listenerNames: each listener name given so far, by the field that
	// gave it (names are unique across the fronts, see claimName).
	listenerNames map[string]string
}

// claimName records the listener name given at field ("": unnamed, not
// recorded) and fails when an earlier listener of any front has it: the
// engine tells listeners apart by name alone (the listener metrics,
// conditions, [macros] tables), so two fronts sharing one would be one
// listener there.
func (v *validator) claimName(field, name string) {
	if name == "" {
		return
	}
	if prev, dup := v.listenerNames[name]; dup {
		scope{v: v, backend: -1}.fail(field, fmt.Errorf("listener name %q: same as %s (names are unique across the milter, MeTA1 and SMTP fronts)", name, prev))
		return
	}
	if v.listenerNames == nil {
		v.listenerNames = make(map[string]string)
	}
	v.listenerNames[name] = field
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
	s.v.errs = append(s.v.errs, s.fieldError(field, err))
}

func (s scope) fieldError(field string, err error) *FieldError {
	return &FieldError{Source: s.v.source, Backend: s.backend, Name: s.name, Field: field, Err: err}
}

// warn records a warning.
func (s scope) warn(field string, err error) {
	s.v.warnings = append(s.v.warnings, s.fieldError(field, err))
}

// add records the errors of a syntax.Checker or a backend package: a
// *syntax.KeyError becomes a FieldError of its key, field a prefix to it.
func (s scope) add(prefix string, errs []error) {
	for _, err := range errs {
		var ke *syntax.KeyError
		if errors.As(err, &ke) {
			s.fail(prefix+ke.Key, ke.Err)
		} else {
			s.fail("", err)
		}
	}
}

// check runs f with a syntax.Checker, recording its errors.
func check[T any](s scope, f func(c *syntax.Checker) T) T {
	var c syntax.Checker
	v := f(&c)
	s.add("", c.Errs)
	return v
}

// str returns a string value, "" when absent.
func (s scope) str(field string, val any) string {
	return check(s, func(c *syntax.Checker) string { return c.String(field, val) })
}

// enum returns a string value that must be one of allowed (any case), def
// when absent or empty. what names the kind of value in the message.
func (s scope) enum(field string, val any, def, what string, allowed ...string) string {
	return check(s, func(c *syntax.Checker) string { return c.Enum(field, val, def, what, allowed...) })
}

// integer returns an integer value in [lo, hi], def when absent or wrong.
func (s scope) integer(field string, val any, def, lo, hi int) int {
	return check(s, func(c *syntax.Checker) int { return c.Int(field, val, def, lo, hi) })
}

// boolean returns a boolean value, false when absent or wrong.
func (s scope) boolean(field string, val any) bool {
	return check(s, func(c *syntax.Checker) bool { return c.Bool(field, val) })
}

// deferContent returns defer_content: true, false or "auto" (any case),
// [DeferContentAuto] when absent or wrong.
func (s scope) deferContent(field string, val any) DeferContent {
	return check(s, func(c *syntax.Checker) DeferContent {
		switch x := val.(type) {
		case nil:
			return DeferContentAuto
		case bool:
			if x {
				return DeferContentOn
			}
			return DeferContentOff
		case string:
			if strings.EqualFold(strings.TrimSpace(x), "auto") {
				return DeferContentAuto
			}
		}
		c.Fail(field, syntax.WantErr(`true, false or "auto"`, val))
		return DeferContentAuto
	})
}

// timeout returns a positive duration, def when absent or wrong.
func (s scope) timeout(field string, val any, def time.Duration) Duration {
	return check(s, func(c *syntax.Checker) Duration { return c.Timeout(field, val, def) })
}

// build turns the decoded values into a Config, reporting every problem.
func (v *validator) build(raw *rawConfig) *Config {
	top := scope{v: v, backend: -1}
	pidfile := top.str("pidfile", raw.PIDFile)
	// [milter], or its keys' old top-level spellings; its integers here,
	// in the order of the keys' top-level days.
	var rm rawMilter
	if raw.Milter != nil {
		rm = *raw.Milter
	}
	var front Milter
	f, val := v.renamedKey("max_sessions", raw.MaxSessions, "max_connections", rm.MaxConnections)
	front.MaxConnections = top.integer(f, val, 0, 0, math.MaxInt)
	f, val = v.renamedKey("max_packet", raw.MaxPacket, "max_packet", rm.MaxPacket)
	front.MaxPacket = top.integer(f, val, DefaultMaxPacket, MinPacket, math.MaxInt)
	front.DeferContent = top.deferContent("milter.defer_content", rm.DeferContent)
	cfg := &Config{
		Milter:           front,
		PIDFile:          pidfile,
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
		MetricsPprof:     raw.MetricsPprof != nil && top.boolean("metrics_pprof", raw.MetricsPprof),
		DecisionLog:      raw.DecisionLog == nil || top.boolean("decision_log", raw.DecisionLog),
		DecisionRing:     top.integer("decision_ring", raw.DecisionRing, DefaultDecisionRing, 0, 1<<20),
		ControlSocket:    top.str("control_socket", raw.ControlSocket),
	}
	if cfg.ControlSocket != "" && !filepath.IsAbs(cfg.ControlSocket) {
		top.fail("control_socket", fmt.Errorf("%q is not an absolute path", cfg.ControlSocket))
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
	if cfg.MetricsPprof && cfg.MetricsListen == "" {
		top.fail("metrics_pprof", errors.New("needs metrics_listen (the profiles are served on the metrics listener)"))
	}
	f, val = v.renamedKey("listen", raw.Listen, "listen", rm.Listen)
	v.listen(cfg, f, val, raw.Meta1 != nil && raw.Meta1.Listen != nil || raw.Smtp != nil && raw.Smtp.Listen != nil)
	v.meta1(cfg, raw.Meta1)
	v.smtp(cfg, raw.Smtp)
	v.mtaSide(cfg, raw.ProgressInterval, raw.MTAMacros)
	v.daemon(cfg, raw)
	v.macroTables(cfg, raw.Macros)

	seen := make(map[string]int)
	for i, prim := range raw.Backends {
		cfg.Backends = append(cfg.Backends, v.backend(i, prim, cfg.MaxMessage, seen))
	}
	return cfg
}

// renamedKey returns the field name and value of a [milter] key, given
// either in [milter] (key) or top-level under its old spelling (old,
// warned about); both is an error.
func (v *validator) renamedKey(old string, oldVal any, key string, val any) (string, any) {
	top := scope{v: v, backend: -1}
	switch {
	case oldVal == nil:
		return "milter." + key, val
	case val != nil:
		top.fail(old, fmt.Errorf("top-level %s is the old spelling of milter.%s: keep [milter] %s only", old, key, key))
		return "milter." + key, val
	default:
		top.warn(old, fmt.Errorf("old spelling: write %s in the [milter] table instead (the old spelling still loads)", key))
		return old, oldVal
	}
}

// backend reads the [[backend]] table i: the keys every backend has here,
// the others by its type's package. seen holds the names so far.
func (v *validator) backend(i int, prim toml.Primitive, maxMessage int, seen map[string]int) Backend {
	sc := scope{v: v, backend: i}
	decode := func(x any) error { return v.md.PrimitiveDecode(prim, x) }
	var rb rawBackend
	if err := decode(&rb); err != nil {
		sc.fail("", err)
	}
	name := strings.TrimSpace(sc.str("name", rb.Name))
	sc.name = name
	b := Backend{
		Name: name,
		Type: sc.enum("type", rb.Type, DefaultType, "backend type", typeNames()...),
		OnFailure: sc.enum("on_failure", rb.OnFailure, DefaultOnFailure, "action",
			OnFailureAccept, OnFailureTempfail, OnFailureReject, OnFailureDiscard),
		Mode:     sc.enum("mode", rb.Mode, DefaultMode, "mode", ModeEnforce, ModeEvaluate),
		LogLevel: sc.enum("log_level", rb.LogLevel, "", "level", "debug", "info", "warn", "error"),
	}
	b.WaitEarlier = waitEarlier(sc, rb.WaitEarlier)
	if rb.If != nil {
		c, errs := cond.Compile("if", rb.If)
		sc.add("", errs)
		b.If = c
	}
	k, ok := backendKind(b.Type)
	if !ok { // reported by enum; read the keys as the default type's
		k, _ = backendKind(DefaultType)
	}
	for len(v.kinds) <= i {
		v.kinds = append(v.kinds, kind{})
	}
	v.kinds[i] = k
	settings, old, errs := k.parse(decode, maxMessage)
	sc.add("", errs)
	for _, o := range old {
		sc.warn(o, fmt.Errorf("old spelling: write %s instead (the old spelling still loads)", k.renamed[o]))
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
	sc.add("", settings.Validate())
	b.Settings = settings
	return b
}

// WaitStages are the stages wait_earlier may name.
var WaitStages = map[string]pmult.Kind{"connect": pmult.KindConnect, "helo": pmult.KindHelo,
	"mail": pmult.KindMail, "rcpt": pmult.KindRcpt, "data": pmult.KindData, "unknown": pmult.KindUnknown}

// waitEarlier reads wait_earlier: an array of envelope stage names.
func waitEarlier(sc scope, val any) []string {
	if val == nil {
		return nil
	}
	list, ok := val.([]any)
	if !ok {
		sc.fail("wait_earlier", syntax.WantErr(`an array of stages (["mail", "rcpt"])`, val))
		return nil
	}
	var out []string
	for i, x := range list {
		s, _ := x.(string)
		s = strings.ToLower(strings.TrimSpace(s))
		if _, ok := WaitStages[s]; !ok {
			sc.fail(fmt.Sprintf("wait_earlier[%d]", i), fmt.Errorf("%v: want connect, helo, mail, rcpt, data or unknown", x))
			continue
		}
		out = append(out, s)
	}
	return out
}

// listen fills Milter.Listen and Milter.ListenAddrs from the listen key
// (field names it): absent means DefaultListen; a string is one address;
// an array must not be empty, unless the MeTA1 or the SMTP front listens
// (meta1: a pmult without a milter front).
func (v *validator) listen(cfg *Config, field string, val any, meta1 bool) {
	top := scope{v: v, backend: -1}
	type item struct {
		field, text string
	}
	var items []item
	switch x := val.(type) {
	case nil:
		items = []item{{field, DefaultListen}}
	case string:
		items = []item{{field, x}}
	case []any:
		if len(x) == 0 && !meta1 {
			top.fail(field, errors.New("no listen address (leave the key out for the default, "+DefaultListen+")"))
		}
		for i, e := range x {
			f := fmt.Sprintf("%s[%d]", field, i)
			if s, ok := e.(string); ok {
				items = append(items, item{f, s})
			} else {
				top.fail(f, wantErr("a string", e))
			}
		}
	default:
		top.fail(field, wantErr("a string or an array of strings", val))
	}
	m := &cfg.Milter
	seen := make(map[Address]string)
	for _, it := range items {
		m.Listen = append(m.Listen, it.text)
		name, addr := splitListenName(it.text)
		a, err := ParseAddress(addr)
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
		v.claimName(it.field, name)
		m.ListenAddrs = append(m.ListenAddrs, a)
		m.ListenNames = append(m.ListenNames, name)
	}
}

// unknownKeys reports the keys of the file that match no field, naming the
// backend they are in and suggesting the key probably meant.
// ownTable reports whether name is a key of some backend type (a table
// under [[backend]] that the type's package checks, such as a filter's rule).
func ownTable(name string) bool {
	for _, k := range backendKinds() {
		if slices.Contains(k.keys, name) {
			return true
		}
	}
	return false
}

func (v *validator) unknownKeys(data []byte, md toml.MetaData) {
	undecoded := make(map[string]bool)
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
	}
	// Keys of array tables carry no index; find the backends that hold
	// each one in a second, untyped decoding. A backend key is unknown
	// when it is neither a common one nor one of the backend's type.
	var probe struct {
		Backend []map[string]any `toml:"backend"`
	}
	if len(v.kinds) > 0 {
		_, _ = toml.Decode(string(data), &probe) // it decoded once already
	}
	common := tomlKeys(rawBackend{})
	reported := make(map[string]bool)
	for _, k := range md.Keys() {
		if len(k) >= 3 && k[0] == "meta1" && k[1] == "define_macros" {
			continue // a table of handlers, checked by meta1
		}
		if len(k) >= 3 && k[0] == "backend" && (k[1] == "if" || ownTable(k[1])) {
			// A table under a backend: its conditions (cond.Compile) or a
			// table of a backend type's own (e.g. filter rules), checked by
			// that type's package.
			continue
		}
		if len(k) >= 2 && k[0] == "macros" || len(k) >= 3 && k[0] == "backend" && k[1] == "macros" {
			continue // macro tables, checked by macros.ParseTable
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
		if len(k) == 2 && k[0] == "backend" && len(probe.Backend) > 0 {
			found := false
			for i, m := range probe.Backend {
				if _, ok := m[k[1]]; !ok || i >= len(v.kinds) {
					continue
				}
				known := append(slices.Clone(common), v.kinds[i].keys...)
				if slices.Contains(known, k[1]) {
					continue
				}
				name, _ := m["name"].(string)
				scope{v: v, backend: i, name: strings.TrimSpace(name)}.fail("", unknownKeyErr(k, known))
				found = true
			}
			if found {
				reported[k.String()] = true
			}
			continue
		}
		if !undecoded[k.String()] {
			continue
		}
		reported[k.String()] = true
		var known []string
		if len(k) == 1 {
			known = tomlKeys(rawConfig{})
		} else if len(k) == 2 && k[0] == "meta1" {
			known = tomlKeys(rawMeta1{})
		} else if len(k) == 2 && k[0] == "smtp" {
			known = tomlKeys(rawSmtp{})
		} else if len(k) == 2 && k[0] == "milter" {
			known = tomlKeys(rawMilter{})
		} else if len(k) == 2 && k[0] == "mta_macros" {
			known = tomlKeys(rawMTAMacros{})
		}
		scope{v: v, backend: -1}.fail("", unknownKeyErr(k, known))
	}
}

// unknownKeyErr says that key k is unknown, with a suggestion among known.
func unknownKeyErr(k toml.Key, known []string) error {
	if s := syntax.Suggest(k[len(k)-1], known); s != "" {
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

// wantErr says a value has the wrong TOML type.
func wantErr(want string, val any) error { return syntax.WantErr(want, val) }

// Address is a parsed socket address (see syntax.Address).
type Address = syntax.Address

// Duration is a time.Duration read from a Go duration, a mailfromd
// interval or a number of seconds (see syntax.Duration).
type Duration = syntax.Duration

// ParseAddress parses a socket address in the Sendmail, Postfix or
// mailfromd dialect; see syntax.ParseAddress.
func ParseAddress(s string) (Address, error) { return syntax.ParseAddress(s) }

// ParseDuration parses a Go duration or a mailfromd interval; see
// syntax.ParseDuration.
func ParseDuration(s string) (time.Duration, error) { return syntax.ParseDuration(s) }
