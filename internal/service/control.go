// control.go: the control socket (control_socket, unix, mode 0600) and
// the metrics listener's /why, where `pmult why ID` reads the decision
// record of a recent message from the process's ring, and where `pmult
// callout-cache` administers a running callout backend's cache; and the
// count of MTA connections accepted and SMTP sessions per listener.
//
// Control protocol: the client sends one line and pmult answers and
// closes the connection. "why ID\n": the records of ID (queue id or
// session id, oldest first), or one line "not found: ID".
// "callout-cache BACKEND ARG...\n" (ARG: list | show WHAT | flush
// WHAT|--all): the output of that command on the named callout backend's
// cache in the running engine, the one its sessions use (a flush applies
// at once), then a last line "ok", "usage: TEXT" or "error: TEXT".

package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/pmult"
)

// controlTimeout bounds one control request (read and write).
const controlTimeout = 10 * time.Second

// why writes the records of id, or "not found: id".
func why(w io.Writer, rec *pmult.Recorder, id string) (bool, error) {
	if rec == nil {
		_, err := fmt.Fprintf(w, "not found: %s (decision_ring = 0: no records kept)\n", id)
		return false, err
	}
	found, err := rec.WriteWhy(w, id)
	if err == nil && !found {
		_, err = fmt.Fprintf(w, "not found: %s\n", id)
	}
	return found, err
}

// control serves the control socket.
type control struct {
	ln      net.Listener
	done    chan struct{} // closed by Close: the accept loop ends
	wg      sync.WaitGroup
	rec     *pmult.Recorder
	engines *pmult.Switch
	log     *slog.Logger
}

// cacheAdmin is a backend whose cache can be administered while pmult
// runs (the callout backend).
type cacheAdmin interface {
	AdminCache(ctx context.Context, args []string, w io.Writer) error
}

// controlMode is the control socket's mode: pmult's own user only.
const controlMode = 0o600

// listenControl binds the control socket born with controlMode, as
// listenUnix binds the MTA sockets (umask for the bind, no chmod through
// the path; a stale socket replaced, any other file an error). It runs at
// startup, before any session.
func listenControl(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, errors.New("socket in use by another process")
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	old := syscall.Umask(0o777 &^ controlMode)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	return ln, err
}

// serveControl listens on the unix socket path (mode 0600: the control
// socket answers pmult's own user only).
func serveControl(path string, rec *pmult.Recorder, engines *pmult.Switch, log *slog.Logger) (*control, error) {
	ln, err := listenControl(path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	c := newControl(ln, rec, engines, log)
	log.Info("control socket", "path", path)
	return c, nil
}

// newControl serves the control requests arriving on ln until Close.
func newControl(ln net.Listener, rec *pmult.Recorder, engines *pmult.Switch, log *slog.Logger) *control {
	c := &control{ln: ln, done: make(chan struct{}), rec: rec, engines: engines, log: log}
	c.wg.Add(1)
	go c.serve()
	return c
}

// Accept backoff of the control socket (as net/http's): after a failed
// accept, wait from acceptDelayMin, doubling up to acceptDelayMax.
const (
	acceptDelayMin = 5 * time.Millisecond
	acceptDelayMax = time.Second
)

// serve accepts until Close. An accept error other than the listener's
// closing (out of file descriptors, a connection reset before accept) is
// logged and retried after a growing delay, as net/http does: the socket
// does not stop for good on a passing error.
func (c *control) serve() {
	defer c.wg.Done()
	var delay time.Duration
	for {
		nc, err := c.ln.Accept()
		if err != nil {
			select {
			case <-c.done:
				return // closed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(delay*2, acceptDelayMin), acceptDelayMax)
			c.log.Warn("control socket: accept failed, retrying", "err", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.handle(nc)
		}()
	}
}

func (c *control) handle(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(controlTimeout))
	line, err := bufio.NewReader(io.LimitReader(nc, 4096)).ReadString('\n')
	if err != nil {
		c.log.Warn("control socket: bad request", "err", err)
		return
	}
	f := strings.Fields(line)
	switch {
	case len(f) == 2 && f[0] == "why":
		_, err = why(nc, c.rec, f[1])
	case len(f) >= 2 && f[0] == "callout-cache":
		err = c.calloutCache(nc, f[1], f[2:])
	default:
		c.log.Warn("control socket: unknown request", "request", strings.TrimSpace(line))
		fmt.Fprintf(nc, "error: unknown request (want: why ID, or callout-cache BACKEND list|show|flush ...)\n")
		return
	}
	if err != nil {
		c.log.Warn("control socket: write", "err", err)
	}
}

// calloutCache runs a cache administration command on the named
// backend of the running engine and ends with "ok", "usage: ..." or
// "error: ...".
func (c *control) calloutCache(w io.Writer, name string, args []string) error {
	var adm cacheAdmin
	if c.engines != nil {
		for _, sl := range c.engines.Engine().Slots {
			if sl.Backend.Name() == name {
				adm, _ = sl.Backend.(cacheAdmin)
				if adm == nil {
					_, err := fmt.Fprintf(w, "error: backend %s has no cache to administer (not of type callout)\n", name)
					return err
				}
			}
		}
	}
	if adm == nil {
		_, err := fmt.Fprintf(w, "error: no backend %s in the running configuration\n", name)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	bw := bufio.NewWriter(w)
	err := adm.AdminCache(ctx, args, bw)
	switch {
	case errors.Is(err, cache.ErrUsage):
		fmt.Fprintf(bw, "usage: %s\n", strings.TrimPrefix(err.Error(), "usage: "))
	case err != nil:
		c.log.Warn("control socket: callout-cache", "backend", name, "args", strings.Join(args, " "), "err", err)
		fmt.Fprintf(bw, "error: %v\n", err)
	default:
		c.log.Info("control socket: callout-cache", "backend", name, "args", strings.Join(args, " "))
		fmt.Fprintf(bw, "ok\n")
	}
	return bw.Flush()
}

// Close stops the socket, waits for the requests in progress and removes
// the socket file.
func (c *control) Close(path string) {
	close(c.done)
	c.ln.Close()
	c.wg.Wait()
	os.Remove(path)
}

// whyHandler serves GET /why?id=ID on the metrics listener (404 when not
// found).
func whyHandler(rec *pmult.Recorder) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if id == "" {
			http.Error(w, "want /why?id=QUEUEID or SESSION", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var b strings.Builder
		found, _ := why(&b, rec, id)
		if !found {
			w.WriteHeader(http.StatusNotFound)
		}
		io.WriteString(w, b.String())
	}
}

// listenerCounts counts the MTA connections accepted on each listener,
// for pmult_listener_connections_total{listener}, and writes the SMTP
// sessions the engines counted by listener name (pmult.Metrics) as
// pmult_listener_sessions_total{listener}. The label is the listener's
// name, or for an unnamed listener its listen address as configured; the
// engines cannot tell unnamed listeners apart, so when there are several
// their sessions are one series, listener="". Names are unique across the
// milter, MeTA1 and SMTP fronts (config refuses a name given twice, with
// both places), so each named listener is one series of each.
type listenerCounts struct {
	labels []string
	names  []string // the listener names ("": unnamed)
	n      []*atomic.Uint64
}

// wrap returns ln counting its accepted connections under label; name is
// the listener's name ("": unnamed).
func (lc *listenerCounts) wrap(ln net.Listener, label, name string) net.Listener {
	n := new(atomic.Uint64)
	lc.labels = append(lc.labels, label)
	lc.names = append(lc.names, name)
	lc.n = append(lc.n, n)
	return countingListener{ln, n}
}

func (lc *listenerCounts) writeText(w io.Writer, m *pmult.Metrics) {
	fmt.Fprintf(w, "# TYPE pmult_listener_connections_total counter\n")
	for i, label := range lc.labels {
		fmt.Fprintf(w, "pmult_listener_connections_total{listener=%q} %d\n", label, lc.n[i].Load())
	}
	unnamed := 0
	for _, name := range lc.names {
		if name == "" {
			unnamed++
		}
	}
	fmt.Fprintf(w, "# TYPE pmult_listener_sessions_total counter\n")
	for i, label := range lc.labels {
		switch name := lc.names[i]; {
		case name != "":
			fmt.Fprintf(w, "pmult_listener_sessions_total{listener=%q} %d\n", label, m.ListenerSessions(name))
		case unnamed == 1:
			fmt.Fprintf(w, "pmult_listener_sessions_total{listener=%q} %d\n", label, m.ListenerSessions(""))
		}
	}
	if unnamed > 1 {
		fmt.Fprintf(w, "pmult_listener_sessions_total{listener=\"\"} %d\n", m.ListenerSessions(""))
	}
}

type countingListener struct {
	net.Listener
	n *atomic.Uint64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
