// meta1.go: the macros of a MeTA1 front end, by name (the integer ids MeTA1
// uses on the wire belong to the codec in adapters/meta1/pmilter): the pmilter
// stages, the MeTA1 macros a define-macros statement may request and
// pmult's restrictions on them, and the macros the multiplexer synthesises
// itself in each stage (mailfromd manual, "Translating MeTA1 macros").
//
// Tunables and defaults: DefaultMeta1MaxMacros (8, MeTA1's PM_MAX_MACROS up
// to 1.0.PreAlpha28.0) macros per stage unless configured otherwise.

package macros

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Meta1Stage is a pmilter stage, as define-macros names them.
type Meta1Stage int

// pmilter stages. Data covers headers and body (there is one stage).
const (
	M1Connect Meta1Stage = iota
	M1Helo
	M1Mail
	M1Rcpt
	M1Data
	M1Dot
	M1NumStages
)

var m1Names = [...]string{"connect", "helo", "mail", "rcpt", "data", "dot"}

func (s Meta1Stage) String() string {
	if s >= 0 && s < M1NumStages {
		return m1Names[s]
	}
	return "unknown"
}

// DefaultMeta1MaxMacros is MeTA1's PM_MAX_MACROS up to 1.0.PreAlpha28.0
// (PM_MACROS_MAX since 1.0.0.0).
const DefaultMeta1MaxMacros = 8

// ParseMeta1Stage accepts the handler names of pmult's define-macros:
// connect, helo, mail (envfrom; envmail as in the manual's example), rcpt
// (envrcpt), data (header, body), dot (eom).
func ParseMeta1Stage(handler string) (Meta1Stage, error) {
	switch strings.ToLower(strings.TrimSpace(handler)) {
	case "connect":
		return M1Connect, nil
	case "helo", "ehlo":
		return M1Helo, nil
	case "mail", "envfrom", "envmail":
		return M1Mail, nil
	case "rcpt", "envrcpt":
		return M1Rcpt, nil
	case "data", "header", "body":
		return M1Data, nil
	case "dot", "eom":
		return M1Dot, nil
	}
	return 0, fmt.Errorf("unknown handler %q (want connect, helo, mail/envfrom, rcpt/envrcpt, data/header/body or dot/eom)", handler)
}

// Meta1Macros are the MeTA1 macros define-macros may request, canonical
// names, in the manual's order.
var Meta1Macros = []string{
	"hostname", "client_resolve",
	"tls_version", "tls_cipher_suite", "tls_cipher_bits", "tls_cert_subject", "tls_cert_issuer",
	"tls_alg_bits", "tls_vrfy", "tls_cn_subject", "tls_cn_issuer",
	"auth_type", "auth_authen", "auth_author",
	"taid", "msgid", "c",
}

// meta1Aliases are other accepted spellings.
var meta1Aliases = map[string]string{"cn_subject": "tls_cn_subject", "cn_issuer": "tls_cn_issuer"}

// AuthMacros is what auth-macros = true adds at the mail stage.
var AuthMacros = []string{"auth_type", "auth_authen", "auth_author"}

// Synthesised lists the macros the multiplexer defines itself; they cannot
// be requested from MeTA1.
var Synthesised = []string{"client_addr", "client_port", "i", "f", "nbadrcpts", "ntries", "nrcpts",
	"r", "rcpt_host", "rcpt_addr", "s", "multiplexer", "mult_version"}

// CanonicalMeta1 returns the canonical name of a MeTA1 macro ("{tls_vrfy}",
// "cn_subject" → "tls_cn_subject") and whether it is one.
func CanonicalMeta1(name string) (string, bool) {
	n := strings.ToLower(Normalize(strings.TrimSpace(name)))
	if a, ok := meta1Aliases[n]; ok {
		n = a
	}
	for _, m := range Meta1Macros {
		if m == n {
			return n, true
		}
	}
	return n, false
}

// CheckMeta1Macros validates the macros requested for one stage with
// pmult's restrictions: known MeTA1 macros only (not those pmult
// synthesises), taid not before mail, msgid only at dot, tls_* not at
// connect (they exist only after STARTTLS), at most max per stage (after
// removing duplicates). It returns the canonical names and every problem.
func CheckMeta1Macros(st Meta1Stage, names []string, max int) ([]string, []error) {
	if max <= 0 {
		max = DefaultMeta1MaxMacros
	}
	var out []string
	var errs []error
	seen := map[string]bool{}
	for _, raw := range names {
		n, ok := CanonicalMeta1(raw)
		switch {
		case n == "":
			errs = append(errs, fmt.Errorf("empty macro name"))
			continue
		case !ok:
			for _, s := range Synthesised {
				if s == n {
					errs = append(errs, fmt.Errorf("%q is provided by pmult itself in every stage where it exists; do not request it from MeTA1", raw))
					ok = true
					break
				}
			}
			if !ok {
				errs = append(errs, fmt.Errorf("unknown MeTA1 macro %q (want one of %s)", raw, strings.Join(Meta1Macros, ", ")))
			}
			continue
		case n == "taid" && st < M1Mail:
			errs = append(errs, fmt.Errorf("macro taid cannot be requested before the mail stage (requested at %s)", st))
			continue
		case n == "msgid" && st != M1Dot:
			errs = append(errs, fmt.Errorf("macro msgid can be requested only at the dot stage (requested at %s)", st))
			continue
		case strings.HasPrefix(n, "tls_") && st == M1Connect:
			errs = append(errs, fmt.Errorf("macro %s is valid only after STARTTLS, never at connect", n))
			continue
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(out) > max {
		errs = append(errs, fmt.Errorf("%d macros requested at %s, MeTA1 allows at most %d per stage (PM_MACROS_MAX; raise pm_macros_max only if your MeTA1 was rebuilt with a larger one)",
			len(out), st, max))
	}
	return out, errs
}

// Meta1State is what the multiplexer knows of one SMTP session, from which
// it synthesises macros.
type Meta1State struct {
	SessionID  string     // MeTA1 session id: macro i
	ClientAddr netip.Addr // client_addr (IPv4 or IPv6)
	ClientPort int        // client_port
	Helo       string     // s
	From       string     // f (without angle brackets)
	RcptAddr   string     // rcpt_addr (current RCPT, without brackets)
	NRcpts     int        // validated recipients of the message so far
	NBadRcpts  int        // rejected recipients of the message so far
	Version    string     // mult_version
}

// Multiplexer is the value of the multiplexer macro.
const Multiplexer = "pmult"

// Meta1Synth returns the macros the multiplexer defines at stage st, as
// name/value pairs in wire form ("i", "{client_addr}"), appended to dst.
// Per the mailfromd manual: client_addr, client_port, i, r, multiplexer
// and mult_version everywhere; s from helo on; f and ntries from mail on;
// nrcpts and nbadrcpts at mail and rcpt; rcpt_addr and rcpt_host at rcpt.
func Meta1Synth(dst []string, st Meta1Stage, s *Meta1State) []string {
	addr := ""
	if s.ClientAddr.IsValid() {
		addr = s.ClientAddr.String()
	}
	dst = append(dst, "i", s.SessionID, "{client_addr}", addr,
		"{client_port}", strconv.Itoa(s.ClientPort), "r", "SMTP",
		"{multiplexer}", Multiplexer, "{mult_version}", s.Version)
	if st >= M1Helo && s.Helo != "" {
		dst = append(dst, "s", s.Helo)
	}
	if st >= M1Mail {
		dst = append(dst, "f", s.From, "{ntries}", "1")
	}
	if st == M1Mail || st == M1Rcpt {
		dst = append(dst, "{nrcpts}", strconv.Itoa(s.NRcpts), "{nbadrcpts}", strconv.Itoa(s.NBadRcpts))
	}
	if st == M1Rcpt {
		host := ""
		if at := strings.LastIndexByte(s.RcptAddr, '@'); at >= 0 {
			host = s.RcptAddr[at+1:]
		}
		dst = append(dst, "{rcpt_addr}", s.RcptAddr, "{rcpt_host}", host)
	}
	return dst
}
