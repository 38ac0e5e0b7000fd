//go:build linux

package unixconn

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn is a unix stream socket; see the package documentation.
type Conn struct {
	sock         int
	rf           *os.File // epoll instance: sock for input
	rraw         syscall.RawConn
	laddr, raddr net.Addr
	st           *sockState // Close's flag, shared with the cleanup

	// The calls' arguments and results, for callbacks made once (a
	// closure per call would be an allocation per Read and Write).
	rmu         sync.Mutex
	rbuf        []byte
	rn          int
	rerr        error
	readFn      func(uintptr) bool
	smu         sync.Mutex
	sbuf        []byte
	sn          int
	serr        error
	writeFn     func(uintptr) bool
	waitWriteFn func(uintptr) bool
	cmu         sync.Mutex // SyscallConn's Control: ctlF is its argument
	ctlF        func(fd uintptr)
	controlFn   func(uintptr)

	wmu     sync.Mutex
	wf      *os.File // epoll instance: sock for output, made by the first full write
	wraw    syscall.RawConn
	wdl     time.Time // the write deadline, for wf
	wclosed bool
}

var _ syscall.Conn = (*Conn)(nil)

// New takes over c: its descriptor is duplicated, c is closed (which
// takes it out of Go's poller), and the copy is served by a Conn. On an
// error c is left as it was.
func New(c *net.UnixConn) (*Conn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	sock := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = os.NewSyscallError("fcntl", e)
			return
		}
		sock = int(r)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	uc, err := newConn(sock, c.LocalAddr(), c.RemoteAddr())
	if err != nil {
		syscall.Close(sock)
		return nil, err
	}
	c.Close()
	return uc, nil
}

// newConn serves sock, a connected unix stream socket in non-blocking
// mode (a copy of a Go socket's descriptor shares its mode).
func newConn(sock int, laddr, raddr net.Addr) (*Conn, error) {
	rf, rraw, err := epollFile(sock, syscall.EPOLLIN|syscall.EPOLLRDHUP, "unixconn-in")
	if err != nil {
		return nil, err
	}
	c := &Conn{sock: sock, rf: rf, rraw: rraw, laddr: laddr, raddr: raddr, st: &sockState{fd: sock}}
	c.readFn, c.writeFn, c.waitWriteFn, c.controlFn = c.read, c.write, c.writeOrWait, c.control
	// As the standard library's connections: one dropped without Close
	// gives its socket back when collected (the epoll instances' os.File
	// close themselves).
	runtime.AddCleanup(c, func(st *sockState) {
		if !st.closed.Load() {
			syscall.Close(st.fd)
		}
	}, c.st)
	return c, nil
}

// sockState is what the cleanup of a Conn dropped without Close needs:
// closed is set by Close, which then closes fd itself.
type sockState struct {
	fd     int
	closed atomic.Bool
}

// read, write and writeOrWait are the callbacks: the system call on the
// socket, under a reference on rf (or wf).
func (c *Conn) read(uintptr) bool {
	c.rn, c.rerr = syscall.Read(c.sock, c.rbuf)
	return c.rerr != syscall.EAGAIN
}

func (c *Conn) control(uintptr) { c.ctlF(uintptr(c.sock)) }

func (c *Conn) write(uintptr) bool {
	c.sn, c.serr = syscall.Write(c.sock, c.sbuf)
	return true // never waits here: rf does not signal output
}

func (c *Conn) writeOrWait(uintptr) bool {
	c.sn, c.serr = syscall.Write(c.sock, c.sbuf)
	return c.serr != syscall.EAGAIN
}

// epollFile makes an epoll instance watching sock for events
// (edge-triggered) and hands it to Go's poller as an os.File.
func epollFile(sock int, events uint32, name string) (*os.File, syscall.RawConn, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, nil, os.NewSyscallError("epoll_create1", err)
	}
	ev := syscall.EpollEvent{Events: events | epollET, Fd: int32(sock)}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, sock, &ev); err != nil {
		syscall.Close(ep)
		return nil, nil, os.NewSyscallError("epoll_ctl", err)
	}
	// Non-blocking, so that os.NewFile hands it to Go's poller (an epoll
	// descriptor has no other status flag to keep).
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(ep), syscall.F_SETFL, syscall.O_NONBLOCK); e != 0 {
		syscall.Close(ep)
		return nil, nil, os.NewSyscallError("fcntl", e)
	}
	f := os.NewFile(uintptr(ep), name) // non-blocking: Go's poller takes it
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, raw, nil
}

// epollET is EPOLLET as the uint32 EpollEvent.Events wants.
const epollET = 1 << 31

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf = p
	defer func() { c.rbuf = nil }()
	for {
		if cerr := c.rraw.Read(c.readFn); cerr != nil {
			return 0, c.opError("read", cerr)
		}
		n, err := c.rn, c.rerr
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, c.opError("read", os.NewSyscallError("read", err))
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	c.smu.Lock()
	defer c.smu.Unlock()
	defer func() { c.sbuf = nil }()
	done := 0
	for done < len(p) {
		c.sbuf = p[done:]
		if cerr := c.rraw.Write(c.writeFn); cerr != nil {
			return done, c.opError("write", cerr)
		}
		switch c.serr {
		case nil:
			done += c.sn
		case syscall.EINTR:
		case syscall.EAGAIN:
			n, err := c.waitWrite()
			done += n
			if err != nil {
				return done, err
			}
		default:
			return done, c.opError("write", os.NewSyscallError("write", c.serr))
		}
	}
	return done, nil
}

// waitWrite writes sbuf once the socket takes more, waiting on the
// output instance (made here the first time) within the write deadline.
func (c *Conn) waitWrite() (int, error) {
	c.wmu.Lock()
	if c.wclosed {
		c.wmu.Unlock()
		return 0, c.opError("write", net.ErrClosed)
	}
	if c.wf == nil {
		wf, wraw, err := epollFile(c.sock, syscall.EPOLLOUT, "unixconn-out")
		if err != nil {
			c.wmu.Unlock()
			return 0, c.opError("write", err)
		}
		wf.SetReadDeadline(c.wdl)
		c.wf, c.wraw = wf, wraw
	}
	wraw := c.wraw
	c.wmu.Unlock()
	if cerr := wraw.Read(c.waitWriteFn); cerr != nil {
		return 0, c.opError("write", cerr)
	}
	switch c.serr {
	case nil:
		return c.sn, nil
	case syscall.EINTR:
		return 0, nil
	}
	return 0, c.opError("write", os.NewSyscallError("write", c.serr))
}

// Close closes the connection: waits in Read and Write end with an error
// wrapping net.ErrClosed, and the socket is closed once no call is under
// way on it.
func (c *Conn) Close() error {
	if !c.st.closed.CompareAndSwap(false, true) {
		return c.opError("close", net.ErrClosed)
	}
	c.rf.Close() // waits for the callbacks under way
	c.wmu.Lock()
	c.wclosed = true
	if c.wf != nil {
		c.wf.Close()
	}
	c.wmu.Unlock()
	if err := syscall.Close(c.sock); err != nil {
		return c.opError("close", os.NewSyscallError("close", err))
	}
	return nil
}

func (c *Conn) LocalAddr() net.Addr  { return c.laddr }
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	if err := c.rf.SetReadDeadline(t); err != nil {
		return c.opError("set", err)
	}
	return nil
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	if err := c.rf.SetWriteDeadline(t); err != nil {
		return c.opError("set", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wdl = t
	if c.wf != nil {
		c.wf.SetReadDeadline(t)
	}
	return nil
}

// SyscallConn gives access to the socket (its Control runs with the
// connection held open; Read and Write wait for input as Conn does, and
// never for output).
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if c.st.closed.Load() {
		return nil, c.opError("raw", net.ErrClosed)
	}
	return rawConn{c}, nil
}

type rawConn struct{ c *Conn }

func (r rawConn) Control(f func(fd uintptr)) error {
	// Through a callback bound once (pmult peeks at every kept
	// connection it reuses: no closure per call).
	c := r.c
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.ctlF = f
	defer func() { c.ctlF = nil }()
	return c.rraw.Control(c.controlFn)
}

func (r rawConn) Read(f func(fd uintptr) bool) error {
	return r.c.rraw.Read(func(uintptr) bool { return f(uintptr(r.c.sock)) })
}

func (r rawConn) Write(f func(fd uintptr) bool) error {
	var done bool
	err := r.c.rraw.Write(func(uintptr) bool { done = f(uintptr(r.c.sock)); return true })
	if err == nil && !done {
		return errors.New("unixconn: RawConn.Write cannot wait for output")
	}
	return err
}

// opError wraps err as the standard library's connections do: a use
// after Close wraps net.ErrClosed, a deadline is a timeout.
func (c *Conn) opError(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = os.ErrDeadlineExceeded
	case c.st.closed.Load() || errors.Is(err, os.ErrClosed):
		// The epoll instances' os.File reports its own closing
		// ("use of closed file", internal to the poller).
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "unix", Source: c.laddr, Addr: c.raddr, Err: err}
}

func (c *Conn) String() string { return fmt.Sprintf("unixconn %v -> %v", c.laddr, c.raddr) }
