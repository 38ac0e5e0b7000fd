// config.go: the keys of a [[backend]] table of type "callout" (name,
// type, on_failure, mode and log_level are the config package's), their
// validation and the backend they describe.
//
//	[[backend]]
//	name = "sav"
//	type = "callout"
//	calloutd = ""                    # a calloutd server; "": probe in process
//	probe_mode = "standard"          # standard (= mxfirst), mxonly, hostonly, hostfirst
//	probe_host = ""                  # mxonly/hostonly/hostfirst: the host or domain to ask
//	verify_recipients = false        # call-ahead at RCPT too
//	recipient_mode = "standard"      # as probe_mode, for recipients
//	recipient_host = ""              # e.g. the next hop of a relay or backup MX
//	ehlo = ""                        # EHLO name of probes; default the host name
//	mail_from = "<>"                 # MAIL FROM of probes
//	source_ip = ""                   # local address of probes
//	smtp_port = 25
//	dns_servers = []                 # default /etc/resolv.conf's
//	dns_timeout = "3s"
//	probe_networks = []              # private/loopback networks that may be probed
//	connect_timeout = "10s"          # soft timeouts (mailfromd's)
//	greeting_timeout = "30s"
//	io_timeout = "3s"
//	hard_connect_timeout = "5m"      # hard timeouts, background completion
//	hard_io_timeout = "5m"           # (MAIL 10m and QUIT 2m unless set)
//	max_wait = "20s"                 # the longest the client waits
//	cache = "bolt"                   # bolt, redis, memory, none
//	cache_file = "/var/lib/mailmux/callout-NAME.db"
//	redis_url = ""                   # cache = "redis"
//	redis_prefix = "mailmux:callout:"
//	cache_positive = "24h"
//	cache_negative = "12h"
//	max_pending = 1000
//	domain_concurrency = 2
//	domain_rate = 10                 # probes a second per domain; 0: no limit
//	verdict_success = "continue"     # and verdict_not_found, verdict_no_mail_host,
//	                                 # verdict_temp_failure, verdict_failure, verdict_timeout;
//	                                 # recipient_verdict_* at RCPT
//	tag_header = "X-Sender-Verify"
//	tag_macro = "{sender_verify}"    # set by a tag verdict for the backends after; "none": not set
//	recipient_tag_macro = "{rcpt_verify}"
//	skip_clients = []                # CIDR
//	skip_senders = []                # user@domain, domain, .domain (and subdomains)
//	skip_macro = ""                  # e.g. "spf_result"
//	skip_macro_values = ["pass"]
//	own_addresses = []               # more prober addresses (loop avoidance)
//	own_helo = []                    # more prober EHLO names

package callout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// Defaults of the keys of a callout backend.
const (
	DefaultMaxWait           = 20 * time.Second
	DefaultCacheDir          = "/var/lib/mailmux"
	DefaultCache             = "bolt"
	DefaultSMTPPort          = 25
	DefaultDNSTimeout        = 3 * time.Second
	DefaultConnectTimeout    = 10 * time.Second
	DefaultGreetingTimeout   = 30 * time.Second
	DefaultIOTimeout         = 3 * time.Second
	DefaultMaxPending        = 1000
	DefaultDomainConcurrency = 2
	DefaultDomainRate        = 10
)

// Settings are the parsed keys of a callout backend.
type Settings struct {
	Calloutd     syntax.Address
	Sender       Target
	Recipient    *Target
	Ehlo         string
	MailFrom     string
	SourceIP     netip.Addr
	SMTPPort     int
	DNSServers   []string
	DNSTimeout   time.Duration
	ProbeNets    []netip.Prefix
	Soft, Hard   smtpprobe.Timeouts
	MaxWait      time.Duration
	Cache        string
	CacheFile    string
	RedisURL     string
	RedisPrefix  string
	Positive     time.Duration
	Negative     time.Duration
	MaxPending   int
	DomainConc   int
	DomainRate   int
	TagHeader    string
	TagMacro     string // "" none
	RcptTagMacro string // "" none
	Skip         Skip
	modeNames    [2]string
	cacheFileSet bool
}

type rawSettings struct {
	Calloutd           any `toml:"calloutd"`
	ProbeMode          any `toml:"probe_mode"`
	ProbeHost          any `toml:"probe_host"`
	VerifyRecipients   any `toml:"verify_recipients"`
	RecipientMode      any `toml:"recipient_mode"`
	RecipientHost      any `toml:"recipient_host"`
	Ehlo               any `toml:"ehlo"`
	MailFrom           any `toml:"mail_from"`
	SourceIP           any `toml:"source_ip"`
	SMTPPort           any `toml:"smtp_port"`
	DNSServers         any `toml:"dns_servers"`
	DNSTimeout         any `toml:"dns_timeout"`
	ProbeNetworks      any `toml:"probe_networks"`
	ConnectTimeout     any `toml:"connect_timeout"`
	GreetingTimeout    any `toml:"greeting_timeout"`
	IOTimeout          any `toml:"io_timeout"`
	HardConnectTimeout any `toml:"hard_connect_timeout"`
	HardIOTimeout      any `toml:"hard_io_timeout"`
	MaxWait            any `toml:"max_wait"`
	Cache              any `toml:"cache"`
	CacheFile          any `toml:"cache_file"`
	RedisURL           any `toml:"redis_url"`
	RedisPrefix        any `toml:"redis_prefix"`
	CachePositive      any `toml:"cache_positive"`
	CacheNegative      any `toml:"cache_negative"`
	MaxPending         any `toml:"max_pending"`
	DomainConcurrency  any `toml:"domain_concurrency"`
	DomainRate         any `toml:"domain_rate"`
	VerdictSuccess     any `toml:"verdict_success"`
	VerdictNotFound    any `toml:"verdict_not_found"`
	VerdictNoMailHost  any `toml:"verdict_no_mail_host"`
	VerdictTempFailure any `toml:"verdict_temp_failure"`
	VerdictFailure     any `toml:"verdict_failure"`
	VerdictTimeout     any `toml:"verdict_timeout"`
	RVerdictSuccess    any `toml:"recipient_verdict_success"`
	RVerdictNotFound   any `toml:"recipient_verdict_not_found"`
	RVerdictNoMailHost any `toml:"recipient_verdict_no_mail_host"`
	RVerdictTempFail   any `toml:"recipient_verdict_temp_failure"`
	RVerdictFailure    any `toml:"recipient_verdict_failure"`
	RVerdictTimeout    any `toml:"recipient_verdict_timeout"`
	TagHeader          any `toml:"tag_header"`
	TagMacro           any `toml:"tag_macro"`
	RecipientTagMacro  any `toml:"recipient_tag_macro"`
	SkipClients        any `toml:"skip_clients"`
	SkipSenders        any `toml:"skip_senders"`
	SkipMacro          any `toml:"skip_macro"`
	SkipMacroValues    any `toml:"skip_macro_values"`
	OwnAddresses       any `toml:"own_addresses"`
	OwnHelo            any `toml:"own_helo"`
}

// Keys lists the TOML keys of a callout backend.
func Keys() []string {
	t := reflect.TypeOf(rawSettings{})
	keys := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		keys = append(keys, t.Field(i).Tag.Get("toml"))
	}
	return keys
}

// Renamed maps old key spellings (none yet).
func Renamed() map[string]string { return map[string]string{} }

// strList reads an array of strings.
func strList(c *syntax.Checker, key string, val any) []string {
	switch x := val.(type) {
	case nil:
		return nil
	case []any:
		var out []string
		for i, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, strings.TrimSpace(s))
			} else {
				c.Fail(fmt.Sprintf("%s[%d]", key, i), syntax.WantErr("a string", e))
			}
		}
		return out
	default:
		c.Fail(key, syntax.WantErr("an array of strings", val))
		return nil
	}
}

// prefixes reads an array of CIDR networks (a bare address is a /32 or /128).
func prefixes(c *syntax.Checker, key string, val any) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range strList(c, key, val) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				c.Fail(fmt.Sprintf("%s[%d]", key, i), fmt.Errorf("%q is not a network (CIDR) or address", s))
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

func mode(c *syntax.Checker, key string, val any) smtpprobe.Mode {
	m := c.Enum(key, val, "standard", "probe mode", "standard", "mxfirst", "mxonly", "hostonly", "hostfirst")
	if m == "standard" {
		return smtpprobe.MXFirst
	}
	md, _ := smtpprobe.ParseMode(m)
	return md
}

func verdicts(c *syntax.Checker, prefix string, def Verdicts, vals [numOutcomes]any) Verdicts {
	v := def
	for o, val := range vals {
		key := prefix + Outcome(o).String()
		s := c.String(key, val)
		if s == "" {
			continue
		}
		a, err := ParseAction(s, def[o])
		if err != nil {
			c.Fail(key, err)
			continue
		}
		v[o] = a
	}
	return v
}

// ParseConfig reads the keys of one callout [[backend]] table.
func ParseConfig(decode func(v any) error) (*Settings, []error) {
	var raw rawSettings
	var c syntax.Checker
	if err := decode(&raw); err != nil {
		c.Fail("", err)
		return &Settings{}, c.Errs
	}
	s := &Settings{}
	if a := strings.TrimSpace(c.String("calloutd", raw.Calloutd)); a != "" {
		if addr, err := syntax.ParseAddress(a); err != nil {
			c.Fail("calloutd", err)
		} else {
			s.Calloutd = addr
		}
	}
	s.Sender.Mode = mode(&c, "probe_mode", raw.ProbeMode)
	s.Sender.Host = strings.TrimSpace(c.String("probe_host", raw.ProbeHost))
	s.Sender.Verdicts = verdicts(&c, "verdict_", SenderVerdicts(), [numOutcomes]any{raw.VerdictSuccess,
		raw.VerdictNotFound, raw.VerdictNoMailHost, raw.VerdictTempFailure, raw.VerdictFailure, raw.VerdictTimeout})
	rv := verdicts(&c, "recipient_verdict_", RecipientVerdicts(), [numOutcomes]any{raw.RVerdictSuccess,
		raw.RVerdictNotFound, raw.RVerdictNoMailHost, raw.RVerdictTempFail, raw.RVerdictFailure, raw.RVerdictTimeout})
	if c.Bool("verify_recipients", raw.VerifyRecipients) {
		s.Recipient = &Target{Mode: mode(&c, "recipient_mode", raw.RecipientMode),
			Host: strings.TrimSpace(c.String("recipient_host", raw.RecipientHost)), Verdicts: rv}
	}
	s.modeNames = [2]string{c.String("probe_mode", raw.ProbeMode), c.String("recipient_mode", raw.RecipientMode)}
	s.Ehlo = strings.TrimSpace(c.String("ehlo", raw.Ehlo))
	s.MailFrom = strings.TrimSpace(c.String("mail_from", raw.MailFrom))
	if ip := strings.TrimSpace(c.String("source_ip", raw.SourceIP)); ip != "" {
		if a, err := netip.ParseAddr(ip); err != nil {
			c.Fail("source_ip", fmt.Errorf("%q is not an IP address", ip))
		} else {
			s.SourceIP = a.Unmap()
		}
	}
	s.SMTPPort = c.Int("smtp_port", raw.SMTPPort, DefaultSMTPPort, 1, 65535)
	s.DNSServers = strList(&c, "dns_servers", raw.DNSServers)
	s.DNSTimeout = c.Timeout("dns_timeout", raw.DNSTimeout, DefaultDNSTimeout).Duration
	s.ProbeNets = prefixes(&c, "probe_networks", raw.ProbeNetworks)
	conn := c.Timeout("connect_timeout", raw.ConnectTimeout, DefaultConnectTimeout).Duration
	greet := c.Timeout("greeting_timeout", raw.GreetingTimeout, DefaultGreetingTimeout).Duration
	io := c.Timeout("io_timeout", raw.IOTimeout, DefaultIOTimeout).Duration
	s.Soft = smtpprobe.Timeouts{Connect: conn, Initial: greet, Helo: io, Mail: io, Rcpt: io, Rset: io, Quit: io}
	s.Hard = smtpprobe.HardTimeouts()
	if raw.HardConnectTimeout != nil {
		d := c.Timeout("hard_connect_timeout", raw.HardConnectTimeout, s.Hard.Connect).Duration
		s.Hard.Connect, s.Hard.Initial = d, d
	}
	if raw.HardIOTimeout != nil {
		d := c.Timeout("hard_io_timeout", raw.HardIOTimeout, s.Hard.Helo).Duration
		s.Hard.Helo, s.Hard.Mail, s.Hard.Rcpt, s.Hard.Rset, s.Hard.Quit = d, d, d, d, d
	}
	s.MaxWait = c.Timeout("max_wait", raw.MaxWait, DefaultMaxWait).Duration
	s.Cache = c.Enum("cache", raw.Cache, DefaultCache, "cache kind", "bolt", "redis", "memory", "none")
	s.CacheFile = strings.TrimSpace(c.String("cache_file", raw.CacheFile))
	s.cacheFileSet = s.CacheFile != ""
	s.RedisURL = strings.TrimSpace(c.String("redis_url", raw.RedisURL))
	s.RedisPrefix = c.String("redis_prefix", raw.RedisPrefix)
	s.Positive = c.Timeout("cache_positive", raw.CachePositive, cache.DefaultPositive).Duration
	s.Negative = c.Timeout("cache_negative", raw.CacheNegative, cache.DefaultNegative).Duration
	s.MaxPending = c.Int("max_pending", raw.MaxPending, DefaultMaxPending, 1, math.MaxInt)
	s.DomainConc = c.Int("domain_concurrency", raw.DomainConcurrency, DefaultDomainConcurrency, 1, math.MaxInt)
	s.DomainRate = c.Int("domain_rate", raw.DomainRate, DefaultDomainRate, 0, math.MaxInt)
	s.TagHeader = strings.TrimSpace(c.String("tag_header", raw.TagHeader))
	if s.TagHeader == "" {
		s.TagHeader = DefaultTagHeader
	} else if strings.ContainsAny(s.TagHeader, ": \t\r\n") {
		c.Fail("tag_header", fmt.Errorf("%q is not a header name", s.TagHeader))
	}
	s.TagMacro = tagMacro(&c, "tag_macro", raw.TagMacro, DefaultTagMacro)
	s.RcptTagMacro = tagMacro(&c, "recipient_tag_macro", raw.RecipientTagMacro, DefaultRecipientTagMacro)
	s.Skip.Clients = prefixes(&c, "skip_clients", raw.SkipClients)
	s.Skip.Senders = strList(&c, "skip_senders", raw.SkipSenders)
	s.Skip.Macro = strings.Trim(strings.TrimSpace(c.String("skip_macro", raw.SkipMacro)), "{}")
	s.Skip.MacroValues = strList(&c, "skip_macro_values", raw.SkipMacroValues)
	if raw.SkipMacroValues == nil {
		s.Skip.MacroValues = []string{"pass"}
	}
	for _, p := range prefixes(&c, "own_addresses", raw.OwnAddresses) {
		s.Skip.OwnAddresses = append(s.Skip.OwnAddresses, p.Addr())
	}
	s.Skip.OwnHelo = strList(&c, "own_helo", raw.OwnHelo)
	return s, c.Errs
}

// Validate checks what needs several keys: hosts of the modes that need
// one, the cache kind's keys, and what a calloutd server does not take.
func (s *Settings) Validate() []error {
	var c syntax.Checker
	if s.Sender.Mode.NeedsHost() && s.Sender.Host == "" {
		c.Fail("probe_host", fmt.Errorf("probe_mode %q needs probe_host (the host or domain to ask)", s.Sender.Mode))
	}
	if s.Recipient != nil && s.Recipient.Mode.NeedsHost() && s.Recipient.Mode != smtpprobe.MXOnly && s.Recipient.Host == "" {
		c.Fail("recipient_host", fmt.Errorf("recipient_mode %q needs recipient_host (the next hop)", s.Recipient.Mode))
	}
	if s.Cache == "redis" && s.RedisURL == "" {
		c.Fail("redis_url", errors.New(`missing (cache = "redis" needs redis_url, e.g. redis://127.0.0.1:6379/0)`))
	}
	if s.Cache != "redis" && s.RedisURL != "" {
		c.Fail("redis_url", fmt.Errorf(`set, but cache is %q (set cache = "redis")`, s.Cache))
	}
	return c.Errs
}

// Config returns the backend configuration of these settings.
func (s *Settings) Config(name string, log *slog.Logger) Config {
	own := s.Skip
	ehlo := s.Ehlo
	if ehlo == "" {
		ehlo = smtpprobe.DefaultEhlo()
	}
	own.OwnHelo = append([]string{ehlo}, own.OwnHelo...)
	if s.SourceIP.IsValid() {
		own.OwnAddresses = append([]netip.Addr{s.SourceIP}, own.OwnAddresses...)
	}
	p := &smtpprobe.Prober{
		Resolver: &smtpprobe.Resolver{Servers: s.DNSServers, Timeout: s.DNSTimeout},
		Port:     s.SMTPPort, SourceIP: s.SourceIP, Ehlo: ehlo, MailFrom: s.MailFrom, Timeouts: s.Soft,
	}
	p.DialContext = guardDial(p, s.ProbeNets, log)
	rate := float64(s.DomainRate)
	if rate == 0 {
		rate = -1
	}
	cfg := Config{
		Name: name, Log: log, Sender: s.Sender, Recipient: s.Recipient, Calloutd: s.Calloutd,
		Prober: p, MaxPending: s.MaxPending, DomainConcurrency: s.DomainConc, DomainRate: rate,
		Soft: s.Soft, Hard: s.Hard, MaxWait: s.MaxWait, Skip: own, TagHeader: s.TagHeader,
		TagMacro: s.TagMacro, RecipientTagMacro: s.RcptTagMacro,
	}
	if s.Cache != "none" {
		cfg.OpenCache = s.CacheOpener(name)
		cfg.OpenStore, cfg.CacheLocation = s.StoreOpener(name), s.CacheLocation(name)
		cfg.CachePositive, cfg.CacheNegative = s.Positive, s.Negative
	}
	return cfg
}

// Defaults of tag_macro and recipient_tag_macro.
const (
	DefaultTagMacro          = "{sender_verify}"
	DefaultRecipientTagMacro = "{rcpt_verify}"
)

// tagMacro reads a tag macro key: "" the default, "none" no macro.
func tagMacro(c *syntax.Checker, key string, val any, def string) string {
	v := strings.TrimSpace(c.String(key, val))
	switch {
	case v == "":
		return def
	case strings.EqualFold(v, "none"):
		return ""
	}
	n := strings.TrimSuffix(strings.TrimPrefix(v, "{"), "}")
	if n == "" || strings.ContainsAny(n, "{} \t\r\n\x00") {
		c.Fail(key, fmt.Errorf("%q is not a macro name (want e.g. %q, or \"none\")", v, def))
		return ""
	}
	return macros.Wire(n)
}

// CacheFilePath is the bbolt file of a backend named name.
func (s *Settings) CacheFilePath(name string) string {
	if s.cacheFileSet {
		return s.CacheFile
	}
	return DefaultCacheDir + "/callout-" + name + ".db"
}

// CacheLocation names where the cache of a backend named name lives, the
// key of the process's open stores (cache.Handles): "bolt:" and the
// absolute file, "redis:" the URL and the prefix, "memory:" the backend's
// name (a memory cache is kept across reloads while a backend of that
// name uses it), "" for cache "none".
func (s *Settings) CacheLocation(name string) string {
	switch s.Cache {
	case "none":
		return ""
	case "memory":
		return "memory:" + name
	case "redis":
		p := s.RedisPrefix
		if p == "" {
			p = cache.DefaultRedisPrefix
		}
		return "redis:" + s.RedisURL + " " + p
	}
	f := s.CacheFilePath(name)
	if abs, err := filepath.Abs(f); err == nil {
		f = abs
	}
	return "bolt:" + f
}

// StoreOpener returns the function that opens the configured store (nil
// store for cache "none").
func (s *Settings) StoreOpener(name string) func(ctx context.Context) (cache.Store, error) {
	kind, file, url, prefix := s.Cache, s.CacheFilePath(name), s.RedisURL, s.RedisPrefix
	return func(ctx context.Context) (cache.Store, error) {
		switch kind {
		case "memory":
			return &cache.Memory{}, nil
		case "redis":
			r, err := cache.OpenRedis(ctx, url, prefix)
			if err != nil {
				return nil, err
			}
			return r, nil
		case "none":
			return nil, nil
		}
		b, err := cache.OpenBolt(file)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
}

// CacheOpener returns the function that opens the configured cache
// (for the backend outside pmult's process-owned stores, and for cache
// administration from the file).
func (s *Settings) CacheOpener(name string) func(ctx context.Context) (*cache.Cache, error) {
	open, pos, neg := s.StoreOpener(name), s.Positive, s.Negative
	return func(ctx context.Context) (*cache.Cache, error) {
		st, err := open(ctx)
		if err != nil || st == nil {
			return nil, err
		}
		return &cache.Cache{Store: st, Positive: pos, Negative: neg}, nil
	}
}

// NewBackend returns the backend these settings describe (maxPacket is
// not used: nothing is read from a milter).
func (s *Settings) NewBackend(name string, maxPacket int, log *slog.Logger) pmult.Backend {
	return New(s.Config(name, log))
}
