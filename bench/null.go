// null.go: null backend milters in a child process.

package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/mailmux/mailmux/internal/gotune"
	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

const (
	envNull = "MAILMUX_BENCH_NULL"
	envMux  = "MAILMUX_BENCH_MUX"
)

// MaybeServeNull turns the process into a null-backend server when it was
// started as one by StartNull (the env var holds "count,rcptDelay"). It
// prints one address per line and serves until stdin closes.
func MaybeServeNull() {
	if spec := os.Getenv(envMux); spec != "" {
		serveMux(spec)
	}
	spec := os.Getenv(envNull)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, ",")
	n, _ := strconv.Atoi(parts[0])
	var delay time.Duration
	if len(parts) > 1 {
		delay, _ = time.ParseDuration(parts[1])
	}
	for i := 0; i < n; i++ {
		s := &testmilter.Server{}
		if delay > 0 {
			s.Handler = func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
				if p.Code == mp.CmdRcpt {
					time.Sleep(delay)
				}
				return nil
			}
		}
		a, err := s.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(a.String())
	}
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // parent closes our stdin to stop us
	os.Exit(0)
}

// serveMux runs pmult in this (child) process: spec is "reuse,addr,…".
func serveMux(spec string) {
	parts := strings.Split(spec, ",")
	m, err := StartMux(parts[1:], parts[0] == "true")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(m.Addr)
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	m.Stop()
	os.Exit(0)
}

// StartMuxProcess runs pmult in a child process, so that its CPU time can
// be read on its own (CPUTime).
func StartMuxProcess(backends []string, reuse bool) (*Null, error) {
	return startChild(fmt.Sprintf("%s=%v,%s", envMux, reuse, strings.Join(backends, ",")), 1)
}

// CPUTime is the child's user+system CPU time so far (from /proc).
func (n *Null) CPUTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which is in parentheses).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// Null is a child process serving null backends.
type Null struct {
	Addrs []string
	cmd   *exec.Cmd
	stdin interface{ Close() error }
}

// StartNull starts n null backends (each sleeping rcptDelay per RCPT) in a
// child process (this executable, which must call MaybeServeNull first).
func StartNull(n int, rcptDelay time.Duration) (*Null, error) {
	return startChild(fmt.Sprintf("%s=%d,%s", envNull, n, rcptDelay), n)
}

func startChild(env string, n int) (*Null, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	if strings.HasPrefix(env, envNull) {
		// One P for the null backends: with the parent's two, three
		// runnable threads on this 2-core machine rather than four (less
		// OS preemption noise in the latency tails, for the baseline and
		// pmult alike).
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	if strings.HasPrefix(env, envMux) {
		// pmult in its own process runs as the daemon does
		// (cmd/pmult re-executes itself with this setting).
		cmd.Env, _ = gotune.SysmonEnv(cmd.Env)
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	nb := &Null{cmd: cmd, stdin: in}
	sc := bufio.NewScanner(out)
	for len(nb.Addrs) < n && sc.Scan() {
		nb.Addrs = append(nb.Addrs, sc.Text())
	}
	if len(nb.Addrs) < n {
		nb.Stop()
		return nil, fmt.Errorf("bench child %s: gave %d of %d addresses", env, len(nb.Addrs), n)
	}
	return nb, nil
}

// Stop ends the child process.
func (n *Null) Stop() {
	n.stdin.Close()
	n.cmd.Wait()
}
