// protocol.go: the calloutd line protocol: parsing command lines (VRFY,
// GET, SID, TIMEOUT, RUN, DROP, QUIT; case-insensitive), formatting them
// for the client, and the exact error texts of mailfromd's calloutd 8.15.
//
// Extensions over calloutd, all of which calloutd answers with an error:
// VRFY options may be written "key value" as in the manual as well as
// "key=value" as calloutd takes them; host=IP:PORT probes that port.
// RUN's reply may hold two more progress stages, cached and nohost (see
// StageCached).
//
// Undocumented commands of calloutd 8.15 that mailfromd's own client
// (callout.mfl) sends, served too: SET NAME="VALUE" for the session's
// EHLO, MAILFROM, STARTTLS and TRANSCRIPT (quoted, with backslash
// escapes; an unknown name gets "NO bad assignment NAME=VALUE"), and VRFY
// "ADDRESS" with the address in double quotes.
// Limits: MaxLineDefault (1023 bytes with CRLF, calloutd's).

package callout

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// Result and friends, re-exported for users of this package.
type (
	Result   = smtpprobe.Result
	Request  = smtpprobe.Request
	Timeouts = smtpprobe.Timeouts
	Event    = smtpprobe.Event
)

// Results.
const (
	Success     = smtpprobe.Success
	NotFound    = smtpprobe.NotFound
	Failure     = smtpprobe.Failure
	TempFailure = smtpprobe.TempFailure
	Timeout     = smtpprobe.Timeout
)

// Progress stages our server adds to calloutd's (INIT, GRTNG, HELO,
// SENT, RECV), as the last lines of an id in RUN's reply: "cached RESULT"
// when the answer came from the cache (no host was contacted), "nohost
// REASON" when the domain has no mail host. mailfromd's calloutd sends
// neither. They are in lower case so that mailfromd's own client
// (callout.mfl, which reads stages matching [A-Z]+ and takes an answer
// without any as coming from the cache, cache_used) ignores them and
// reads our answers as it reads calloutd's.
const (
	StageCached = "cached"
	StageNoHost = "nohost"
)

// Greeting is calloutd's greeting line.
const Greeting = "OK mailfromd callout server ready"

// MaxLineDefault is the longest command line, CRLF included, that
// calloutd accepts; longer lines get "NO bad input".
const MaxLineDefault = 1023

// The error texts of calloutd (after "NO ").
const (
	ErrEmpty          = "empty command"
	ErrUnknownCommand = "unknown command"
	ErrInvalidArgs    = "invalid arguments"
	ErrSyntax         = "syntax error"
	ErrUnknownAttr    = "unknown attribute"
	ErrModeValue      = "unrecognized value for mode"
	ErrTLSValue       = "unrecognized value for tls"
	ErrModeNeedsHost  = "mode requires host"
	ErrNoEntry        = "entry not found"
	ErrBadInput       = "bad input"
	// Our own.
	ErrQueueFull = "too many addresses queued"
)

// ProtoError is a protocol error: the server answers "NO " + Text.
type ProtoError struct{ Text string }

func (e *ProtoError) Error() string { return "NO " + e.Text }

func perr(text string) error { return &ProtoError{Text: text} }

// Command is one parsed command line.
type Command struct {
	Verb string   // upper case: VRFY, GET, SID, TIMEOUT, RUN, DROP, QUIT, SET
	Args []string // split at spaces and tabs
}

var verbs = map[string]bool{"VRFY": true, "GET": true, "SID": true, "TIMEOUT": true,
	"RUN": true, "DROP": true, "QUIT": true, "SET": true}

// ParseLine splits a command line (without its line end) into verb and
// arguments. Errors are *ProtoError with calloutd's texts.
func ParseLine(line string) (Command, error) {
	f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' })
	if len(f) == 0 {
		return Command{}, perr(ErrEmpty)
	}
	v := strings.ToUpper(f[0])
	if !verbs[v] {
		return Command{}, perr(ErrUnknownCommand)
	}
	return Command{Verb: v, Args: f[1:]}, nil
}

var vrfyKeys = map[string]bool{"mode": true, "host": true, "ehlo": true, "mailfrom": true, "starttls": true}

// ParseVrfy parses the arguments of VRFY: an address, then options
// mode=, host=, ehlo=, mailfrom=, starttls= (keys case-insensitive, values
// as given; "key value" pairs are accepted too).
func ParseVrfy(args []string) (smtpprobe.Request, error) {
	var req smtpprobe.Request
	if len(args) == 0 {
		return req, perr(ErrInvalidArgs)
	}
	req.Email = args[0]
	if q := req.Email; len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"' {
		req.Email = unescape(q[1 : len(q)-1]) // mailfromd's client quotes it
	}
	if req.Email == "" {
		return req, perr(ErrInvalidArgs) // VRFY ""
	}
	for i := 1; i < len(args); i++ {
		k, v, ok := strings.Cut(args[i], "=")
		if !ok {
			// "mode hostonly", as the manual writes it.
			if !vrfyKeys[strings.ToLower(k)] || i+1 >= len(args) || strings.Contains(args[i+1], "=") {
				return req, perr(ErrSyntax)
			}
			i++
			v = args[i]
		}
		switch strings.ToLower(k) {
		case "mode":
			m, err := smtpprobe.ParseMode(v)
			if err != nil {
				return req, perr(ErrModeValue)
			}
			req.Mode = m
		case "host":
			req.Host = v
		case "ehlo":
			req.Ehlo = v
		case "mailfrom":
			req.MailFrom = v
		case "starttls":
			s, err := smtpprobe.ParseStartTLS(v)
			if err != nil {
				return req, perr(ErrTLSValue)
			}
			req.StartTLS = s
		default:
			return req, perr(ErrUnknownAttr)
		}
	}
	if req.Mode.NeedsHost() && req.Host == "" {
		return req, perr(ErrModeNeedsHost)
	}
	return req, nil
}

// FormatVrfy writes a VRFY command line (without line end) in the
// key=value form calloutd takes; options at their defaults are left out.
func FormatVrfy(req smtpprobe.Request) (string, error) {
	var b strings.Builder
	check := func(what, s string) error {
		if s == "" && what == "address" || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Errorf("callout: %s %q cannot be sent (empty or with white space)", what, s)
		}
		return nil
	}
	if err := check("address", req.Email); err != nil {
		return "", err
	}
	b.WriteString("VRFY ")
	if e := req.Email; len(e) >= 2 && e[0] == '"' && e[len(e)-1] == '"' {
		// A quoted local part spanning the whole address: quote it again,
		// or ParseVrfy would take the quotes for the client's.
		b.WriteByte('"')
		for i := 0; i < len(e); i++ {
			if e[i] == '"' || e[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(e[i])
		}
		b.WriteByte('"')
	} else {
		b.WriteString(e)
	}
	if req.Mode != smtpprobe.MXFirst {
		b.WriteString(" mode=" + req.Mode.String())
	}
	for _, kv := range [][2]string{{"host", req.Host}, {"ehlo", req.Ehlo}, {"mailfrom", req.MailFrom}, {"starttls", req.StartTLS.String()}} {
		if kv[1] == "" {
			continue
		}
		if err := check(kv[0], kv[1]); err != nil {
			return "", err
		}
		b.WriteString(" " + kv[0] + "=" + kv[1])
	}
	return b.String(), nil
}

// ParseTimeouts parses TIMEOUT's seven integers (seconds, in the order
// connect, initial, helo, mail, rcpt, rset, quit). Values below 1 keep
// the server's value for that stage.
func ParseTimeouts(args []string) (smtpprobe.Timeouts, error) {
	if len(args) != 7 {
		return smtpprobe.Timeouts{}, perr(ErrInvalidArgs)
	}
	v := make([]time.Duration, 7)
	for i, a := range args {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return smtpprobe.Timeouts{}, perr(fmt.Sprintf("%s in #%d", ErrSyntax, i+1))
		}
		if n > 0 {
			if n > int64(365*24*time.Hour/time.Second) {
				n = int64(365 * 24 * time.Hour / time.Second)
			}
			v[i] = time.Duration(n) * time.Second
		}
	}
	return smtpprobe.TimeoutsFrom(v)
}

// FormatTimeouts writes a TIMEOUT command line (whole seconds, at least 1).
func FormatTimeouts(t smtpprobe.Timeouts) string {
	var b strings.Builder
	b.WriteString("TIMEOUT")
	for _, d := range t.Slice() {
		s := int64((d + time.Second - 1) / time.Second)
		if s < 1 {
			s = 1
		}
		b.WriteString(" " + strconv.FormatInt(s, 10))
	}
	return b.String()
}

// FormatID writes a queue id as calloutd does: ten digits.
func FormatID(id uint64) string { return fmt.Sprintf("%010d", id) }

// ParseID parses a queue id (any decimal number).
func ParseID(s string) (uint64, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, perr(ErrSyntax)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, perr(ErrSyntax)
	}
	return n, nil
}

// IDResult is one "id=result" pair of RUN's reply.
type IDResult struct {
	ID     string
	Result Result
}

// ParseRunReply parses the text after "OK" of RUN's reply.
func ParseRunReply(text string) ([]IDResult, error) {
	var out []IDResult
	for _, f := range strings.Fields(text) {
		id, res, ok := strings.Cut(f, "=")
		if !ok || id == "" {
			return nil, fmt.Errorf("callout: bad RUN result %q", f)
		}
		r, err := smtpprobe.ParseResult(res)
		if err != nil {
			return nil, fmt.Errorf("callout: RUN result %q: %w", f, err)
		}
		out = append(out, IDResult{ID: id, Result: r})
	}
	return out, nil
}

// ErrBadAssignment starts the error text of a SET calloutd does not know.
const ErrBadAssignment = "bad assignment"

// ParseSet parses the argument of SET (the rest of the line after the
// verb): NAME="VALUE" or NAME=VALUE. name is upper case; the value has
// its quotes and backslash escapes removed.
func ParseSet(rest string) (name, value string, err error) {
	k, v, ok := strings.Cut(strings.TrimSpace(rest), "=")
	if !ok || k == "" || strings.ContainsAny(k, " \t") {
		return "", "", perr(ErrInvalidArgs)
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = unescape(v[1 : len(v)-1])
	}
	return strings.ToUpper(k), v, nil
}

// unescape removes backslash escapes (\x is x).
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
