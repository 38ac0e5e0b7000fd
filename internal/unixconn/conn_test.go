//go:build linux

package unixconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a Conn and the plain unix connection at its other end,
// both closed at the end of the test.
func pair(t *testing.T) (*Conn, *net.UnixConn) {
	t.Helper()
	c, peer := rawPair(t)
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

// rawPair is pair without the cleanup.
func rawPair(t *testing.T) (*Conn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.UnixConn, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	d, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(d.(*net.UnixConn))
	if err != nil {
		t.Fatal(err)
	}
	return c, <-accepted
}

func TestEcho(t *testing.T) {
	c, peer := pair(t)
	go io.Copy(peer, peer)
	for i := range 100 {
		msg := bytes.Repeat([]byte{byte(i)}, 1+i*37)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("round %d: echo differs", i)
		}
	}
	if c.LocalAddr() == nil || c.RemoteAddr() == nil || c.RemoteAddr().Network() != "unix" {
		t.Errorf("addresses %v %v", c.LocalAddr(), c.RemoteAddr())
	}
}

func TestEOF(t *testing.T) {
	c, peer := pair(t)
	peer.Write([]byte("bye"))
	peer.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "bye" {
		t.Fatalf("ReadAll: %q, %v", b, err)
	}
}

func timeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

func TestReadDeadline(t *testing.T) {
	c, peer := pair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := c.Read(make([]byte, 10))
	if !timeout(err) {
		t.Fatalf("Read: %v, want a timeout", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	// A deadline in the past fails the read even with data waiting, as
	// for the standard library's connections (pmult stops I/O so).
	peer.Write([]byte("x"))
	time.Sleep(10 * time.Millisecond)
	c.SetReadDeadline(time.Unix(1, 0))
	if _, err := c.Read(make([]byte, 10)); !timeout(err) {
		t.Fatalf("Read past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	if n, err := c.Read(make([]byte, 10)); n != 1 || err != nil {
		t.Fatalf("Read after clearing the deadline: %d, %v", n, err)
	}
}

// A deadline set while a Read waits ends the wait (watchMTA's way).
func TestDeadlineWakesRead(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now())
	select {
	case err := <-errc:
		if !timeout(err) {
			t.Fatalf("Read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waiting")
	}
}

func TestCloseWakesRead(t *testing.T) {
	c, peer := pair(t)
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waiting")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	// The peer sees the end of the stream.
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read: %v, want EOF", err)
	}
}

// More than the socket buffers hold, to a reader that takes its time:
// the write waits for room (the output instance) and completes.
func TestLargeWriteWaits(t *testing.T) {
	c, peer := pair(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for got.Len() < len(msg) {
			time.Sleep(time.Millisecond)
			n, err := peer.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Write(msg); n != len(msg) || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), msg) {
		t.Fatal("data differs")
	}
	if c.wf == nil {
		t.Error("the write never waited for room")
	}
}

// A peer that reads nothing: the write times out at its deadline with
// what was written counted.
func TestWriteDeadline(t *testing.T) {
	c, _ := pair(t)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := c.Write(make([]byte, 16<<20))
	if !timeout(err) {
		t.Fatalf("Write: %d, %v, want a timeout", n, err)
	}
	if n <= 0 || n >= 16<<20 {
		t.Fatalf("wrote %d", n)
	}
}

func TestSyscallConn(t *testing.T) {
	c, peer := pair(t)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	peek := func() error {
		var rerr error
		if err := rc.Control(func(fd uintptr) {
			var b [1]byte
			_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		}); err != nil {
			return err
		}
		return rerr
	}
	if err := peek(); err != syscall.EAGAIN {
		t.Fatalf("peek on an idle connection: %v", err)
	}
	peer.Write([]byte("x"))
	time.Sleep(10 * time.Millisecond)
	if err := peek(); err != nil {
		t.Fatalf("peek with data: %v", err)
	}
	c.Close()
	if err := rc.Control(func(uintptr) {}); err == nil {
		t.Fatal("Control after Close succeeded")
	}
}

// Reads, writes and Close from several goroutines at once (go test -race):
// every call returns, with data or an error.
func TestConcurrentClose(t *testing.T) {
	for range 50 {
		c, peer := pair(t)
		go io.Copy(peer, peer)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 100)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				if _, err := c.Write([]byte("ping")); err != nil {
					return
				}
			}
		}()
		time.Sleep(time.Millisecond)
		c.Close()
		wg.Wait()
	}
}

// Reads and writes allocate nothing (pmult makes dozens per message).
func TestNoAllocs(t *testing.T) {
	c, peer := pair(t)
	go io.Copy(peer, peer)
	msg := []byte("0123456789")
	buf := make([]byte, len(msg))
	roundTrip := func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	if n := testing.AllocsPerRun(200, roundTrip); n != 0 {
		t.Fatalf("%.1f allocations per write and read", n)
	}
	// SyscallConn's Control with a callback bound once (pmult peeks at
	// each kept connection it reuses).
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var seen uintptr
	peek := func(fd uintptr) { seen = fd }
	if n := testing.AllocsPerRun(200, func() { rc.Control(peek) }); n != 0 {
		t.Fatalf("%.1f allocations per Control", n)
	}
	if seen != uintptr(c.sock) {
		t.Fatalf("Control gave descriptor %d, the socket is %d", seen, c.sock)
	}
}

// The point of the package: the peer reading what was written does not
// make the connection's epoll instance ready (nothing is woken), its
// writing does.
func TestQuietOnPeerRead(t *testing.T) {
	c, peer := pair(t)
	ready := func() int {
		var n int
		var werr error
		if err := c.rraw.Control(func(fd uintptr) {
			evs := make([]syscall.EpollEvent, 4)
			n, werr = syscall.EpollWait(int(fd), evs, 0)
		}); err != nil {
			t.Fatal(err)
		}
		if werr != nil {
			t.Fatal(werr)
		}
		return n
	}
	if n := ready(); n != 0 {
		t.Fatalf("%d events on an idle connection", n)
	}
	for range 3 {
		if _, err := c.Write([]byte("command")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, make([]byte, 7)); err != nil {
			t.Fatal(err)
		}
		if n := ready(); n != 0 {
			t.Fatalf("the peer's read made %d events", n)
		}
	}
	peer.Write([]byte("answer"))
	time.Sleep(10 * time.Millisecond)
	if n := ready(); n != 1 {
		t.Fatalf("the peer's write made %d events, want 1", n)
	}
}

// A Conn dropped without Close gives its socket back when collected:
// the peer sees the end of the stream.
func TestDroppedConnCloses(t *testing.T) {
	peer := func() *net.UnixConn {
		_, peer := rawPair(t) // the Conn is dropped here
		return peer
	}()
	defer peer.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := peer.Read(make([]byte, 1))
		if err == io.EOF {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dropped connection's socket is still open: %v", err)
		}
	}
}

// Dial: a Conn made directly; a missing socket's error reads as
// net.Dial's.
func TestDial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	c, err := Dial(t.Context(), path, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("Dial returned a %T", c)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	if c.RemoteAddr().String() != path {
		t.Errorf("RemoteAddr %v", c.RemoteAddr())
	}
	_, err = Dial(t.Context(), path+".missing", time.Time{})
	_, want := net.Dial("unix", path+".missing")
	if err == nil || want == nil || err.Error() != want.Error() {
		t.Fatalf("Dial to a missing socket: %v, net.Dial says %v", err, want)
	}
}
