// types.go: the values a probe is described and answered with: Result,
// Mode, StartTLS, Timeouts (with mailfromd's soft and hard defaults), Request,
// Event (progress lines) and Outcome.
//
// Defaults: SoftTimeouts (connect 10s, initial response 30s, helo, mail,
// rcpt, rset and quit 3s each, mailfromd's io-timeout) and HardTimeouts
// (5m, 5m, 5m, 10m, 5m, 5m, 2m, RFC 5321 values as in mailfromd).

package smtpprobe

import (
	"fmt"
	"strings"
	"time"
)

// Result is the answer of a probe, with calloutd's names.
type Result uint8

// Results. The zero value is not a valid result.
const (
	Success     Result = iota + 1 // the server accepted the recipient
	NotFound                      // a definite no (5xx, or no such domain)
	Failure                       // a permanent problem that proves nothing
	TempFailure                   // 4xx, or no host could be asked: try later
	Timeout                       // the overall probe deadline expired
)

var resultNames = [...]string{"", "success", "not_found", "failure", "temp_failure", "timeout"}

// String returns calloutd's name of r ("success", "not_found", ...).
func (r Result) String() string {
	if int(r) < len(resultNames) && r != 0 {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// Definite reports whether r says something about the address
// (success or not_found), as opposed to a failure to find out.
func (r Result) Definite() bool { return r == Success || r == NotFound }

// ParseResult parses a result name as calloutd writes it.
func ParseResult(s string) (Result, error) {
	for i, n := range resultNames {
		if i > 0 && n == s {
			return Result(i), nil
		}
	}
	return 0, fmt.Errorf("smtpprobe: unknown result %q", s)
}

// Mode selects the hosts a probe asks.
type Mode uint8

// Modes; the zero value is MXFirst, calloutd's default.
const (
	MXFirst   Mode = iota // MX hosts of the domain by preference; its A/AAAA when it has no MX
	MXOnly                // MX hosts of Request.Host only
	HostOnly              // Request.Host (a name or an IP address) only
	HostFirst             // Request.Host, then the MX hosts of Request.Host
)

var modeNames = [...]string{"mxfirst", "mxonly", "hostonly", "hostfirst"}

// String returns the mode's protocol name.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// NeedsHost reports whether the mode requires Request.Host.
func (m Mode) NeedsHost() bool { return m != MXFirst }

// ParseMode parses a mode name as calloutd does: case-sensitive, with
// "default" meaning mxfirst.
func ParseMode(s string) (Mode, error) {
	if s == "default" {
		return MXFirst, nil
	}
	for i, n := range modeNames {
		if n == s {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("smtpprobe: unknown mode %q", s)
}

// StartTLS is the STARTTLS policy of a probe.
type StartTLS uint8

// STARTTLS policies. The zero value means "the prober's default".
const (
	StartTLSDefault  StartTLS = iota
	StartTLSNever             // never issue STARTTLS
	StartTLSAlways            // whenever the server offers it
	StartTLSOnDemand          // only after MAIL FROM was answered 530
)

var tlsNames = [...]string{"", "never", "always", "ondemand"}

// String returns the policy's protocol name ("" for the default).
func (s StartTLS) String() string {
	if int(s) < len(tlsNames) {
		return tlsNames[s]
	}
	return fmt.Sprintf("starttls(%d)", uint8(s))
}

// ParseStartTLS parses never, always or ondemand (case-sensitive, as
// calloutd).
func ParseStartTLS(s string) (StartTLS, error) {
	for i, n := range tlsNames {
		if i > 0 && n == s {
			return StartTLS(i), nil
		}
	}
	return 0, fmt.Errorf("smtpprobe: unknown starttls policy %q", s)
}

// Timeouts are the per-stage limits of an SMTP probe, in calloutd's
// TIMEOUT order. A zero field means "the prober's value".
type Timeouts struct {
	Connect time.Duration // TCP connection
	Initial time.Duration // the server's greeting
	Helo    time.Duration // reply to EHLO or HELO (and STARTTLS)
	Mail    time.Duration // reply to MAIL FROM
	Rcpt    time.Duration // reply to RCPT TO
	Rset    time.Duration // reply to RSET
	Quit    time.Duration // reply to QUIT
}

// SoftTimeouts returns mailfromd's soft timeouts: short enough to answer
// while the SMTP client that triggered the probe still waits.
func SoftTimeouts() Timeouts {
	io := 3 * time.Second
	return Timeouts{Connect: 10 * time.Second, Initial: 30 * time.Second,
		Helo: io, Mail: io, Rcpt: io, Rset: io, Quit: io}
}

// HardTimeouts returns mailfromd's hard timeouts (RFC 5321 values), used
// for probes completed in the background.
func HardTimeouts() Timeouts {
	return Timeouts{Connect: 5 * time.Minute, Initial: 5 * time.Minute,
		Helo: 5 * time.Minute, Mail: 10 * time.Minute, Rcpt: 5 * time.Minute,
		Rset: 5 * time.Minute, Quit: 2 * time.Minute}
}

// Or returns t with its zero fields taken from d.
func (t Timeouts) Or(d Timeouts) Timeouts {
	pick := func(a, b time.Duration) time.Duration {
		if a > 0 {
			return a
		}
		return b
	}
	return Timeouts{pick(t.Connect, d.Connect), pick(t.Initial, d.Initial), pick(t.Helo, d.Helo),
		pick(t.Mail, d.Mail), pick(t.Rcpt, d.Rcpt), pick(t.Rset, d.Rset), pick(t.Quit, d.Quit)}
}

// Slice returns the seven timeouts in TIMEOUT order.
func (t Timeouts) Slice() []time.Duration {
	return []time.Duration{t.Connect, t.Initial, t.Helo, t.Mail, t.Rcpt, t.Rset, t.Quit}
}

// TimeoutsFrom builds Timeouts from seven values in TIMEOUT order.
func TimeoutsFrom(v []time.Duration) (Timeouts, error) {
	if len(v) != 7 {
		return Timeouts{}, fmt.Errorf("smtpprobe: want 7 timeouts, got %d", len(v))
	}
	return Timeouts{v[0], v[1], v[2], v[3], v[4], v[5], v[6]}, nil
}

// Request is one address to verify and how.
type Request struct {
	// Email is the address to verify, with or without angle brackets.
	Email string
	// Mode selects the hosts to ask (default MXFirst).
	Mode Mode
	// Host is the domain (MXFirst, MXOnly) or the host name or IP
	// address (HostOnly, HostFirst). A host may carry a port
	// ("127.0.0.2:2525", "[::1]:2525"), an extension: calloutd always
	// uses port 25.
	Host string
	// Ehlo is the EHLO argument; empty: the prober's.
	Ehlo string
	// MailFrom is the MAIL FROM address; empty: the prober's. "<>" is
	// the null sender.
	MailFrom string
	// StartTLS is the STARTTLS policy; zero: the prober's.
	StartTLS StartTLS
	// Timeouts override the prober's per stage (zero fields: the prober's).
	Timeouts Timeouts
	// Tag labels the probe in transcript and log lines (the session id).
	Tag string
	// CatchAll asks, after a successful RCPT, whether the server also
	// accepts a random local part of the same domain (Outcome.CatchAll).
	CatchAll bool
}

// Domain returns the domain part of the address (lower case), "" when
// there is none.
func (r *Request) Domain() string {
	_, d, _ := SplitAddress(r.Email)
	return d
}

// SplitAddress strips angle brackets and splits an address at its last
// '@' into local part and domain (lower-cased, trailing dot removed).
// ok is false when there is no '@'.
func SplitAddress(email string) (local, domain string, ok bool) {
	e := strings.TrimSpace(email)
	if len(e) >= 2 && e[0] == '<' && e[len(e)-1] == '>' {
		e = e[1 : len(e)-1]
	}
	i := strings.LastIndexByte(e, '@')
	if i < 0 {
		return e, "", false
	}
	return e[:i], strings.TrimSuffix(strings.ToLower(e[i+1:]), "."), true
}

// Event is one progress line of a probe, as calloutd reports them after
// "* ID": Stage is INIT, GRTNG, HELO, SENT or RECV and Text the host name,
// the first line of a reply, a command, or "nothing".
type Event struct {
	Stage string
	Text  string
}

// Progress stages.
const (
	StageInit     = "INIT"
	StageGreeting = "GRTNG"
	StageHelo     = "HELO"
	StageSent     = "SENT"
	StageRecv     = "RECV"
)

// Outcome is the answer of a probe.
type Outcome struct {
	Result Result
	// Retry is true when the result came from the network (a host could
	// not be reached, a reply did not come, DNS failed) rather than from
	// an SMTP reply: asking again later, with longer timeouts, may give
	// a definite answer.
	Retry bool
	// DomainDead is true when the domain has no mail host at all
	// (NXDOMAIN, no MX and no address, null MX).
	DomainDead bool
	// Greeted is true when a host greeted with 2xx: the domain is up.
	Greeted bool
	// MailRefused is true when the not_found came in reply to MAIL FROM:
	// the server refused the probe's sender (often the null sender), which
	// says nothing about the address. calloutd reports it as not_found,
	// as mailfromd's does; Verifier.MailRefusedFailure makes it failure.
	MailRefused bool
	// CatchAll is true when catch-all detection was asked for and the
	// server also accepted a random local part.
	CatchAll bool
	// Host is the host that gave the answer ("" when none did).
	Host string
	// Reply is the first line of the last SMTP reply ("" when none).
	Reply string
	// Err says what went wrong when Result is not Success or NotFound
	// from an SMTP reply.
	Err error
}
