// checker.go: the two ways to probe. In process (the default), the
// embedded Verifier runs the probe with the soft timeouts; when the soft
// timeout (or the wait limit) expires, the address is queued for
// background completion under the hard timeouts, so the client's retry is
// answered from the cache. Through a calloutd server (ours or mailfromd's
// calloutd 8.15), the server does the same on its side: pmult sends the
// soft timeouts (TIMEOUT); when the answer says the host did not reply in
// time ("RECV nothing": the soft timeout) or could not be reached, pmult
// answers the timeout (or temp_failure) verdict and ends the conversation
// (QUIT), on which the server probes the address again with its hard
// timeouts and caches the answer; when the wait limit expires first,
// pmult drops the connection and the server finishes the probe anyway.
// A domain without mail host is told by our server's nohost line, or,
// when mailfromd's calloutd contacted no host, by the domain's DNS.

package callout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/internal/breaker"
)

// checkResult is what one verification came to.
type checkResult struct {
	out    smtpprobe.Outcome
	cached bool
}

// checker verifies one address, within ctx (the wait limit).
type checker interface {
	check(ctx context.Context, req smtpprobe.Request) (checkResult, error)
}

// local is the in-process checker.
type local struct {
	v    *callout.Verifier
	soft smtpprobe.Timeouts
	log  *slog.Logger
}

func (l *local) check(ctx context.Context, req smtpprobe.Request) (checkResult, error) {
	req.Timeouts = l.soft
	out, cached := l.v.Verify(ctx, req, nil)
	if !cached && out.Retry && !out.Result.Definite() {
		if !l.v.Enqueue(req) {
			l.log.Warn("callout: background queue full, address not completed", "sid", req.Tag, "email", req.Email)
		}
	}
	return checkResult{out: out, cached: cached}, nil
}

// remote asks a calloutd server; one connection per MTA session, opened
// at its first verification.
type remote struct {
	addr syntax.Address
	soft smtpprobe.Timeouts
	brk  *breaker.Breaker    // the backend's: opens fail fast while calloutd is down
	res  *smtpprobe.Resolver // to tell a domain without mail host (nil: not told)

	mu sync.Mutex
	cl *callout.Client
}

// errRemote wraps the failures of the calloutd conversation.
var errRemote = errors.New("calloutd")

func (r *remote) check(ctx context.Context, req smtpprobe.Request) (checkResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cl == nil {
		dl, _ := ctx.Deadline()
		at, err := r.brk.Admit(ctx, dl, fmt.Sprintf("%s %s", errRemote, r.addr))
		if err != nil {
			return checkResult{}, err
		}
		cl, err := r.open(ctx, req)
		switch {
		case err == nil:
			at.Record(nil)
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			at.Abandon() // the MTA session went away
		default:
			at.Record(err)
		}
		if err != nil {
			return checkResult{}, err
		}
		r.cl = cl
	}
	a, err := r.cl.Check(ctx, req)
	if err != nil {
		// The conversation is in an unknown state: drop it (the server
		// completes what it was doing, and what is left queued, in the
		// background).
		r.cl.Close()
		r.cl = nil
		if ctx.Err() != nil {
			o := smtpprobe.Outcome{Result: smtpprobe.Timeout, Retry: true, Err: ctx.Err()}
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				o.Result = smtpprobe.TempFailure
			}
			return checkResult{out: o}, nil
		}
		return checkResult{}, fmt.Errorf("%w %s: %w", errRemote, r.addr, err)
	}
	out := smtpprobe.Outcome{Result: a.Result}
	switch {
	case a.NoReply(), a.Unreached():
		// The host did not answer within the soft timeouts, or could
		// not be reached: the server keeps the address queued and probes
		// it again with its hard timeouts once this client has gone, so
		// go now (the session's next address opens a new conversation).
		// The answer is cached there for the sender's retry.
		out.Retry = true
		if a.NoReply() {
			out.Result, out.Err = smtpprobe.Timeout, errNoReply
		}
		r.leave(ctx)
	case a.NoMailHost():
		out.DomainDead = true
	case a.NoHostContacted():
		// mailfromd's calloutd: no host contacted, so a domain without
		// mail host or its cache; the domain's DNS says which.
		out.DomainDead = r.noMailHost(ctx, req)
	}
	return checkResult{out: out, cached: a.Cached()}, nil
}

// errNoReply is the error of a soft timeout at the calloutd server.
var errNoReply = errors.New("calloutd: the host did not reply within the soft timeouts (completing in the background)")

// leave ends the conversation with QUIT, within a second whatever is
// left of ctx, so the server completes what is queued in the background.
func (r *remote) leave(ctx context.Context) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	r.cl.Quit(qctx) // closes the connection in any case
	r.cl = nil
}

// noMailHost looks at the DNS of the domain a request probes (modes
// mxfirst and mxonly) and reports whether it has no mail host: NXDOMAIN,
// a null MX, no MX and (mxfirst) no address, or MX hosts without
// addresses. A DNS failure says nothing: false.
func (r *remote) noMailHost(ctx context.Context, req smtpprobe.Request) bool {
	if r.res == nil {
		return false
	}
	var domain string
	switch req.Mode {
	case smtpprobe.MXFirst:
		domain = req.Host
		if domain == "" {
			domain = req.Domain()
		}
	case smtpprobe.MXOnly:
		domain = req.Host
	default:
		return false
	}
	mxs, err := r.res.LookupMX(ctx, domain)
	switch {
	case errors.Is(err, smtpprobe.ErrNXDomain):
		return true
	case err != nil:
		return false
	case len(mxs) == 1 && (mxs[0].Host == "" || mxs[0].Host == "."):
		return true
	case len(mxs) == 0:
		if req.Mode == smtpprobe.MXOnly {
			return true
		}
		addrs, err := r.res.LookupHost(ctx, domain)
		return errors.Is(err, smtpprobe.ErrNXDomain) || err == nil && len(addrs) == 0
	}
	for i, mx := range mxs {
		if i == maxMXChecked {
			return false // not worth more queries: assume it has one
		}
		addrs, err := r.res.LookupHost(ctx, mx.Host)
		if err == nil && len(addrs) > 0 || err != nil && !errors.Is(err, smtpprobe.ErrNXDomain) {
			return false
		}
	}
	return true
}

// maxMXChecked bounds the MX hosts whose addresses noMailHost looks up.
const maxMXChecked = 5

// open connects and sends the soft timeouts and the session id.
func (r *remote) open(ctx context.Context, req smtpprobe.Request) (*callout.Client, error) {
	cl, err := callout.Dial(ctx, r.addr.Network, r.addr.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errRemote, r.addr, err)
	}
	if err := cl.SetTimeouts(ctx, r.soft); err != nil {
		cl.Close()
		return nil, fmt.Errorf("%w %s: TIMEOUT: %w", errRemote, r.addr, err)
	}
	if req.Tag != "" {
		if err := cl.SID(ctx, req.Tag); err != nil {
			cl.Close()
			return nil, fmt.Errorf("%w %s: SID: %w", errRemote, r.addr, err)
		}
	}
	return cl, nil
}

func (r *remote) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cl != nil {
		r.cl.Close()
		r.cl = nil
	}
}
