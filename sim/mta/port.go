// port.go: the milter port (-X/--port) in every form mtasim takes, and
// dialling it as a v6 MTA.
//
// Forms:
//
//	inet:PORT@HOST, inet6:PORT@HOST, unix:/path    Sendmail socket spec
//	inet:HOST:PORT, inet://HOST:PORT, /path          Postfix and mailfromd forms
//	NAME, S=SPEC, F=T, T=C:5s;S:10s;R:10s;E:5m       a sendmail.cf X line
//	                                                 (a leading "X" is allowed)
//
// Timeouts (T= in the X form, or --milter-timeout C=3,R=10,S=10,E=300):
// C connect and negotiation, S (or W) each write, R each reply, E the whole
// end-of-message exchange. Values are Go durations, mailfromd intervals,
// or plain numbers of seconds. Defaults are those of backends/milter
// (C 300s, S 10s, R 10s, E 300s) except C, which is 10s here: a simulator
// should not hang for five minutes on a dead port.
//
// F= flags as in Sendmail: T tempfails and R rejects when the milter fails;
// without either, a failing milter is a fatal error of the simulator (exit
// code 69), since a test tool should not silently go on without its filter.

package mtasim

import (
	"fmt"
	"strings"
	"time"

	backend "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/pmult"
)

// DefaultConnectTimeout is the connect timeout when none is given.
const DefaultConnectTimeout = 10 * time.Second

// Port is a parsed milter port.
type Port struct {
	Name    string
	Address syntax.Address
	// Timeouts; zero means the default.
	Connect, Write, Read, EOM time.Duration
	// OnFailure is 'T' (tempfail), 'R' (reject) or 0 (fatal).
	OnFailure byte
}

// ParsePort parses a --port argument.
func ParsePort(spec string) (Port, error) {
	s := strings.TrimSpace(spec)
	var p Port
	if !strings.Contains(s, "=") {
		a, err := syntax.ParseAddress(s)
		if err != nil {
			return p, fmt.Errorf("milter port: %w", err)
		}
		p.Address, p.Name = a, s
		return p, nil
	}
	// sendmail.cf X form: name, S=spec, F=flags, T=timeouts.
	parts := strings.Split(s, ",")
	name := strings.TrimSpace(parts[0])
	if strings.Contains(name, "=") {
		return p, fmt.Errorf("milter port %q: X form must start with a name", spec)
	}
	if len(name) > 1 && name[0] == 'X' {
		name = name[1:] // "Xname, S=…" as written in sendmail.cf (the name is only a label)
	}
	p.Name = strings.TrimSpace(name)
	haveS := false
	for _, f := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return p, fmt.Errorf("milter port %q: %q is not KEY=VALUE", spec, f)
		}
		v = strings.TrimSpace(v)
		switch strings.ToUpper(strings.TrimSpace(k)) {
		case "S":
			a, err := syntax.ParseAddress(v)
			if err != nil {
				return p, fmt.Errorf("milter port S=: %w", err)
			}
			p.Address, haveS = a, true
		case "F":
			for _, c := range strings.ToUpper(v) {
				switch c {
				case 'T', 'R':
					p.OnFailure = byte(c)
				case '4': // Sendmail: 421 and close on failure; treat as tempfail
					p.OnFailure = 'T'
				default:
					return p, fmt.Errorf("milter port F=: unknown flag %q (want T or R)", c)
				}
			}
		case "T":
			if err := p.SetTimeouts(v, ";", ":"); err != nil {
				return p, fmt.Errorf("milter port T=: %w", err)
			}
		default:
			return p, fmt.Errorf("milter port %q: unknown equate %q (want S, F or T)", spec, k)
		}
	}
	if !haveS {
		return p, fmt.Errorf("milter port %q: no S= socket", spec)
	}
	return p, nil
}

// SetTimeouts parses "C:5s;R:10s" (sep ";", kv ":") or "C=5,R=10" (sep
// ",", kv "=") and sets the named timeouts.
func (p *Port) SetTimeouts(s, sep, kv string) error {
	for _, item := range strings.Split(s, sep) {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, kv)
		if !ok {
			return fmt.Errorf("%q is not CODE%sVALUE", item, kv)
		}
		d, err := syntax.ParseDuration(v)
		if err != nil {
			return err
		}
		switch strings.ToUpper(strings.TrimSpace(k)) {
		case "C":
			p.Connect = d
		case "S", "W":
			p.Write = d
		case "R":
			p.Read = d
		case "E":
			p.EOM = d
		default:
			return fmt.Errorf("unknown timeout %q (want C, S, R or E)", k)
		}
	}
	return nil
}

// Backend returns the milter client for the port, offering protocol
// version maxVersion (0: 6).
func (p Port) Backend(maxVersion uint32) *backend.Backend {
	c := p.Connect
	if c == 0 {
		c = DefaultConnectTimeout
	}
	name := p.Name
	if name == "" {
		name = p.Address.Raw
	}
	return backend.New(backend.Config{
		Name: name, Network: p.Address.Network, Address: p.Address.Addr,
		ConnectTimeout: c, ReadTimeout: p.Read, WriteTimeout: p.Write, EOMTimeout: p.EOM,
		MaxVersion: maxVersion,
	})
}

// MTAOffer is what the simulator offers a milter: every action of
// protocol version 6 (CHGFROM, QUARANTINE and ADDRCPT_PAR included),
// per-stage macro lists, SKIP, and exact header values — what Postfix 3.x
// and Sendmail 8.14+ offer.
var MTAOffer = pmult.Offer{
	Actions: pmult.ActAddHeaders | pmult.ActChangeBody | pmult.ActAddRcpt | pmult.ActDelRcpt |
		pmult.ActChangeHeaders | pmult.ActQuarantine | pmult.ActChangeFrom | pmult.ActAddRcptPar,
	SymList: true, Skip: true, LeadingSpace: true, RejectedRcpts: false, Version: 6,
}
