// Command soak is a bounded soak of the real pmult binary against real
// backend processes (make soak): demomilter processes as backends, the MTA
// side driven in-process by mtasim's load client. During the run one
// backend is killed (SIGKILL) and started again, one is stopped (SIGSTOP)
// and continued (SIGCONT), and pmult reloads its configuration (SIGHUP).
// Every interval it prints sessions/s, lost sessions, open MTA connections,
// pmult's RSS, file descriptors and goroutines, and its tempfail and reject
// replies so far (all from its /metrics; counters carried over the reload).
//
// It exits non-zero when a session is lost (an MTA-side error: no answer,
// a closed connection, a timeout), when the load does not end in bounded
// time (wedged), when MTA connections stay open after the load, or when
// RSS, fds or goroutines do not come back near the warm-up baseline.
//
//	soak -pmult bin/pmult -demomilter bin/demomilter [-duration 3m] [-concurrency 1000] [-unix]
//
// Tunables (flags) and defaults: duration 3m, concurrency 1000, interval
// 10s, warmup 15s; growth limits: RSS +50% over the baseline plus 32 MiB,
// fds +20, goroutines +20 (after up to 60 s of settling).
//
// Only loopback is used: every process listens on 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	backend "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/sim/mta"
)

type options struct {
	pmult, demomilter string
	duration, warmup  time.Duration
	interval          time.Duration
	concurrency       int
	keep              bool
	unix              bool // backends on unix sockets
}

func main() {
	var o options
	flag.StringVar(&o.pmult, "pmult", "bin/pmult", "pmult `binary`")
	flag.StringVar(&o.demomilter, "demomilter", "bin/demomilter", "backend milter `binary`")
	flag.DurationVar(&o.duration, "duration", 3*time.Minute, "load duration")
	flag.DurationVar(&o.warmup, "warmup", 15*time.Second, "warm-up load before the baseline is taken")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "report interval")
	flag.IntVar(&o.concurrency, "concurrency", 1000, "concurrent MTA sessions")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs)")
	flag.BoolVar(&o.unix, "unix", false, "backends on unix sockets (pmult's internal/unixconn connections) instead of TCP")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "soak: FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("soak: PASS")
}

// freePort returns a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is a child process with its log.
type proc struct {
	name string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit error, once done is closed
}

func (p *proc) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// The children die with the soak, however it ends.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.done = make(chan struct{})
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.done) }()
	return nil
}

func (p *proc) signal(s syscall.Signal) error { return p.cmd.Process.Signal(s) }

// stop ends the process (SIGTERM, then SIGKILL) and returns its exit error.
func (p *proc) stop(grace time.Duration) error {
	if p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGCONT)
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.name, grace)
	}
}

// waitDial waits until addr (host:port, or a milter spec: inet:HOST:PORT
// or unix:PATH) takes connections.
func waitDial(addr string, d time.Duration) error {
	network := "tcp"
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
	}
	addr = strings.TrimPrefix(addr, "inet:")
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sample is one scrape of pmult's /metrics.
type sample struct {
	rss, fds, goroutines, conns int64
	sessions                    int64            // pmult_sessions_total (since the last reload)
	verdicts                    map[string]int64 // merged replies to the MTA by verdict, every stage (since the last reload)
}

func scrape(url string) (sample, error) {
	s := sample{verdicts: map[string]int64{}}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		switch {
		case name == "process_resident_memory_bytes":
			s.rss = n
		case name == "process_open_fds":
			s.fds = n
		case name == "go_goroutines":
			s.goroutines = n
		case name == "pmult_mta_connections":
			s.conns = n
		case name == "pmult_sessions_total":
			s.sessions = n
		case strings.HasPrefix(name, "pmult_replies_total{"):
			if _, v, ok := strings.Cut(name, `verdict="`); ok {
				s.verdicts[strings.TrimSuffix(v, `"}`)] += n
			}
		}
	}
	return s, sc.Err()
}

func writeConfig(path string, port int, mport int, backends []string, gen int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# soak configuration, generation %d\nlisten = \"inet:127.0.0.1:%d\"\nmetrics_listen = \"127.0.0.1:%d\"\n", gen, port, mport)
	b.WriteString("shutdown_timeout = \"30s\"\nlog_level = \"warn\"\n")
	fail := []string{"tempfail", "accept", "tempfail"}
	for i, p := range backends {
		fmt.Fprintf(&b, "[[backend]]\nname = \"b%d\"\nurl = %q\nconnect_timeout = \"3s\"\nread_timeout = \"3s\"\neom_timeout = \"10s\"\non_failure = %q\n",
			i+1, p, fail[i%len(fail)])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

func run(o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "pmult-soak-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(out, "work directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	var ports []int
	for range 5 {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports = append(ports, p)
	}
	pport, mport := ports[0], ports[1]
	var bports []string // the backends' milter specs
	for i, p := range ports[2:] {
		if o.unix {
			bports = append(bports, "unix:"+filepath.Join(dir, fmt.Sprintf("b%d.sock", i+1)))
		} else {
			bports = append(bports, fmt.Sprintf("inet:127.0.0.1:%d", p))
		}
	}
	var backs []*proc // the event goroutine replaces b2; read after it ended
	for i, p := range bports {
		bp := &proc{name: fmt.Sprintf("b%d", i+1), log: filepath.Join(dir, fmt.Sprintf("b%d.log", i+1)),
			args: []string{o.demomilter, "-listen", p, "-name", fmt.Sprintf("b%d", i+1)}}
		if err := bp.start(); err != nil {
			return err
		}
		backs = append(backs, bp)
	}
	defer func() {
		for _, b := range backs {
			b.stop(5 * time.Second)
		}
	}()
	for _, p := range bports {
		if err := waitDial(p, 10*time.Second); err != nil {
			return err
		}
	}
	cfg := filepath.Join(dir, "pmult.toml")
	if err := writeConfig(cfg, pport, mport, bports, 1); err != nil {
		return err
	}
	pm := &proc{name: "pmult", log: filepath.Join(dir, "pmult.log"), args: []string{o.pmult, "-c", cfg}}
	if err := pm.start(); err != nil {
		return err
	}
	pmStopped := false
	defer func() {
		if !pmStopped {
			pm.stop(5 * time.Second)
		}
	}()
	paddr := fmt.Sprintf("127.0.0.1:%d", pport)
	murl := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	if err := waitDial(paddr, 10*time.Second); err != nil {
		return err
	}
	if err := waitDial(fmt.Sprintf("127.0.0.1:%d", mport), 10*time.Second); err != nil {
		return err
	}

	// The MTA side: mtasim's load client, a v6 MTA like Postfix.
	mta := &mtasim.Config{Hostname: "soak.example", Backend: backend.New(backend.Config{
		Name: "pmult", Network: "tcp", Address: paddr,
		ConnectTimeout: 30 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, EOMTimeout: 60 * time.Second,
	})}
	// Bounded: the load must end within its duration plus the longest
	// MTA-side timeout, or the run is wedged.
	load := func(d time.Duration, progress func(done, errs int64, frac float64)) (*mtasim.LoadResult, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
		defer cancel()
		res, err := mtasim.RunLoad(ctx, mta, mtasim.LoadOptions{Concurrency: o.concurrency, Duration: d, Progress: progress})
		if errors.Is(err, context.DeadlineExceeded) {
			return res, fmt.Errorf("load did not end within %s of its %s: sessions wedged", 2*time.Minute, d)
		}
		return res, err
	}
	settle := func() (sample, error) {
		// Idle: no MTA connection open, then let the goroutines wind down.
		var s sample
		var err error
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
			s, err = scrape(murl)
			if err == nil && s.conns == 0 {
				break
			}
			if time.Now().After(deadline) {
				return s, fmt.Errorf("%d MTA connections still open 60s after the load (wedged sessions), scrape err %v", s.conns, err)
			}
		}
		return s, nil
	}

	fmt.Fprintf(out, "soak: pmult %s, 3 demomilter backends on %s, %d concurrent sessions for %s (warm-up %s)\n",
		o.pmult, map[bool]string{false: "TCP", true: "unix sockets"}[o.unix], o.concurrency, o.duration, o.warmup)
	idle, err := scrape(murl)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "idle at start: rss %.1f MiB, fds %d, goroutines %d\n", mb(idle.rss), idle.fds, idle.goroutines)
	wres, err := load(o.warmup, nil)
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if wres.Errors > 0 {
		return fmt.Errorf("warm-up: %d lost sessions (first: %s)", wres.Errors, wres.FirstError)
	}
	base, err := settle()
	if err != nil {
		return fmt.Errorf("after warm-up: %w", err)
	}
	time.Sleep(2 * time.Second)
	if base, err = scrape(murl); err != nil {
		return err
	}
	fmt.Fprintf(out, "baseline after warm-up (%d sessions): rss %.1f MiB, fds %d, goroutines %d\n\n",
		wres.Sessions, mb(base.rss), base.fds, base.goroutines)

	// The events, at fractions of the run.
	type event struct {
		at   float64
		name string
		do   func() error
	}
	var kill2 *proc = backs[1]
	events := []event{
		{0.20, "SIGKILL b2", func() error { return kill2.signal(syscall.SIGKILL) }},
		{0.30, "restart b2", func() error {
			<-kill2.done
			nb := &proc{name: "b2", log: kill2.log, args: kill2.args}
			if err := nb.start(); err != nil {
				return err
			}
			backs[1], kill2 = nb, nb
			return waitDial(bports[1], 10*time.Second)
		}},
		{0.45, "SIGSTOP b3", func() error { return backs[2].signal(syscall.SIGSTOP) }},
		{0.50, "SIGCONT b3", func() error { return backs[2].signal(syscall.SIGCONT) }},
		{0.65, "SIGHUP pmult", func() error {
			if err := writeConfig(cfg, pport, mport, bports, 2); err != nil {
				return err
			}
			return pm.signal(syscall.SIGHUP)
		}},
	}
	var done, errs atomic.Int64
	var mu sync.Mutex
	var marks []string
	start := time.Now()
	stopEvents := make(chan struct{})
	var ewg sync.WaitGroup
	var eventErr error
	ewg.Add(1)
	go func() {
		defer ewg.Done()
		for _, e := range events {
			select {
			case <-stopEvents:
				return
			case <-time.After(time.Until(start.Add(time.Duration(e.at * float64(o.duration))))):
			}
			err := e.do()
			mu.Lock()
			marks = append(marks, e.name)
			if err != nil && eventErr == nil {
				eventErr = fmt.Errorf("%s: %w", e.name, err)
			}
			mu.Unlock()
		}
	}()
	// The table.
	fmt.Fprintf(out, "%6s %9s %8s %6s %6s %8s %6s %6s %9s %8s  %s\n", "t s", "sessions", "sess/s", "lost", "open", "rss MiB", "fds", "gorout", "tempfail", "reject", "events")
	stopTable := make(chan struct{})
	var twg sync.WaitGroup
	twg.Add(1)
	go func() {
		defer twg.Done()
		t := time.NewTicker(o.interval)
		defer t.Stop()
		var last int64
		lastT := start
		// The counters start again at a reload: carry the totals over.
		var prev sample
		carry := map[string]int64{}
		for {
			select {
			case <-stopTable:
				return
			case now := <-t.C:
				d := done.Load()
				s, err := scrape(murl)
				mu.Lock()
				ev := strings.Join(marks, ", ")
				marks = nil
				mu.Unlock()
				if err != nil {
					ev += " (metrics: " + err.Error() + ")"
				} else {
					if s.sessions < prev.sessions {
						for k, v := range prev.verdicts {
							carry[k] += v
						}
					}
					prev = s
				}
				total := func(v string) int64 { return carry[v] + prev.verdicts[v] }
				fmt.Fprintf(out, "%6.0f %9d %8.0f %6d %6d %8.1f %6d %6d %9d %8d  %s\n", now.Sub(start).Seconds(), d,
					float64(d-last)/now.Sub(lastT).Seconds(), errs.Load(), s.conns, mb(s.rss), s.fds, s.goroutines,
					total("tempfail"), total("reject"), ev)
				last, lastT = d, now
			}
		}
	}()
	res, lerr := load(o.duration, func(d, e int64, _ float64) { done.Store(d); errs.Store(e) })
	close(stopEvents)
	ewg.Wait()
	close(stopTable)
	twg.Wait()
	if lerr != nil {
		return lerr
	}
	if eventErr != nil {
		return eventErr
	}
	fmt.Fprintln(out)
	res.Print(out)
	after, err := settle()
	if err != nil {
		return err
	}
	// Let goroutines and memory come back before judging growth.
	var fail []string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Second) {
		after, err = scrape(murl)
		if err != nil {
			return err
		}
		fail = fail[:0]
		if after.goroutines > base.goroutines+20 {
			fail = append(fail, fmt.Sprintf("goroutines %d, baseline %d", after.goroutines, base.goroutines))
		}
		if after.fds > base.fds+20 {
			fail = append(fail, fmt.Sprintf("fds %d, baseline %d", after.fds, base.fds))
		}
		if after.rss > base.rss*3/2+32<<20 {
			fail = append(fail, fmt.Sprintf("rss %.1f MiB, baseline %.1f MiB", mb(after.rss), mb(base.rss)))
		}
		if len(fail) == 0 || time.Now().After(deadline) {
			break
		}
	}
	fmt.Fprintf(out, "\nafter the load: rss %.1f MiB (baseline %.1f), fds %d (%d), goroutines %d (%d), open MTA connections %d\n",
		mb(after.rss), mb(base.rss), after.fds, base.fds, after.goroutines, base.goroutines, after.conns)
	pmStopped = true
	if err := pm.stop(30 * time.Second); err != nil {
		fail = append(fail, fmt.Sprintf("pmult exit: %v", err))
	}
	if res.Errors > 0 {
		fail = append(fail, fmt.Sprintf("%d lost sessions (first: %s)", res.Errors, res.FirstError))
	}
	if res.Sessions == 0 {
		fail = append(fail, "no session completed")
	}
	if len(fail) > 0 {
		return errors.New(strings.Join(fail, "; "))
	}
	return nil
}
