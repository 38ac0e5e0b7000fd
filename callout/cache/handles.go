// handles.go: Handles, the open stores of a process, one per cache
// location, shared by the backends using it and kept across reloads: a
// reload's new backend claims the location before the old one releases
// it, so a bbolt file is never opened twice in one process (the second
// open would wait for the first one's lock, and fail), and a memory cache
// keeps its entries. The last release closes the store; Close closes
// every one (process exit).

package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Handles keeps one open Store per location (a string naming where a
// cache lives, e.g. "bolt:/var/lib/mailmux/callout-sav.db"; see
// backends/callout Settings.CacheLocation). It is safe for concurrent use;
// the zero value is ready.
type Handles struct {
	mu sync.Mutex
	m  map[string]*handle
}

type handle struct {
	refs   int
	mu     sync.Mutex // held while opening
	st     Store      // nil until opened
	closed bool       // Handles.Close ran
}

// Claim registers a user of location; the store opens at the claim's
// first Open and closes when the last claim of location is released.
func (h *Handles) Claim(location string) *Claim {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]*handle{}
	}
	hd := h.m[location]
	if hd == nil {
		hd = &handle{}
		h.m[location] = hd
	}
	hd.refs++
	return &Claim{h: h, loc: location, hd: hd}
}

// Open returns the Store of c's location, opened by open if no claim has
// opened it yet (an error is returned and the next Open tries again).
func (c *Claim) Open(ctx context.Context, open func(context.Context) (Store, error)) (Store, error) {
	c.hd.mu.Lock()
	defer c.hd.mu.Unlock()
	if c.released || c.hd.closed {
		return nil, fmt.Errorf("cache %s: closed", c.loc)
	}
	if c.hd.st == nil {
		st, err := open(ctx)
		if err != nil {
			return nil, err
		}
		c.hd.st = st
	}
	return c.hd.st, nil
}

// Claim is one user's hold on a location of Handles.
type Claim struct {
	h        *Handles
	loc      string
	hd       *handle
	released bool // guarded by hd.mu
}

// Location returns the claimed location.
func (c *Claim) Location() string { return c.loc }

// Release ends the claim; the last claim of its location closes the
// store (its error is returned). Releasing twice does nothing.
func (c *Claim) Release() error {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	c.hd.mu.Lock()
	defer c.hd.mu.Unlock()
	if c.released {
		return nil
	}
	c.released = true
	c.hd.refs--
	if c.hd.refs > 0 {
		return nil
	}
	if c.h.m[c.loc] == c.hd {
		delete(c.h.m, c.loc)
	}
	return closeStore(c.loc, c.hd)
}

// closeStore closes hd's store (held: hd.mu).
func closeStore(loc string, hd *handle) error {
	st := hd.st
	hd.st = nil
	if st == nil {
		return nil
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("cache %s: close: %w", loc, err)
	}
	return nil
}

// Locations lists the locations whose store is open, for tests and logs.
func (h *Handles) Locations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for loc, hd := range h.m {
		hd.mu.Lock()
		if hd.st != nil {
			out = append(out, loc)
		}
		hd.mu.Unlock()
	}
	return out
}

// Close closes every open store (the process is stopping); claims still
// held see their store closed. The errors are joined.
func (h *Handles) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for loc, hd := range h.m {
		hd.mu.Lock()
		errs = append(errs, closeStore(loc, hd))
		hd.closed = true
		hd.mu.Unlock()
		delete(h.m, loc)
	}
	return errors.Join(errs...)
}
