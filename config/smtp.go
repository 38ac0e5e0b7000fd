// smtp.go: the [smtp] table: pmult's SMTP front end (adapters/smtp), its
// next hop (adapters/smtp/relay), limits and policies, and their
// validation. The table is plain data: internal/service builds the front
// and its relay from it, so config imports neither.
//
//	[smtp]
//	listen = ["in=inet:127.0.0.1:10025"]  # none: no SMTP front; names as in [milter] listen
//	mode = "before"             # before (smtpd_proxy_filter) or after (content_filter, reinjection)
//	next_hop = "inet:127.0.0.1:10026"   # required with listen
//	lmtp = false                # speak LMTP to the next hop
//	helo_name = ""              # EHLO/LHLO name to the next hop (default: hostname)
//	xforward = true             # forward the client (XFORWARD, else XCLIENT) to the next hop
//	next_hop_connect_timeout = "30s"
//	next_hop_command_timeout = "5m"
//	next_hop_data_timeout = "10m"
//	next_hop_cache = true       # reuse next-hop connections (Postfix smtp(8)'s connection cache)
//	next_hop_cache_size = 16    # idle next-hop connections kept at most
//	next_hop_reuse_limit = 0    # times a connection is reused at most (0: no limit; smtp_connection_reuse_count_limit)
//	next_hop_reuse_time = "300s"  # a connection this old is not reused (smtp_connection_reuse_time_limit)
//	next_hop_idle = "2s"        # an idle cached connection is closed after (smtp_connection_cache_time_limit)
//	hostname = ""               # greeting, macro j, loop marker value (default: os.Hostname)
//	trusted = []                # networks whose XCLIENT/XFORWARD are believed ("127.0.0.1", "10.0.0.0/8")
//	proxy_protocol = []         # listener names whose connections start with a PROXY v1/v2 header
//	max_connections = 0         # concurrent clients (0: no limit)
//	max_message = 10240000      # message_size_limit: 552 5.3.4 above it
//	max_header = 102400         # header_size_limit (one header, folded lines included)
//	max_recipients = 1000       # smtpd_recipient_limit: 452 4.5.3 above it
//	max_line = 2048             # line_length_limit for commands: 500 5.5.2 above it
//	max_errors = 20             # smtpd_hard_error_limit: 421 and close
//	timeout = "300s"            # smtpd_timeout: waiting for a command, each write
//	data_timeout = "300s"       # each read of the message text
//	data_deadline = "30m"       # the whole DATA stage
//	bare_lf = "normalize"       # smtpd_forbid_bare_newline: normalize or reject
//	forbid_unauth_pipelining = true  # smtpd_forbid_unauth_pipelining: 554 5.5.0 and close
//	quarantine = "header"       # header (deliver with quarantine_header), tempfail (451) or reject (550)
//	quarantine_header = "X-Mailmux-Quarantine"
//	loop_marker = "X-Mailmux-Filtered"   # header added to relayed mail; "-": none
//
// Everything but next_hop is optional; an absent table leaves the SMTP
// front off (the zero Smtp value).

package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
)

// Defaults of [smtp].
const (
	DefaultSMTPMode             = "before"
	DefaultSMTPMaxMessage       = 10240000
	DefaultSMTPMaxHeader        = 102400
	DefaultSMTPMaxRecipients    = 1000
	DefaultSMTPMaxLine          = 2048
	DefaultSMTPMaxErrors        = 20
	DefaultSMTPTimeout          = 300 * time.Second
	DefaultSMTPDataTimeout      = 300 * time.Second
	DefaultSMTPDataDeadline     = 30 * time.Minute
	DefaultSMTPConnectTimeout   = 30 * time.Second
	DefaultSMTPCommandTimeout   = 5 * time.Minute
	DefaultSMTPHopDataTimeout   = 10 * time.Minute
	DefaultSMTPHopCacheSize     = 16
	DefaultSMTPHopReuseTime     = 300 * time.Second
	DefaultSMTPHopIdle          = 2 * time.Second
	DefaultSMTPBareLF           = "normalize"
	DefaultSMTPQuarantine       = "header"
	DefaultSMTPQuarantineHeader = "X-Mailmux-Quarantine"
	DefaultSMTPLoopMarker       = "X-Mailmux-Filtered"
)

// Smtp is the [smtp] table.
type Smtp struct {
	Listen                 []string `toml:"listen"`
	Mode                   string   `toml:"mode"`
	NextHop                string   `toml:"next_hop"`
	LMTP                   bool     `toml:"lmtp"`
	HeloName               string   `toml:"helo_name"`
	XForward               bool     `toml:"xforward"`
	NextHopConnectTimeout  Duration `toml:"next_hop_connect_timeout"`
	NextHopCommandTimeout  Duration `toml:"next_hop_command_timeout"`
	NextHopDataTimeout     Duration `toml:"next_hop_data_timeout"`
	NextHopCache           bool     `toml:"next_hop_cache"`
	NextHopCacheSize       int      `toml:"next_hop_cache_size"`
	NextHopReuseLimit      int      `toml:"next_hop_reuse_limit"`
	NextHopReuseTime       Duration `toml:"next_hop_reuse_time"`
	NextHopIdle            Duration `toml:"next_hop_idle"`
	Hostname               string   `toml:"hostname"`
	Trusted                []string `toml:"trusted"`
	ProxyProtocol          []string `toml:"proxy_protocol"`
	MaxConnections         int      `toml:"max_connections"`
	MaxMessage             int      `toml:"max_message"`
	MaxHeader              int      `toml:"max_header"`
	MaxRecipients          int      `toml:"max_recipients"`
	MaxLine                int      `toml:"max_line"`
	MaxErrors              int      `toml:"max_errors"`
	Timeout                Duration `toml:"timeout"`
	DataTimeout            Duration `toml:"data_timeout"`
	DataDeadline           Duration `toml:"data_deadline"`
	BareLF                 string   `toml:"bare_lf"`
	ForbidUnauthPipelining bool     `toml:"forbid_unauth_pipelining"`
	Quarantine             string   `toml:"quarantine"`
	QuarantineHeader       string   `toml:"quarantine_header"`
	LoopMarker             string   `toml:"loop_marker"`

	// ListenAddrs and ListenNames are the parsed listen entries.
	ListenAddrs []Address `toml:"-"`
	ListenNames []string  `toml:"-"`
	// NextHopAddr is the parsed next_hop.
	NextHopAddr Address `toml:"-"`
	// TrustedNets are the parsed trusted entries (an address alone is
	// a /32 or /128).
	TrustedNets []netip.Prefix `toml:"-"`
}

type rawSmtp struct {
	Listen                 any `toml:"listen"`
	Mode                   any `toml:"mode"`
	NextHop                any `toml:"next_hop"`
	LMTP                   any `toml:"lmtp"`
	HeloName               any `toml:"helo_name"`
	XForward               any `toml:"xforward"`
	NextHopConnectTimeout  any `toml:"next_hop_connect_timeout"`
	NextHopCommandTimeout  any `toml:"next_hop_command_timeout"`
	NextHopDataTimeout     any `toml:"next_hop_data_timeout"`
	NextHopCache           any `toml:"next_hop_cache"`
	NextHopCacheSize       any `toml:"next_hop_cache_size"`
	NextHopReuseLimit      any `toml:"next_hop_reuse_limit"`
	NextHopReuseTime       any `toml:"next_hop_reuse_time"`
	NextHopIdle            any `toml:"next_hop_idle"`
	Hostname               any `toml:"hostname"`
	Trusted                any `toml:"trusted"`
	ProxyProtocol          any `toml:"proxy_protocol"`
	MaxConnections         any `toml:"max_connections"`
	MaxMessage             any `toml:"max_message"`
	MaxHeader              any `toml:"max_header"`
	MaxRecipients          any `toml:"max_recipients"`
	MaxLine                any `toml:"max_line"`
	MaxErrors              any `toml:"max_errors"`
	Timeout                any `toml:"timeout"`
	DataTimeout            any `toml:"data_timeout"`
	DataDeadline           any `toml:"data_deadline"`
	BareLF                 any `toml:"bare_lf"`
	ForbidUnauthPipelining any `toml:"forbid_unauth_pipelining"`
	Quarantine             any `toml:"quarantine"`
	QuarantineHeader       any `toml:"quarantine_header"`
	LoopMarker             any `toml:"loop_marker"`
}

// stringList reads a string or an array of strings.
func (s scope) stringList(field string, val any) (items []string, fields []string) {
	switch x := val.(type) {
	case nil:
	case string:
		return []string{x}, []string{field}
	case []any:
		for i, e := range x {
			f := fmt.Sprintf("%s[%d]", field, i)
			if str, ok := e.(string); ok {
				items, fields = append(items, str), append(fields, f)
			} else {
				s.fail(f, wantErr("a string", e))
			}
		}
	default:
		s.fail(field, wantErr("a string or an array of strings", val))
	}
	return items, fields
}

// smtp validates the [smtp] table (raw is nil when it is absent).
func (v *validator) smtp(cfg *Config, raw *rawSmtp) {
	if raw == nil {
		return
	}
	top := scope{v: v, backend: -1}
	f := func(k string) string { return "smtp." + k }
	m := &cfg.Smtp
	m.Mode = top.enum(f("mode"), raw.Mode, DefaultSMTPMode, "mode", "before", "after")
	m.NextHop = strings.TrimSpace(top.str(f("next_hop"), raw.NextHop))
	m.LMTP = top.boolean(f("lmtp"), raw.LMTP)
	m.HeloName = top.str(f("helo_name"), raw.HeloName)
	m.XForward = raw.XForward == nil || top.boolean(f("xforward"), raw.XForward)
	m.NextHopConnectTimeout = top.timeout(f("next_hop_connect_timeout"), raw.NextHopConnectTimeout, DefaultSMTPConnectTimeout)
	m.NextHopCommandTimeout = top.timeout(f("next_hop_command_timeout"), raw.NextHopCommandTimeout, DefaultSMTPCommandTimeout)
	m.NextHopDataTimeout = top.timeout(f("next_hop_data_timeout"), raw.NextHopDataTimeout, DefaultSMTPHopDataTimeout)
	m.NextHopCache = raw.NextHopCache == nil || top.boolean(f("next_hop_cache"), raw.NextHopCache)
	m.NextHopCacheSize = top.integer(f("next_hop_cache_size"), raw.NextHopCacheSize, DefaultSMTPHopCacheSize, 1, 100000)
	m.NextHopReuseLimit = top.integer(f("next_hop_reuse_limit"), raw.NextHopReuseLimit, 0, 0, math.MaxInt)
	m.NextHopReuseTime = top.timeout(f("next_hop_reuse_time"), raw.NextHopReuseTime, DefaultSMTPHopReuseTime)
	m.NextHopIdle = top.timeout(f("next_hop_idle"), raw.NextHopIdle, DefaultSMTPHopIdle)
	m.Hostname = top.str(f("hostname"), raw.Hostname)
	m.MaxConnections = top.integer(f("max_connections"), raw.MaxConnections, 0, 0, math.MaxInt)
	m.MaxMessage = top.integer(f("max_message"), raw.MaxMessage, DefaultSMTPMaxMessage, 0, math.MaxInt)
	m.MaxHeader = top.integer(f("max_header"), raw.MaxHeader, DefaultSMTPMaxHeader, 1024, math.MaxInt)
	m.MaxRecipients = top.integer(f("max_recipients"), raw.MaxRecipients, DefaultSMTPMaxRecipients, 1, math.MaxInt)
	m.MaxLine = top.integer(f("max_line"), raw.MaxLine, DefaultSMTPMaxLine, 512, 1<<20)
	m.MaxErrors = top.integer(f("max_errors"), raw.MaxErrors, DefaultSMTPMaxErrors, 1, math.MaxInt)
	m.Timeout = top.timeout(f("timeout"), raw.Timeout, DefaultSMTPTimeout)
	m.DataTimeout = top.timeout(f("data_timeout"), raw.DataTimeout, DefaultSMTPDataTimeout)
	m.DataDeadline = top.timeout(f("data_deadline"), raw.DataDeadline, DefaultSMTPDataDeadline)
	m.BareLF = top.enum(f("bare_lf"), raw.BareLF, DefaultSMTPBareLF, "bare LF policy", "normalize", "reject")
	m.ForbidUnauthPipelining = raw.ForbidUnauthPipelining == nil || top.boolean(f("forbid_unauth_pipelining"), raw.ForbidUnauthPipelining)
	m.Quarantine = top.enum(f("quarantine"), raw.Quarantine, DefaultSMTPQuarantine, "quarantine action", "header", "tempfail", "reject")
	m.QuarantineHeader = top.str(f("quarantine_header"), raw.QuarantineHeader)
	if m.QuarantineHeader == "" {
		m.QuarantineHeader = DefaultSMTPQuarantineHeader
	}
	m.LoopMarker = top.str(f("loop_marker"), raw.LoopMarker)
	if m.LoopMarker == "" {
		m.LoopMarker = DefaultSMTPLoopMarker
	}
	for _, h := range []struct{ key, val string }{{"quarantine_header", m.QuarantineHeader}, {"loop_marker", m.LoopMarker}} {
		if h.val != "-" && !validHeaderName(h.val) {
			top.fail(f(h.key), fmt.Errorf("%q is not a header name", h.val))
		}
	}
	if m.MaxMessage > 0 && m.MaxMessage < MinPacket {
		top.fail(f("max_message"), fmt.Errorf("%d is too small (minimum %d, or 0 for no limit)", m.MaxMessage, MinPacket))
	}

	items, fields := top.stringList(f("listen"), raw.Listen)
	for i, s := range items {
		m.Listen = append(m.Listen, s)
		name, addr := splitListenName(s)
		a, err := ParseAddress(addr)
		if err != nil {
			top.fail(fields[i], err)
			continue
		}
		for _, o := range append(append([]Address(nil), cfg.Milter.ListenAddrs...), cfg.Meta1.ListenAddrs...) {
			if o.Network == a.Network && o.Addr == a.Addr {
				top.fail(fields[i], fmt.Errorf("address %q is also a milter or MeTA1 listen address", s))
			}
		}
		for j, o := range m.ListenAddrs {
			if o.Network == a.Network && o.Addr == a.Addr {
				top.fail(fields[i], fmt.Errorf("address %q: same as %s", s, fields[j]))
			}
		}
		v.claimName(fields[i], name)
		m.ListenAddrs = append(m.ListenAddrs, a)
		m.ListenNames = append(m.ListenNames, name)
	}
	if m.NextHop != "" {
		a, err := ParseAddress(m.NextHop)
		if err != nil {
			top.fail(f("next_hop"), err)
		} else {
			m.NextHopAddr = a
			for _, l := range m.ListenAddrs {
				if l.Network == a.Network && l.Addr == a.Addr {
					top.fail(f("next_hop"), fmt.Errorf("%q is one of the SMTP front's own listen addresses (a loop)", m.NextHop))
				}
			}
		}
	} else if len(m.ListenAddrs) > 0 {
		top.fail(f("next_hop"), errors.New("missing: the SMTP front needs a next hop to relay to"))
	}

	items, fields = top.stringList(f("trusted"), raw.Trusted)
	for i, s := range items {
		m.Trusted = append(m.Trusted, s)
		p, err := parseNet(s)
		if err != nil {
			top.fail(fields[i], err)
			continue
		}
		m.TrustedNets = append(m.TrustedNets, p)
	}
	items, fields = top.stringList(f("proxy_protocol"), raw.ProxyProtocol)
	for i, s := range items {
		m.ProxyProtocol = append(m.ProxyProtocol, s)
		found := false
		for _, n := range m.ListenNames {
			found = found || n == s
		}
		if !found {
			top.fail(fields[i], fmt.Errorf("no [smtp] listener is named %q (name one in listen: \"%s=inet:...\")", s, s))
		}
	}
}

// parseNet parses "10.0.0.0/8" or a single address.
func parseNet(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad network %q: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q: %w", s, err)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 32 || s[i] >= 127 || s[i] == ':' {
			return false
		}
	}
	return true
}
