// proc.go: a started daemon (Process) with captured output, stopped by PID
// in t.Cleanup, and a bounded one-shot command runner.

package realpeer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a daemon started by a test. Its stdout and stderr are
// collected together (see Output). It is stopped in t.Cleanup; when the
// test failed, its output is logged first.
type Process struct {
	Name string // short label used in messages
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
	err  error // exit status, valid after done is closed

	stopOnce sync.Once
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartProcess starts cmd (whose Stdout and Stderr it sets) and registers
// Stop in t.Cleanup. name labels the process in messages.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("realpeer: start %s (%s): %v", name, strings.Join(cmd.Args, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("realpeer: output of %s (pid %d, %s):\n%s", name, p.PID(),
				strings.Join(cmd.Args, " "), tail(p.Output(), 8000))
		}
		p.Stop()
	})
	return p
}

// PID returns the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output returns everything the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitErr returns how the process ended (nil for exit status 0), or an
// error saying it is still running.
func (p *Process) ExitErr() error {
	if p.Running() {
		return errors.New("still running")
	}
	return p.err
}

// Stop sends SIGTERM to the process's PID, waits up to 3 s, then sends
// SIGKILL. Only this PID is signalled (daemons such as the Postfix master
// pass SIGTERM on to their own children). Safe to call more than once.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		if !p.Running() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(3 * time.Second):
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
}

// WaitReady waits until something listens on the socket named by the
// milter spec (or "tcp:HOST:PORT"; see Listening), failing the test with the process output if the
// process exits first or timeout passes.
func (p *Process) WaitReady(t testing.TB, spec string, timeout time.Duration) {
	t.Helper()
	var network, addr string
	if a, ok := strings.CutPrefix(spec, "tcp:"); ok {
		network, addr = "tcp", a
	} else {
		var err error
		network, addr, err = SpecAddr(spec)
		if err != nil {
			t.Fatalf("realpeer: %s: %v", p.Name, err)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		if !p.Running() {
			t.Fatalf("realpeer: %s exited before listening on %s %s: %v\n%s command: %s\n%s output:\n%s",
				p.Name, network, addr, p.err, p.Name, strings.Join(p.cmd.Args, " "), p.Name, tail(p.Output(), 8000))
		}
		if Listening(network, addr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("realpeer: %s not listening on %s %s after %v\n%s output:\n%s",
				p.Name, network, addr, timeout, p.Name, tail(p.Output(), 8000))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// runResult is the outcome of a one-shot command.
type runResult struct {
	stdout, stderr string
	exitCode       int // -1 when it could not run or was killed
	err            error
}

// runCmd runs a command with stdin and a timeout, capturing both outputs.
func runCmd(timeout time.Duration, stdin string, name string, args ...string) runResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := runResult{stdout: so.String(), stderr: se.String(), exitCode: -1, err: err}
	if cmd.ProcessState != nil {
		r.exitCode = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		r.err = fmt.Errorf("%s timed out after %v (killed): %w", name, timeout, ctx.Err())
	}
	return r
}

// tail returns at most the last n bytes of s, marking a cut.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[... " + fmt.Sprint(len(s)-n) + " bytes cut ...]\n" + s[len(s)-n:]
}
