// cache.go: the Store interface, the entry encoding, and Cache, the policy
// layer (lifetimes, never overwrite good entries, domain entries).
//
// Defaults: Positive 24h, Negative 12h, DeadDomain 12h, DomainDown 5m,
// CatchAll 24h.

package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// Default lifetimes.
const (
	DefaultPositive   = 24 * time.Hour
	DefaultNegative   = 12 * time.Hour
	DefaultDeadDomain = 12 * time.Hour
	DefaultDomainDown = 5 * time.Minute
	DefaultCatchAll   = 24 * time.Hour
)

// Entry is one cached finding.
type Entry struct {
	Result  smtpprobe.Result
	Stored  time.Time
	Expires time.Time
}

// Store keeps entries by key. Implementations must be safe for
// concurrent use; Get of a missing key returns ok false and no error.
type Store interface {
	Get(ctx context.Context, key string) (e Entry, ok bool, err error)
	Put(ctx context.Context, key string, e Entry) error
	Close() error
}

const encVersion = 1

// encode packs an entry: version, result, stored and expiry (unix nanoseconds).
func encode(e Entry) []byte {
	b := make([]byte, 18)
	b[0] = encVersion
	b[1] = byte(e.Result)
	binary.BigEndian.PutUint64(b[2:], uint64(e.Stored.UnixNano()))
	binary.BigEndian.PutUint64(b[10:], uint64(e.Expires.UnixNano()))
	return b
}

var errCorrupt = errors.New("cache: corrupt entry")

func decode(b []byte) (Entry, error) {
	if len(b) != 18 || b[0] != encVersion {
		return Entry{}, errCorrupt
	}
	return Entry{
		Result:  smtpprobe.Result(b[1]),
		Stored:  time.Unix(0, int64(binary.BigEndian.Uint64(b[2:]))),
		Expires: time.Unix(0, int64(binary.BigEndian.Uint64(b[10:]))),
	}, nil
}

// Cache applies the callout caching policy on a Store. Zero durations
// take the defaults. Methods are safe for concurrent use.
type Cache struct {
	Store      Store
	Positive   time.Duration // success entries
	Negative   time.Duration // not_found entries
	DeadDomain time.Duration // domains without mail hosts
	DomainDown time.Duration // domains whose hosts could not be reached
	CatchAll   time.Duration // catch-all findings
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// get returns a live entry.
func (c *Cache) get(ctx context.Context, key string) (Entry, bool, error) {
	e, ok, err := c.Store.Get(ctx, key)
	if err != nil || !ok {
		return Entry{}, false, err
	}
	if !c.now().Before(e.Expires) {
		return Entry{}, false, nil
	}
	return e, true, nil
}

func (c *Cache) put(ctx context.Context, key string, r smtpprobe.Result, ttl time.Duration) error {
	now := c.now()
	if err := c.Store.Put(ctx, key, Entry{Result: r, Stored: now, Expires: now.Add(ttl)}); err != nil {
		return fmt.Errorf("cache: put %s: %w", key, err)
	}
	return nil
}

// Lookup returns the live entry of an address key.
func (c *Cache) Lookup(ctx context.Context, key string) (Entry, bool, error) {
	return c.get(ctx, "a:"+key)
}

// Record stores a probe result for an address key, following the policy:
// only success and not_found are stored, and not_found does not replace a
// live success. stored says whether the entry was written.
func (c *Cache) Record(ctx context.Context, key string, r smtpprobe.Result) (stored bool, err error) {
	switch r {
	case smtpprobe.Success:
		return true, c.put(ctx, "a:"+key, r, or(c.Positive, DefaultPositive))
	case smtpprobe.NotFound:
		if old, ok, err := c.get(ctx, "a:"+key); err == nil && ok && old.Result == smtpprobe.Success {
			return false, nil
		}
		return true, c.put(ctx, "a:"+key, r, or(c.Negative, DefaultNegative))
	}
	return false, nil
}

// LookupDomain returns the live domain entry: Result NotFound or Failure
// for a dead domain, TempFailure for a domain that is down.
func (c *Cache) LookupDomain(ctx context.Context, domain string) (Entry, bool, error) {
	return c.get(ctx, "d:"+domain)
}

// RecordDead remembers that a domain has no mail host (r is the result
// probes of its addresses get: NotFound or Failure).
func (c *Cache) RecordDead(ctx context.Context, domain string, r smtpprobe.Result) error {
	return c.put(ctx, "d:"+domain, r, or(c.DeadDomain, DefaultDeadDomain))
}

// RecordDown remembers that no host of a domain could be reached.
func (c *Cache) RecordDown(ctx context.Context, domain string) error {
	return c.put(ctx, "d:"+domain, smtpprobe.TempFailure, or(c.DomainDown, DefaultDomainDown))
}

// LookupCatchAll says whether a domain is known to accept every local
// part (known false when it is known not to).
func (c *Cache) LookupCatchAll(ctx context.Context, domain string) (catchAll, known bool, err error) {
	e, ok, err := c.get(ctx, "c:"+domain)
	if err != nil || !ok {
		return false, false, err
	}
	return e.Result == smtpprobe.Success, true, nil
}

// RecordCatchAll stores the catch-all finding for a domain.
func (c *Cache) RecordCatchAll(ctx context.Context, domain string, catchAll bool) error {
	r := smtpprobe.NotFound
	if catchAll {
		r = smtpprobe.Success
	}
	return c.put(ctx, "c:"+domain, r, or(c.CatchAll, DefaultCatchAll))
}
