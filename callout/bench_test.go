// bench_test.go: benchmarks. BenchmarkCachedAnswer: VRFY+RUN of a cached
// address over loopback (p50/p99 per answer; target p99 <= 100 µs), next
// to BenchmarkLoopbackBaseline, two bare line round trips on the same
// kind of connection. BenchmarkProbes: full SMTP probes (DNS MX lookup,
// EHLO, MAIL, RCPT, QUIT) against a fast local target (target >= 500/s),
// reporting probes/s and the heap in use afterwards.

package callout

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/callout/smtpprobe"
)

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
}

func BenchmarkCachedAnswer(b *testing.B) {
	c := newMemCache()
	ctx := context.Background()
	c.Record(ctx, "good@cached.test", Success)
	srv := &Server{Verifier: &Verifier{Prober: &smtpprobe.Prober{}, Cache: c}}
	addr := startServer(b, srv)
	cl, err := Dial(ctx, "tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := cl.Do(ctx, "VRFY good@cached.test", nil); err != nil {
			b.Fatal(err)
		}
		rp, err := cl.Do(ctx, "RUN", nil)
		if err != nil || !rp.OK {
			b.Fatal(rp, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkLoopbackBaseline: two line round trips to a trivial server.
func BenchmarkLoopbackBaseline(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r, w := bufio.NewReader(c), bufio.NewWriter(c)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			w.WriteString("OK\r\n")
			w.Flush()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		for j := 0; j < 2; j++ {
			c.Write([]byte("X\r\n"))
			if _, err := r.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

func BenchmarkProbes(b *testing.B) {
	n := callouttest.NewNet()
	d := callouttest.StartDNS(b, n.Addr(53, 0), "fast.test. 60 IN MX 10 mx.fast.test.", "mx.fast.test. 60 IN A "+n.IP(2))
	target := callouttest.StartSMTP(b, n.Addr(2, 2525), callouttest.SMTPOptions{})
	v := &Verifier{
		Prober: &smtpprobe.Prober{Resolver: &smtpprobe.Resolver{Servers: []string{d.Addr}}, Port: 2525, Ehlo: "bench.test"},
		// One domain at full speed: the limits would be the bottleneck.
		DomainConcurrency: 64, DomainRate: -1, MaxPending: 10000,
	}
	defer v.Close()
	var seq atomic.Int64
	var failed atomic.Int64
	runtime.GC()
	b.SetParallelism(8) // 8 × GOMAXPROCS probes in flight
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := smtpprobe.Request{Email: fmt.Sprintf("good%d@fast.test", seq.Add(1))}
			if o, _ := v.Verify(context.Background(), req, nil); o.Result != Success {
				failed.Add(1)
			}
		}
	})
	el := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d probes failed", f)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(b.N)/el.Seconds(), "probes/s")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	if target.Connections() < b.N {
		b.Fatalf("%d connections for %d probes", target.Connections(), b.N)
	}
}
