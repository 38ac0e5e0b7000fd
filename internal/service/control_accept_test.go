package service

import (
	"bufio"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// flakyListener fails its first accepts with the errors in errs (then
// accepts from the real listener).
type flakyListener struct {
	net.Listener
	errs chan error
}

func (l flakyListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	default:
		return l.Listener.Accept()
	}
}

// TestControlAcceptRetries: a passing accept error (out of file
// descriptors) does not stop the control socket: it is logged, retried,
// and the next request is answered; Close ends the loop.
func TestControlAcceptRetries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	errs <- syscall.EMFILE
	errs <- syscall.ECONNABORTED
	log := &pmulttest.LogBuffer{}
	c := newControl(flakyListener{ln, errs}, pmult.NewRecorder(4), nil, pmulttest.NewLog(log))
	defer c.Close(path)
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second)) // a bound on a hang, not a timing check
	if _, err := nc.Write([]byte("why nosuch\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || line != "not found: nosuch\n" {
		t.Fatalf("answer %q, %v (the control socket stopped at the accept error?)", line, err)
	}
	if got := log.String(); strings.Count(got, "control socket: accept failed, retrying") != 2 {
		t.Errorf("want two retry lines:\n%s", got)
	}
}
