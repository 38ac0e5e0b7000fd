// resolve.go: the DNS side of a probe: MX lookup ordered by preference and
// A/AAAA lookup, over UDP with a TCP retry on truncation, with
// github.com/miekg/dns.
//
// Tunables (Resolver fields): Servers (default: the nameservers of
// /etc/resolv.conf, or ResolvConf), Timeout per query (default 3s),
// Attempts per server (default 2).

package smtpprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Resolver defaults.
const (
	DefaultDNSTimeout  = 3 * time.Second
	DefaultDNSAttempts = 2
	DefaultResolvConf  = "/etc/resolv.conf"
)

// Resolver looks up MX and address records. The zero value reads
// /etc/resolv.conf on first use. It is safe for concurrent use.
type Resolver struct {
	// Servers are "host:port" (or bare IP, port 53) name servers, tried
	// in order. Empty: those of ResolvConf.
	Servers []string
	// ResolvConf is read when Servers is empty; default /etc/resolv.conf.
	ResolvConf string
	// Timeout is the limit of one query to one server (default 3s).
	Timeout time.Duration
	// Attempts is how many times each server is asked (default 2).
	Attempts int

	once    sync.Once
	servers []string
	initErr error
}

// ErrNXDomain is returned when the name does not exist.
var ErrNXDomain = errors.New("no such domain")

// TempError is a DNS failure that may go away (timeout, SERVFAIL, ...).
type TempError struct{ Err error }

func (e *TempError) Error() string { return "dns: " + e.Err.Error() }
func (e *TempError) Unwrap() error { return e.Err }

func (r *Resolver) init() {
	r.once.Do(func() {
		for _, s := range r.Servers {
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
			}
			r.servers = append(r.servers, s)
		}
		if len(r.servers) > 0 {
			return
		}
		path := r.ResolvConf
		if path == "" {
			path = DefaultResolvConf
		}
		cc, err := dns.ClientConfigFromFile(path)
		if err != nil {
			r.initErr = fmt.Errorf("read %s: %w", path, err)
			return
		}
		for _, s := range cc.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
		}
		if len(r.servers) == 0 {
			r.initErr = fmt.Errorf("%s names no nameserver", path)
		}
	})
}

// query asks the servers in turn for name/qtype and returns the answer
// message (rcode success or NXDOMAIN).
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	r.init()
	if r.initErr != nil {
		return nil, &TempError{r.initErr}
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultDNSTimeout
	}
	attempts := r.Attempts
	if attempts <= 0 {
		attempts = DefaultDNSAttempts
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	var lastErr error
	for a := 0; a < attempts; a++ {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, &TempError{err}
			}
			resp, err := r.exchange(ctx, m, srv, timeout)
			if err != nil {
				lastErr = err
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return resp, nil
			default:
				lastErr = fmt.Errorf("%s %s: %s from %s", name, dns.TypeToString[qtype], dns.RcodeToString[resp.Rcode], srv)
			}
		}
	}
	return nil, &TempError{fmt.Errorf("%s %s: %w", name, dns.TypeToString[qtype], lastErr)}
}

// MaxCNAME bounds the aliases followed for one question.
const MaxCNAME = 8

// ask is query following the aliases of an answer that has a CNAME and no
// record of qtype (a server that does not chase them): at most MaxCNAME,
// a loop being a *TempError, as a recursive resolver's SERVFAIL.
func (r *Resolver) ask(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	seen := map[string]bool{}
	for hops := 0; ; hops++ {
		resp, err := r.query(ctx, name, qtype)
		if err != nil || resp.Rcode != dns.RcodeSuccess {
			return resp, err
		}
		alias := map[string]string{}
		for _, rr := range resp.Answer {
			if rr.Header().Rrtype == qtype {
				return resp, nil
			}
			if c, ok := rr.(*dns.CNAME); ok {
				alias[strings.ToLower(c.Hdr.Name)] = strings.ToLower(c.Target)
			}
		}
		cur := strings.ToLower(dns.Fqdn(name))
		if _, ok := alias[cur]; !ok {
			return resp, nil // NODATA
		}
		for next, ok := alias[cur]; ok; next, ok = alias[cur] {
			seen[cur] = true
			if seen[next] {
				return nil, &TempError{fmt.Errorf("%s %s: CNAME loop at %s", name, dns.TypeToString[qtype], next)}
			}
			cur = next
		}
		if hops >= MaxCNAME {
			return nil, &TempError{fmt.Errorf("%s %s: more than %d CNAMEs", name, dns.TypeToString[qtype], MaxCNAME)}
		}
		name = cur
	}
}

func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, srv string, timeout time.Duration) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: timeout}
	resp, _, err := c.ExchangeContext(qctx, m, srv)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(qctx, m, srv)
	}
	if err != nil {
		return nil, err
	}
	if resp.Id != m.Id {
		return nil, errors.New("dns: reply id mismatch")
	}
	return resp, nil
}

// MX is one mail exchanger.
type MX struct {
	Host string // without the trailing dot; "" for a null MX
	Pref uint16
}

// LookupMX returns the MX records of domain sorted by preference (equal
// preferences keep the order of the answer). It returns ErrNXDomain when
// the domain does not exist, an empty list when it has no MX, and a
// *TempError when the question could not be answered.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	resp, err := r.ask(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if resp.Rcode == dns.RcodeNameError {
		return nil, ErrNXDomain
	}
	var mxs []MX
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, MX{Host: strings.TrimSuffix(mx.Mx, "."), Pref: mx.Preference})
		}
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	return mxs, nil
}

// LookupHost returns the IPv4 then the IPv6 addresses of host (asked in
// parallel). An IP literal is returned as is. It returns ErrNXDomain when
// the name does not exist and an empty list when it has no address.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	type res struct {
		addrs []netip.Addr
		nx    bool
		err   error
	}
	ask := func(qtype uint16, ch chan<- res) {
		resp, err := r.ask(ctx, host, qtype)
		if err != nil {
			ch <- res{err: err}
			return
		}
		var out res
		out.nx = resp.Rcode == dns.RcodeNameError
		for _, rr := range resp.Answer {
			switch v := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					out.addrs = append(out.addrs, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					out.addrs = append(out.addrs, a)
				}
			}
		}
		ch <- out
	}
	c4, c6 := make(chan res, 1), make(chan res, 1)
	go ask(dns.TypeA, c4)
	go ask(dns.TypeAAAA, c6)
	r4, r6 := <-c4, <-c6
	addrs := append(r4.addrs, r6.addrs...)
	if len(addrs) > 0 {
		return addrs, nil
	}
	if r4.err != nil {
		return nil, r4.err
	}
	if r4.nx {
		return nil, ErrNXDomain
	}
	if r6.err != nil {
		return nil, r6.err
	}
	return nil, nil
}
