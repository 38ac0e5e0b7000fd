// config.go: the keys of a [[backend]] table of type "milter" (the keys
// every backend has, name, type, on_failure, mode and log_level, are the
// config package's), their validation and the backend they describe.
//
//	[[backend]]
//	name = "dkim"
//	address = "inet:8891@127.0.0.1"  # required; old spelling: url
//	connect_timeout = "300s"         # connect and negotiate
//	read_timeout = "10s"             # each reply
//	write_timeout = "10s"            # each packet sent
//	eom_timeout = "300s"             # the end-of-message replies
//	milter_version = 6               # highest version offered, 2..6; old spelling: protocol
//	max_body = 0                     # largest replacement body; default max_message
//	reuse = true                     # keep connections across sessions (QUIT_NC)
//	[backend.macros]                 # this backend's own macro table (macros/table.go), after [macros]
//	rename = { "{auth_type}" = "{auth_method}" }

package milter

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// Defaults of the keys of a milter backend, applied to keys left out.
const (
	DefaultConnectTimeout = 300 * time.Second // connect_timeout
	DefaultReadTimeout    = 10 * time.Second  // read_timeout
	DefaultWriteTimeout   = 10 * time.Second  // write_timeout
	DefaultEOMTimeout     = 300 * time.Second // eom_timeout
	DefaultMilterVersion  = 6                 // milter_version
	// MinMilterVersion is the lowest milter_version a backend may be
	// limited to.
	MinMilterVersion = 2
	// MinMaxBody is the smallest max_body: one milter body chunk.
	MinMaxBody = 65536
)

// Renamed maps the old spelling of a key to the key that replaces it. The
// old spelling still loads; config warns about it.
func Renamed() map[string]string {
	return map[string]string{"url": "address", "protocol": "milter_version"}
}

// Settings are the parsed keys of a milter backend: every field filled,
// keys left out holding their defaults.
type Settings struct {
	// Address is the milter's socket in any dialect syntax.ParseAddress
	// accepts (inet:8891@127.0.0.1, inet:127.0.0.1:8891,
	// unix:/run/milter.sock, ...); required. TOML: address (old: url).
	Address string
	// Addr is the parsed Address.
	Addr syntax.Address
	// ConnectTimeout bounds connecting and negotiating together; the
	// engine's open budget ends them sooner when it comes first. Default
	// 300s.
	ConnectTimeout syntax.Duration
	// ReadTimeout bounds waiting for a reply. Default 10s.
	ReadTimeout syntax.Duration
	// WriteTimeout bounds sending a packet. Default 10s.
	WriteTimeout syntax.Duration
	// EOMTimeout bounds waiting for the end-of-message replies. Default
	// 300s.
	EOMTimeout syntax.Duration
	// MilterVersion is the highest milter protocol version offered, 2 to
	// 6. Default 6. TOML: milter_version (old: protocol).
	MilterVersion int
	// MaxBody limits a replacement body (SMFIR_REPLBODY) from this backend,
	// in bytes: over it the backend fails with its on_failure action.
	// Default: the top-level max_message; at least MinMaxBody.
	MaxBody int
	// Reuse keeps a backend connection after its SMTP session ended (it
	// is sent QUIT_NC, protocol 6 only) for the next session, saving a
	// connect and a negotiation each time. Tested with libmilter
	// (pymilter, OpenDKIM), mailfromd and emersion/go-milter: a filter
	// that does not take QUIT_NC (mailfromd closes the connection) is
	// found out at the first reuse, that session's commands go to a new
	// connection, and nothing is kept for it any more; a version 2 filter
	// (go-milter) is never kept. Default true.
	Reuse bool
	// Macros is the backend's own macro table (rename, alias, default,
	// set, drop), applied after the [macros] tables to what this backend
	// gets. Default: none.
	Macros *macros.Table
	// Old lists the old spellings found (keys of Renamed), in file order
	// of the keys of this struct.
	Old []string

	badAddress bool // address is not a string (reported by ParseConfig)
}

// rawSettings is what the TOML is decoded into: every value as it came.
type rawSettings struct {
	Address        any `toml:"address"`
	URL            any `toml:"url"`
	ConnectTimeout any `toml:"connect_timeout"`
	ReadTimeout    any `toml:"read_timeout"`
	WriteTimeout   any `toml:"write_timeout"`
	EOMTimeout     any `toml:"eom_timeout"`
	MilterVersion  any `toml:"milter_version"`
	Protocol       any `toml:"protocol"`
	MaxBody        any `toml:"max_body"`
	Reuse          any `toml:"reuse"`
	Macros         any `toml:"macros"`
}

// Keys lists the TOML keys of a milter backend, old spellings included,
// for config's unknown-key check and its "did you mean".
func Keys() []string {
	t := reflect.TypeOf(rawSettings{})
	keys := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		keys = append(keys, t.Field(i).Tag.Get("toml"))
	}
	return keys
}

// ParseConfig reads the keys of one milter [[backend]] table: decode fills
// a struct of `any` fields tagged with the TOML keys (config passes its
// TOML decoder's PrimitiveDecode of the table). maxMessage is the top-level
// max_message, max_body's default. It returns the settings and one
// *syntax.KeyError per bad value; the checks across keys (the address) are
// Validate's.
func ParseConfig(decode func(v any) error, maxMessage int) (*Settings, []error) {
	var raw rawSettings
	var c syntax.Checker
	if err := decode(&raw); err != nil {
		c.Fail("", err)
		return &Settings{}, c.Errs
	}
	s := &Settings{}
	ak, av := pick(&c, s, "address", raw.Address, "url", raw.URL)
	s.Address = strings.TrimSpace(c.String(ak, av))
	_, isString := av.(string)
	s.badAddress = av != nil && !isString
	s.ConnectTimeout = c.Timeout("connect_timeout", raw.ConnectTimeout, DefaultConnectTimeout)
	s.ReadTimeout = c.Timeout("read_timeout", raw.ReadTimeout, DefaultReadTimeout)
	s.WriteTimeout = c.Timeout("write_timeout", raw.WriteTimeout, DefaultWriteTimeout)
	s.EOMTimeout = c.Timeout("eom_timeout", raw.EOMTimeout, DefaultEOMTimeout)
	vk, vv := pick(&c, s, "milter_version", raw.MilterVersion, "protocol", raw.Protocol)
	s.MilterVersion = c.Int(vk, vv, DefaultMilterVersion, MinMilterVersion, DefaultMilterVersion)
	s.MaxBody = c.Int("max_body", raw.MaxBody, maxMessage, MinMaxBody, math.MaxInt)
	s.Reuse = raw.Reuse == nil || c.Bool("reuse", raw.Reuse)
	switch m := raw.Macros.(type) {
	case nil:
	case map[string]any:
		t, errs := macros.ParseTable(m)
		for _, err := range errs {
			var te *macros.TableError
			if errors.As(err, &te) {
				c.Fail("macros."+te.Key, te.Err)
			}
		}
		s.Macros = t
	default:
		c.Fail("macros", fmt.Errorf("want a table (rename, alias, default, set, drop), got %T", raw.Macros))
	}
	return s, c.Errs
}

// pick returns the key and value of a renamed key: the new spelling, or
// the old one when only it is given (noted in s.Old). Both given is an
// error.
func pick(c *syntax.Checker, s *Settings, key string, val any, old string, oldVal any) (string, any) {
	switch {
	case oldVal == nil:
		return key, val
	case val != nil:
		c.Fail(old, fmt.Errorf("%s is the old spelling of %s: keep %s only", old, key, key))
		return key, val
	default:
		s.Old = append(s.Old, old)
		return old, oldVal
	}
}

// Validate checks what needs more than one key's value: the address, which
// is required, must parse, and must have a port to connect to. It fills
// Addr.
func (s *Settings) Validate() []error {
	var c syntax.Checker
	key := "address"
	if slices.Contains(s.Old, "url") {
		key = "url"
	}
	if s.Address == "" {
		if !s.badAddress {
			c.Fail(key, errors.New("missing (the milter's socket, e.g. inet:127.0.0.1:8891 or unix:/run/milter.sock; old spelling: url)"))
		}
	} else if a, err := syntax.ParseAddress(s.Address); err != nil {
		c.Fail(key, err)
	} else if a.Port() == 0 {
		c.Fail(key, fmt.Errorf("address %q: port 0 cannot be connected to", s.Address))
	} else {
		s.Addr = a
	}
	return c.Errs
}

// Config returns the client configuration of these settings: name is the
// backend's, maxPacket the largest packet accepted from it (the top-level
// max_backend_packet), log its logger.
func (s *Settings) Config(name string, maxPacket int, log *slog.Logger) Config {
	return Config{
		Name:           name,
		Network:        s.Addr.Network,
		Address:        s.Addr.Addr,
		ConnectTimeout: s.ConnectTimeout.Duration,
		ReadTimeout:    s.ReadTimeout.Duration,
		WriteTimeout:   s.WriteTimeout.Duration,
		EOMTimeout:     s.EOMTimeout.Duration,
		MaxVersion:     uint32(s.MilterVersion),
		MaxPacket:      maxPacket,
		MaxBody:        s.MaxBody,
		Reuse:          s.Reuse,
		Macros:         s.Macros,
		Log:            log,
	}
}

// NewBackend returns the backend these settings describe (see Config).
func (s *Settings) NewBackend(name string, maxPacket int, log *slog.Logger) pmult.Backend {
	return New(s.Config(name, maxPacket, log))
}
