// config.go: calloutd's TOML configuration: schema, defaults, and
// validation that reports every problem at once (exit 78 with
// --config-lint). Statements follow mailfromd's calloutd where they exist
// (listen, backlog, max-instances, source-ip, ehlo-domain,
// mail-from-address, smtp-timeout soft/hard, transcript, pidfile), written
// with underscores; addresses and durations take every dialect package
// config accepts ("inet://127.0.0.1:3535", "inet:3535@127.0.0.1";
// "10s", "2 hours 35 seconds", 300).
//
// Defaults: listen inet://127.0.0.1:3535, backlog 8, max_instances 0 (no
// limit), idle_timeout 5m, mail_from_address "<>", starttls ondemand,
// smtp_port 25, dns_timeout 3s, mx_walk "postfix", soft timeouts 10s,
// 30s, 3s×5 and hard 5m, 5m, 5m, 10m, 5m, 5m, 2m (mailfromd's), cache
// bolt at /var/lib/mailmux/calloutd.db, positive 1 day, negative 12h,
// limits as package callout's. user and group (default none) are the
// account calloutd switches to after opening its sockets, started as root.

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/hashicorp/go-multierror"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/config/syntax"
)

// Defaults of calloutd's own settings.
const (
	DefaultListen    = "inet://127.0.0.1:3535"
	DefaultBacklog   = 8
	DefaultCachePath = "/var/lib/mailmux/calloutd.db"
)

// rawDur holds a duration as written, so that a bad one is reported with
// the others instead of stopping the decoding.
type rawDur struct{ v any }

// UnmarshalTOML implements toml.Unmarshaler.
func (r *rawDur) UnmarshalTOML(v any) error {
	r.v = v
	return nil
}

type stageTimeouts struct {
	Connection      *rawDur `toml:"connection"`
	InitialResponse *rawDur `toml:"initial_response"`
	Helo            *rawDur `toml:"helo"`
	Mail            *rawDur `toml:"mail"`
	Rcpt            *rawDur `toml:"rcpt"`
	Rset            *rawDur `toml:"rset"`
	Quit            *rawDur `toml:"quit"`
}

// fileConfig is the TOML schema.
type fileConfig struct {
	Listen          any      `toml:"listen"`
	Backlog         *int     `toml:"backlog"`
	MaxInstances    *int     `toml:"max_instances"`
	IdleTimeout     *rawDur  `toml:"idle_timeout"`
	ProbeTimeout    *rawDur  `toml:"probe_timeout"`
	PIDFile         string   `toml:"pidfile"`
	SourceIP        string   `toml:"source_ip"`
	EhloDomain      string   `toml:"ehlo_domain"`
	MailFromAddress string   `toml:"mail_from_address"`
	Transcript      bool     `toml:"transcript"`
	StartTLS        string   `toml:"starttls"`
	SMTPPort        *int     `toml:"smtp_port"`
	DNSServers      []string `toml:"dns_servers"`
	ResolvConf      string   `toml:"resolv_conf"`
	DNSTimeout      *rawDur  `toml:"dns_timeout"`
	MXWalk          string   `toml:"mx_walk"`
	MaxAddresses    *int     `toml:"max_addresses"`
	CatchAll        bool     `toml:"catch_all"`
	Background      *bool    `toml:"background"`
	LogLevel        string   `toml:"log_level"`
	MetricsListen   string   `toml:"metrics_listen"`
	User            string   `toml:"user"`
	Group           string   `toml:"group"`
	SMTPTimeout     struct {
		Soft stageTimeouts `toml:"soft"`
		Hard stageTimeouts `toml:"hard"`
	} `toml:"smtp_timeout"`
	Cache struct {
		Type             string  `toml:"type"`
		Path             string  `toml:"path"`
		RedisURL         string  `toml:"redis_url"`
		RedisPrefix      string  `toml:"redis_prefix"`
		PositiveExpire   *rawDur `toml:"positive_expire"`
		NegativeExpire   *rawDur `toml:"negative_expire"`
		DeadDomainExpire *rawDur `toml:"dead_domain_expire"`
		DownDomainExpire *rawDur `toml:"down_domain_expire"`
		CatchAllExpire   *rawDur `toml:"catch_all_expire"`
	} `toml:"cache"`
	Limits struct {
		DomainConcurrency *int     `toml:"domain_concurrency"`
		DomainRate        *float64 `toml:"domain_rate"`
		DomainBurst       *int     `toml:"domain_burst"`
		MaxPending        *int     `toml:"max_pending"`
		SessionQueue      *int     `toml:"session_queue"`
		RunParallel       *int     `toml:"run_parallel"`
		BackgroundWorkers *int     `toml:"background_workers"`
		BackgroundQueue   *int     `toml:"background_queue"`
	} `toml:"limits"`
}

// Config is the validated configuration.
type Config struct {
	Listen        []syntax.Address
	Backlog       int
	MaxInstances  int
	IdleTimeout   time.Duration
	ProbeTimeout  time.Duration
	PIDFile       string
	SourceIP      netip.Addr
	Ehlo          string
	MailFrom      string
	Transcript    bool
	StartTLS      smtpprobe.StartTLS
	SMTPPort      int
	DNSServers    []string
	ResolvConf    string
	DNSTimeout    time.Duration
	CalloutdWalk  bool
	MaxAddresses  int
	CatchAll      bool
	Background    bool
	LogLevel      string
	MetricsListen string
	Soft, Hard    smtpprobe.Timeouts
	// User and Group: the account calloutd switches to once its sockets,
	// pidfile and cache are open, when started as root ("": none).
	User, Group string

	CacheType                          string // bolt, redis, memory, none
	CachePath, RedisURL, RedisPrefix   string
	Positive, Negative, Dead, Down, CA time.Duration

	DomainConcurrency, DomainBurst, MaxPending, SessionQueue, RunParallel int
	DomainRate                                                            float64
	BgWorkers, BgQueue                                                    int
}

// loadConfig reads and validates a file; path "" gives the defaults.
func loadConfig(path string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("calloutd: %w", err)
		}
	} else {
		path = "built-in defaults"
	}
	return parseConfig(string(data), path)
}

func parseConfig(text, source string) (*Config, error) {
	var f fileConfig
	md, err := toml.Decode(text, &f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var errs *multierror.Error
	fail := func(key string, format string, args ...any) {
		errs = multierror.Append(errs, fmt.Errorf("%s: %s: %s", source, key, fmt.Sprintf(format, args...)))
	}
	for _, k := range md.Undecoded() {
		fail(k.String(), "unknown key")
	}
	if f.Group != "" && f.User == "" {
		fail("group", "group without user: set user too")
	}
	c := &Config{User: f.User, Group: f.Group, PIDFile: f.PIDFile, Transcript: f.Transcript, CatchAll: f.CatchAll, ResolvConf: f.ResolvConf,
		MetricsListen: f.MetricsListen, Ehlo: f.EhloDomain, MailFrom: f.MailFromAddress}

	var listen []string
	switch v := f.Listen.(type) {
	case nil:
		listen = []string{DefaultListen}
	case string:
		listen = []string{v}
	case []any:
		for i, x := range v {
			s, ok := x.(string)
			if !ok {
				fail(fmt.Sprintf("listen[%d]", i), "want a string")
				continue
			}
			listen = append(listen, s)
		}
	default:
		fail("listen", "want a string or an array of strings")
	}
	for _, l := range listen {
		a, err := syntax.ParseAddress(l)
		if err != nil {
			fail("listen", "%v", strings.TrimPrefix(err.Error(), "config: "))
			continue
		}
		c.Listen = append(c.Listen, a)
	}
	intv := func(key string, p *int, def, lo int) int {
		if p == nil {
			return def
		}
		if *p < lo {
			fail(key, "%d is too small (minimum %d)", *p, lo)
			return def
		}
		return *p
	}
	dur := func(key string, p *rawDur, def time.Duration, zeroOK bool) time.Duration {
		if p == nil {
			return def
		}
		var d syntax.Duration
		if err := d.UnmarshalTOML(p.v); err != nil {
			fail(key, "%s", strings.TrimPrefix(err.Error(), "config: "))
			return def
		}
		if d.Duration <= 0 && !zeroOK {
			fail(key, "must be positive")
			return def
		}
		return d.Duration
	}
	c.Backlog = intv("backlog", f.Backlog, DefaultBacklog, 1)
	c.MaxInstances = intv("max_instances", f.MaxInstances, 0, 0)
	c.IdleTimeout = dur("idle_timeout", f.IdleTimeout, callout.DefaultIdleTimeout, false)
	c.ProbeTimeout = dur("probe_timeout", f.ProbeTimeout, 0, true)
	if f.SourceIP != "" {
		a, err := netip.ParseAddr(f.SourceIP)
		if err != nil {
			fail("source_ip", "%q is not an IP address", f.SourceIP)
		}
		c.SourceIP = a
	}
	if c.MailFrom == "" {
		c.MailFrom = "<>"
	}
	if strings.ContainsAny(c.MailFrom+c.Ehlo, " \t\r\n") {
		fail("ehlo_domain/mail_from_address", "white space is not allowed")
	}
	switch f.StartTLS {
	case "":
		c.StartTLS = smtpprobe.StartTLSOnDemand
	default:
		s, err := smtpprobe.ParseStartTLS(f.StartTLS)
		if err != nil {
			fail("starttls", "unknown policy %q (want never, always or ondemand)", f.StartTLS)
		}
		c.StartTLS = s
	}
	c.SMTPPort = intv("smtp_port", f.SMTPPort, smtpprobe.DefaultPort, 1)
	if c.SMTPPort > 65535 {
		fail("smtp_port", "%d is out of range", c.SMTPPort)
	}
	c.DNSServers = f.DNSServers
	c.DNSTimeout = dur("dns_timeout", f.DNSTimeout, smtpprobe.DefaultDNSTimeout, false)
	switch f.MXWalk {
	case "", "postfix":
	case "calloutd":
		c.CalloutdWalk = true
	default:
		fail("mx_walk", "unknown walk %q (want postfix or calloutd)", f.MXWalk)
	}
	c.MaxAddresses = intv("max_addresses", f.MaxAddresses, smtpprobe.DefaultMaxAddresses, 1)
	c.Background = f.Background == nil || *f.Background
	c.LogLevel = f.LogLevel
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		fail("log_level", "%v", err)
	}
	stages := func(prefix string, s stageTimeouts, def smtpprobe.Timeouts) smtpprobe.Timeouts {
		return smtpprobe.Timeouts{
			Connect: dur(prefix+".connection", s.Connection, def.Connect, false),
			Initial: dur(prefix+".initial_response", s.InitialResponse, def.Initial, false),
			Helo:    dur(prefix+".helo", s.Helo, def.Helo, false),
			Mail:    dur(prefix+".mail", s.Mail, def.Mail, false),
			Rcpt:    dur(prefix+".rcpt", s.Rcpt, def.Rcpt, false),
			Rset:    dur(prefix+".rset", s.Rset, def.Rset, false),
			Quit:    dur(prefix+".quit", s.Quit, def.Quit, false),
		}
	}
	c.Soft = stages("smtp_timeout.soft", f.SMTPTimeout.Soft, smtpprobe.SoftTimeouts())
	c.Hard = stages("smtp_timeout.hard", f.SMTPTimeout.Hard, smtpprobe.HardTimeouts())

	fc := f.Cache
	c.CacheType = strings.ToLower(fc.Type)
	if c.CacheType == "" {
		c.CacheType = "bolt"
		if fc.RedisURL != "" {
			c.CacheType = "redis"
		}
	}
	c.CachePath, c.RedisURL, c.RedisPrefix = fc.Path, fc.RedisURL, fc.RedisPrefix
	switch c.CacheType {
	case "bolt":
		if c.CachePath == "" {
			c.CachePath = DefaultCachePath
		}
	case "redis":
		if c.RedisURL == "" {
			fail("cache.redis_url", "required with cache type redis")
		}
	case "memory", "none":
	default:
		fail("cache.type", "unknown type %q (want bolt, redis, memory or none)", fc.Type)
	}
	c.Positive = dur("cache.positive_expire", fc.PositiveExpire, cache.DefaultPositive, false)
	c.Negative = dur("cache.negative_expire", fc.NegativeExpire, cache.DefaultNegative, false)
	c.Dead = dur("cache.dead_domain_expire", fc.DeadDomainExpire, cache.DefaultDeadDomain, false)
	c.Down = dur("cache.down_domain_expire", fc.DownDomainExpire, cache.DefaultDomainDown, false)
	c.CA = dur("cache.catch_all_expire", fc.CatchAllExpire, cache.DefaultCatchAll, false)

	l := f.Limits
	c.DomainConcurrency = intv("limits.domain_concurrency", l.DomainConcurrency, callout.DefaultDomainConcurrency, 1)
	c.DomainRate = callout.DefaultDomainRate
	if l.DomainRate != nil {
		c.DomainRate = *l.DomainRate
		if c.DomainRate == 0 {
			c.DomainRate = -1 // 0 in the file: no rate limit
		}
	}
	c.DomainBurst = intv("limits.domain_burst", l.DomainBurst, callout.DefaultDomainBurst, 1)
	c.MaxPending = intv("limits.max_pending", l.MaxPending, callout.DefaultMaxPending, 1)
	c.SessionQueue = intv("limits.session_queue", l.SessionQueue, callout.DefaultMaxQueue, 1)
	c.RunParallel = intv("limits.run_parallel", l.RunParallel, callout.DefaultRunParallel, 1)
	c.BgWorkers = intv("limits.background_workers", l.BackgroundWorkers, callout.DefaultBgWorkers, 1)
	c.BgQueue = intv("limits.background_queue", l.BackgroundQueue, callout.DefaultBgQueue, 1)
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return c, nil
}

// configErrors lists the errors of loadConfig one by one.
func configErrors(err error) []error {
	var me *multierror.Error
	if errors.As(err, &me) {
		return me.Errors
	}
	return []error{err}
}
