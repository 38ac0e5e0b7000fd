// smtp.go: messages per second through pmult's SMTP front (adapters/smtp:
// an SMTP client, the front, the null backends, a go-smtp next hop in
// process, whose work is counted against the front) against the milter
// front (a milter client playing the MTA, the same backends), in the same
// run: the same message (3 headers, a 2 KiB body, 1 recipient), one
// client connection per message on both sides. The SMTP client pipelines
// MAIL, RCPT and DATA as Postfix's smtp(8) does. The front relays with its
// next-hop connection cache on, as [smtp] next_hop_cache defaults to (one
// next-hop connection per concurrent message, reused). The front is also
// measured dropping each message instead of relaying it (the next hop's
// cost left out).

package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
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
func (dropSession) Reset()                                      {}
func (dropSession) Logout() error                               { return nil }
func (dropSession) Mail(string, *gosmtp.MailOptions) error      { return nil }
func (dropSession) Rcpt(string, *gosmtp.RcptOptions) error      { return nil }
func (dropSession) Data(r io.Reader) error                      { _, err := io.Copy(io.Discard, r); return err }

// SMTPFront is an in-process SMTP front relaying to a dropping next hop,
// in process too (its work is counted against the SMTP front).
type SMTPFront struct {
	Addr  string
	srv   *smtpfront.Server
	hop   *gosmtp.Server
	relay *relay.Relay
}

// StartSMTPFront starts the SMTP front with the given null backends;
// without hop, it drops every message itself instead of relaying it (the
// front's own cost, the next hop's left out).
func StartSMTPFront(backends []string, hop bool) (*SMTPFront, error) {
	log := slog.New(slog.DiscardHandler)
	next := gosmtp.NewServer(nextHop{})
	next.Domain = "hop.bench"
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go next.Serve(hln)
	r, err := relay.New(relay.Config{Address: "inet:" + hln.Addr().String(), HeloName: "pmult.bench", Cache: true}, log)
	if err != nil {
		next.Close()
		return nil, err
	}
	eng := &pmult.Engine{Log: log}
	for i, a := range backends {
		eng.Slots = append(eng.Slots, pmult.Slot{Backend: backend.New(backend.Config{
			Name: fmt.Sprintf("null%d", i+1), Network: "tcp", Address: a})})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		next.Close()
		return nil, err
	}
	f := &SMTPFront{Addr: ln.Addr().String(), hop: next, relay: r,
		srv: &smtpfront.Server{Engine: eng, Log: log, NextHop: smtpfront.RelayHop(r), Hostname: "pmult.bench"}}
	if !hop {
		f.srv.NextHop = dropHop{}
	}
	go f.srv.Serve(ln)
	return f, nil
}

// Stop shuts the front and its next hop down.
func (f *SMTPFront) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.srv.Shutdown(ctx)
	f.relay.Close()
	f.hop.Close()
}

// SMTPMessage sends one message through an SMTP server at addr as
// Postfix's smtp(8) client does (a content_filter's sender): EHLO, then
// MAIL, RCPT and DATA in one write (PIPELINING), the message, QUIT.
func SMTPMessage(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	expect := func(code string) error {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, code) {
				return fmt.Errorf("got %q, want %s", strings.TrimSpace(line), code)
			}
			if len(line) < 4 || line[3] != '-' {
				return nil
			}
		}
	}
	if err := expect("220"); err != nil {
		return err
	}
	if _, err := io.WriteString(nc, "EHLO client.example.org\r\n"); err != nil {
		return err
	}
	if err := expect("250"); err != nil {
		return err
	}
	if _, err := io.WriteString(nc, "MAIL FROM:<sender@example.org>\r\nRCPT TO:<rcpt0@example.com>\r\nDATA\r\n"); err != nil {
		return err
	}
	for _, code := range []string{"250", "250", "354"} {
		if err := expect(code); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(nc, smtpMessage+".\r\n"); err != nil {
		return err
	}
	if err := expect("250"); err != nil {
		return err
	}
	if _, err := io.WriteString(nc, "QUIT\r\n"); err != nil {
		return err
	}
	return expect("221")
}

// FrontsCompared is the SMTP front against the milter front.
type FrontsCompared struct {
	Backends int
	// Messages per second through the SMTP front (relaying to a next
	// hop), through it without the next hop (dropping), and through the
	// milter front.
	SMTPRate, NoHopRate, MilterRate float64
	Errors                          int
}

// Ratio is SMTP / milter messages per second.
func (c FrontsCompared) Ratio() float64 { return c.SMTPRate / c.MilterRate }

// NoHopRatio is SMTP-without-next-hop / milter messages per second.
func (c FrontsCompared) NoHopRatio() float64 { return c.NoHopRate / c.MilterRate }

// CompareFronts measures messages per second through the SMTP front and
// through the milter front on the same null backends, alternating runs
// (two of each) to even out the shared machine's noise.
func CompareFronts(backends []string, conc int, dur time.Duration) (FrontsCompared, error) {
	sf, err := StartSMTPFront(backends, true)
	if err != nil {
		return FrontsCompared{}, err
	}
	defer sf.Stop()
	nf, err := StartSMTPFront(backends, false)
	if err != nil {
		return FrontsCompared{}, err
	}
	defer nf.Stop()
	mux, err := StartMux(backends, false)
	if err != nil {
		return FrontsCompared{}, err
	}
	defer mux.Stop()
	out := FrontsCompared{Backends: len(backends)}
	var sN, nN, mN int
	var sT, nT, mT time.Duration
	for i := 0; i < 2; i++ {
		s := load(conc, dur/2, 0, func() error { return SMTPMessage(sf.Addr) })
		m := Load(mux.Addr, conc, dur/2, 0)
		n := load(conc, dur/2, 0, func() error { return SMTPMessage(nf.Addr) })
		sN, sT, mN, mT, nN, nT = sN+s.Sessions, sT+s.Elapsed, mN+m.Sessions, mT+m.Elapsed, nN+n.Sessions, nT+n.Elapsed
		out.Errors += s.Errors + m.Errors + n.Errors
	}
	out.SMTPRate, out.NoHopRate, out.MilterRate = float64(sN)/sT.Seconds(), float64(nN)/nT.Seconds(), float64(mN)/mT.Seconds()
	return out, nil
}

// dropHop is a NextHop that reads every message and drops it.
type dropHop struct{}
type dropTxn struct{}

func (dropHop) Begin(context.Context, smtpfront.Origin, string, *gosmtp.MailOptions) (smtpfront.Txn, error) {
	return dropTxn{}, nil
}
func (dropHop) ClientReply(error) *gosmtp.SMTPError                      { return nil }
func (dropTxn) Rcpt(context.Context, string, *gosmtp.RcptOptions) error  { return nil }
func (dropTxn) Reset(context.Context, string, *gosmtp.MailOptions) error { return nil }
func (dropTxn) Data(_ context.Context, r io.Reader) ([]error, error) {
	var buf [4096]byte
	for {
		if _, err := r.Read(buf[:]); err == io.EOF {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
	}
}
func (dropTxn) Close() error { return nil }
func (dropTxn) Abort() error { return nil }
