// dns.go: an in-process authoritative DNS server for test domains (UDP and
// TCP on one address), built with github.com/miekg/dns. Names in the zone
// without the asked type get an empty answer (NODATA) or their CNAME
// record (not chased: the client follows it), other names
// NXDOMAIN; names in Hang are never answered, names in ServFail get
// SERVFAIL, names in Hold get SERVFAIL when the test releases them.

package callouttest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// DNSServer is a running test name server.
type DNSServer struct {
	Addr string // "ip:port", the same for UDP and TCP

	mu       sync.Mutex
	zone     map[string][]dns.RR
	hang     map[string]bool
	servfail map[string]bool
	hold     map[string]*held
	udp, tcp *dns.Server
	queries  atomic.Int64
}

// StartDNS serves records (zone-file lines such as "example.test. 60 IN MX
// 10 mx.example.test.") on addr ("127.0.0.53:53", or "127.0.0.1:0" for a
// free port used for both UDP and TCP). It stops in t.Cleanup.
func StartDNS(t testing.TB, addr string, records ...string) *DNSServer {
	t.Helper()
	d := &DNSServer{zone: map[string][]dns.RR{}, hang: map[string]bool{}, servfail: map[string]bool{}, hold: map[string]*held{}}
	d.Add(t, records...)
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for i := 0; i < 20; i++ {
		pc, err = net.ListenPacket("udp", addr)
		if err != nil {
			break
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if err != nil {
		t.Fatalf("callouttest: DNS listen %s: %v", addr, err)
	}
	d.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(d.serve)
	d.udp = &dns.Server{PacketConn: pc, Handler: h}
	d.tcp = &dns.Server{Listener: ln, Handler: h}
	started := make(chan struct{}, 2)
	d.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	d.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go d.udp.ActivateAndServe()
	go d.tcp.ActivateAndServe()
	<-started
	<-started
	t.Cleanup(func() {
		d.udp.Shutdown()
		d.tcp.Shutdown()
	})
	return d
}

// Add adds records to the zone.
func (d *DNSServer) Add(t testing.TB, records ...string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil || rr == nil {
			t.Fatalf("callouttest: bad record %q: %v", r, err)
		}
		name := strings.ToLower(rr.Header().Name)
		d.zone[name] = append(d.zone[name], rr)
	}
}

// Hang makes the server never answer questions about name.
func (d *DNSServer) Hang(name string) {
	d.mu.Lock()
	d.hang[strings.ToLower(dns.Fqdn(name))] = true
	d.mu.Unlock()
}

// held is a name whose questions wait for the test (Hold).
type held struct {
	asked, released chan struct{}
	once            sync.Once
}

// Hold makes questions about name wait until release is called, then get
// SERVFAIL; asked is closed when the first one arrives, so a test can
// act while a client is known to be waiting for the answer. release is
// also called in t.Cleanup.
func (d *DNSServer) Hold(t testing.TB, name string) (asked <-chan struct{}, release func()) {
	h := &held{asked: make(chan struct{}), released: make(chan struct{})}
	d.mu.Lock()
	d.hold[strings.ToLower(dns.Fqdn(name))] = h
	d.mu.Unlock()
	var rel sync.Once
	release = func() { rel.Do(func() { close(h.released) }) }
	t.Cleanup(release)
	return h.asked, release
}

// ServFail makes the server answer SERVFAIL about name.
func (d *DNSServer) ServFail(name string) {
	d.mu.Lock()
	d.servfail[strings.ToLower(dns.Fqdn(name))] = true
	d.mu.Unlock()
}

// Queries returns how many questions were received.
func (d *DNSServer) Queries() int { return int(d.queries.Load()) }

func (d *DNSServer) serve(w dns.ResponseWriter, q *dns.Msg) {
	d.queries.Add(1)
	if len(q.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	qq := q.Question[0]
	name := strings.ToLower(qq.Name)
	d.mu.Lock()
	hang, sf, h := d.hang[name], d.servfail[name], d.hold[name]
	rrs, found := d.zone[name]
	d.mu.Unlock()
	if hang {
		return
	}
	if h != nil {
		h.once.Do(func() { close(h.asked) })
		<-h.released
		sf = true
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	switch {
	case sf:
		m.Rcode = dns.RcodeServerFailure
	case !found:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == qq.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		if len(m.Answer) == 0 { // an alias: the CNAME alone (not chased)
			for _, rr := range rrs {
				if rr.Header().Rrtype == dns.TypeCNAME {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
		}
	}
	w.WriteMsg(m)
}

// Net hands out loopback addresses in a random 127.X.Y.0/24 block, so that
// tests running at the same time (other packages, other tests) do not
// collide on well-known ports such as 25 and 53.
type Net struct{ prefix string }

// NewNet picks a random block.
func NewNet() *Net {
	return &Net{prefix: "127." + strconv.Itoa(10+rand.IntN(240)) + "." + strconv.Itoa(1+rand.IntN(250)) + "."}
}

// IP returns the i-th address of the block (1..254).
func (n *Net) IP(i int) string { return n.prefix + strconv.Itoa(i) }

// Addr returns IP(i):port.
func (n *Net) Addr(i, port int) string { return net.JoinHostPort(n.IP(i), strconv.Itoa(port)) }
