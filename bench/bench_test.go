// bench_test.go: the measurements as go test benchmarks. Each reports
// sessions/s and, for pmult runs, the ratio to a direct baseline taken in
// the same benchmark.

package bench

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MaybeServeNull()
	os.Exit(m.Run())
}

var (
	nullOnce sync.Once
	nullSrv  *Null
	nullErr  error
)

func nullBackends(b testing.TB) *Null {
	nullOnce.Do(func() { nullSrv, nullErr = StartNull(5, 0) })
	if nullErr != nil {
		b.Fatal(nullErr)
	}
	return nullSrv
}

func benchSessions(b *testing.B, addr string) {
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := Session(context.Background(), addr, 1, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSessionDirect(b *testing.B) {
	benchSessions(b, nullBackends(b).Addrs[0])
}

func benchMux(b *testing.B, n int, reuse bool) {
	nb := nullBackends(b)
	m, err := StartMux(nb.Addrs[:n], reuse)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Stop()
	// Baseline in the same run.
	direct := Load(nb.Addrs[0], 8, time.Second, 0)
	start := time.Now()
	benchSessions(b, m.Addr)
	rate := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(rate, "sessions/s")
	b.ReportMetric(rate/direct.Rate(), "ratio-to-direct")
}

func BenchmarkSessionMux1(b *testing.B)      { benchMux(b, 1, false) }
func BenchmarkSessionMux3(b *testing.B)      { benchMux(b, 3, false) }
func BenchmarkSessionMux5(b *testing.B)      { benchMux(b, 5, false) }
func BenchmarkSessionMux3Reuse(b *testing.B) { benchMux(b, 3, true) }

// BenchmarkCalloutCachedMail: a callout backend answering MAIL from its
// cache, against the same-run baseline (reported as added µs).
func BenchmarkCalloutCachedMail(b *testing.B) {
	c, err := CalloutBench(max(b.N, 1000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(c.AddedMailP99())/1e3, "added-p99-µs")
	b.ReportMetric(float64(c.AddedCPU())/1e3, "added-cpu-µs/msg")
}
