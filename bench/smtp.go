// smtp.go: messages per second through pmult's SMTP front (adapters/smtp:
// an SMTP client, the front, the null backends, a go-smtp next hop in
// process) against the milter front (a milter client playing the MTA, the
// same backends), in the same run: the same message (3 headers, a 2 KiB
// body, 1 recipient), one connection per message on both sides.

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	smtpfront "github.com/mailmux/mailmux/adapters/smtp"
	"github.com/mailmux/mailmux/adapters/smtp/relay"
	backend "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/pmult"
)

// smtpMessage is the message of the milter script as SMTP text.
var smtpMessage = "From: sender@example.org\r\nTo: rcpt0@example.com\r\nSubject: benchmark\r\n\r\n" +
	strings.Repeat(strings.Repeat("x", 62)+"\r\n", 2048/64)

// nextHop is an in-process go-smtp server that accepts and drops.
type nextHop struct{}

type dropSession struct{}

func (nextHop) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return dropSession{}, nil }
func (dropSession) Reset()                                        {}
func (dropSession) Logout() error                                 { return nil }
func (dropSession) Mail(string, *gosmtp.MailOptions) error        { return nil }
func (dropSession) Rcpt(string, *gosmtp.RcptOptions) error        { return nil }
func (dropSession) Data(r io.Reader) error                        { _, err := io.Copy(io.Discard, r); return err }

// SMTPFront is an in-process SMTP front relaying to a dropping next hop.
type SMTPFront struct {
	Addr string
	srv  *smtpfront.Server
	hop  *gosmtp.Server
}

// StartSMTPFront starts the SMTP front with the given null backends.
func StartSMTPFront(backends []string) (*SMTPFront, error) {
	log := slog.New(slog.DiscardHandler)
	hop := gosmtp.NewServer(nextHop{})
	hop.Domain = "hop.bench"
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go hop.Serve(hln)
	r, err := relay.New(relay.Config{Address: "inet:" + hln.Addr().String(), HeloName: "pmult.bench"}, log)
	if err != nil {
		hop.Close()
		return nil, err
	}
	eng := &pmult.Engine{Log: log}
	for i, a := range backends {
		eng.Slots = append(eng.Slots, pmult.Slot{Backend: backend.New(backend.Config{
			Name: fmt.Sprintf("null%d", i+1), Network: "tcp", Address: a})})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hop.Close()
		return nil, err
	}
	f := &SMTPFront{Addr: ln.Addr().String(), hop: hop,
		srv: &smtpfront.Server{Engine: eng, Log: log, NextHop: smtpfront.RelayHop(r), Hostname: "pmult.bench"}}
	go f.srv.Serve(ln)
	return f, nil
}

// Stop shuts the front and its next hop down.
func (f *SMTPFront) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.srv.Shutdown(ctx)
	f.hop.Close()
}

// SMTPMessage sends one message through an SMTP server at addr.
func SMTPMessage(addr string) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		return err
	}
	if err := c.SendMail("sender@example.org", []string{"rcpt0@example.com"}, strings.NewReader(smtpMessage)); err != nil {
		return err
	}
	return c.Quit()
}

// loadFunc runs f with conc workers for dur.
func loadFunc(conc int, dur time.Duration, f func() error) Result {
	var n, errs atomic.Int64
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if err := f(); err != nil {
					errs.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return Result{Sessions: int(n.Load()), Elapsed: time.Since(start), Errors: int(errs.Load())}
}

// FrontsCompared is the SMTP front against the milter front.
type FrontsCompared struct {
	Backends           int
	SMTPRate, MilterMs float64 // messages per second through each front
	Errors             int
}

// Ratio is SMTP / milter messages per second.
func (c FrontsCompared) Ratio() float64 { return c.SMTPRate / c.MilterMs }

// CompareFronts measures messages per second through the SMTP front and
// through the milter front on the same null backends, alternating runs
// (two of each) to even out the shared machine's noise.
func CompareFronts(backends []string, conc int, dur time.Duration) (FrontsCompared, error) {
	sf, err := StartSMTPFront(backends)
	if err != nil {
		return FrontsCompared{}, err
	}
	defer sf.Stop()
	mux, err := StartMux(backends, false)
	if err != nil {
		return FrontsCompared{}, err
	}
	defer mux.Stop()
	out := FrontsCompared{Backends: len(backends)}
	var sN, mN int
	var sT, mT time.Duration
	for i := 0; i < 2; i++ {
		s := loadFunc(conc, dur/2, func() error { return SMTPMessage(sf.Addr) })
		m := Load(mux.Addr, conc, dur/2, 0)
		sN, sT, mN, mT = sN+s.Sessions, sT+s.Elapsed, mN+m.Sessions, mT+m.Elapsed
		out.Errors += s.Errors + m.Errors
	}
	out.SMTPRate, out.MilterMs = float64(sN)/sT.Seconds(), float64(mN)/mT.Seconds()
	return out, nil
}
