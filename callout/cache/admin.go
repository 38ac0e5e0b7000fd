// admin.go: cache administration (calloutd cache, pmult callout-cache):
// listing the entries with why each is there and when it expires, showing
// those of one address or domain, and flushing them. Stores that can be
// walked implement Walker (Bolt, Redis, Memory).

package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// Walker is a Store whose entries can be listed and deleted.
type Walker interface {
	// Walk calls fn for every entry (expired ones included), in no
	// particular order, until fn returns false.
	Walk(ctx context.Context, fn func(key string, e Entry) bool) error
	// Delete removes the entries of keys (missing keys are no error).
	Delete(ctx context.Context, keys ...string) error
}

// Walk implements Walker.
func (b *Bolt) Walk(_ context.Context, fn func(string, Entry) bool) error {
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e, err := decode(v)
			if err != nil {
				continue
			}
			if !fn(string(k), e) {
				break
			}
		}
		return nil
	})
}

// Delete implements Walker.
func (b *Bolt) Delete(_ context.Context, keys ...string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		for _, k := range keys {
			if err := bk.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Walk implements Walker (SCAN of the prefix).
func (r *Redis) Walk(ctx context.Context, fn func(string, Entry) bool) error {
	it := r.Client.Scan(ctx, 0, r.Prefix+"*", 500).Iterator()
	for it.Next(ctx) {
		k := strings.TrimPrefix(it.Val(), r.Prefix)
		e, ok, err := r.Get(ctx, k)
		if err != nil {
			return err
		}
		if ok && !fn(k, e) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("cache: redis scan: %w", err)
	}
	return nil
}

// Delete implements Walker.
func (r *Redis) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.Prefix + k
	}
	if err := r.Client.Del(ctx, full...).Err(); err != nil {
		return fmt.Errorf("cache: redis del: %w", err)
	}
	return nil
}

// Walk implements Walker.
func (s *Memory) Walk(_ context.Context, fn func(string, Entry) bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, e := range s.m {
		if !fn(k, e) {
			break
		}
	}
	return nil
}

// Delete implements Walker.
func (s *Memory) Delete(_ context.Context, keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.m, k)
	}
	return nil
}

// Item is one entry, described.
type Item struct {
	Key     string // the store's key ("a:user@example.com", "d:example.com", "c:example.com")
	Kind    string // address, domain or catch-all
	Subject string // the address (with "|mode|host" for other modes) or domain
	Entry   Entry
}

// Why says why the entry is there.
func (it Item) Why() string {
	r := it.Entry.Result
	switch it.Kind {
	case "address":
		return "a probe answered " + r.String()
	case "domain":
		if r == smtpprobe.TempFailure {
			return "no host of the domain could be reached (domain down: every address temp_failure)"
		}
		return "the domain has no mail host (every address " + r.String() + ")"
	default:
		if r == smtpprobe.Success {
			return "the domain accepts any local part (catch-all)"
		}
		return "the domain is not catch-all"
	}
}

func describeKey(k string) (kind, subject string) {
	switch {
	case strings.HasPrefix(k, "a:"):
		return "address", k[2:]
	case strings.HasPrefix(k, "d:"):
		return "domain", k[2:]
	case strings.HasPrefix(k, "c:"):
		return "catch-all", k[2:]
	}
	return "other", k
}

// Select returns the entries of what ("" every entry; an address: its
// entries and its domain's; a domain: every entry of the domain), sorted
// by key.
func Select(ctx context.Context, w Walker, what string) ([]Item, error) {
	what = strings.ToLower(strings.Trim(strings.TrimSpace(what), "<>"))
	domain := what
	addr := ""
	if i := strings.LastIndexByte(what, '@'); i >= 0 {
		addr, domain = what, what[i+1:]
	}
	var out []Item
	err := w.Walk(ctx, func(k string, e Entry) bool {
		kind, subj := describeKey(k)
		match := what == ""
		if !match {
			switch kind {
			case "address":
				a, _, _ := strings.Cut(subj, "|")
				if addr != "" {
					match = a == addr
				} else {
					match = strings.HasSuffix(a, "@"+domain)
				}
			default:
				match = subj == domain
			}
		}
		if match {
			out = append(out, Item{Key: k, Kind: kind, Subject: subj, Entry: e})
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, err
}

// Print writes items, one a line: kind, subject, result, when stored,
// when it expires (or that it has expired), and why it is there.
func Print(w io.Writer, items []Item, now time.Time) {
	for _, it := range items {
		exp := "expires " + it.Entry.Expires.UTC().Format(time.RFC3339) + " (in " + it.Entry.Expires.Sub(now).Round(time.Second).String() + ")"
		if !now.Before(it.Entry.Expires) {
			exp = "expired " + it.Entry.Expires.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%-9s %s %s stored %s %s: %s\n", it.Kind, it.Subject, it.Entry.Result,
			it.Entry.Stored.UTC().Format(time.RFC3339), exp, it.Why())
	}
}

// ErrUsage is returned by Admin for bad arguments.
var ErrUsage = errors.New("usage: cache list | show ADDRESS|DOMAIN | flush ADDRESS|DOMAIN|--all")

// Admin runs one administration command on st: "list", "show WHAT",
// "flush WHAT" or "flush --all", writing to w.
func Admin(ctx context.Context, st Store, args []string, w io.Writer, now time.Time) error {
	wk, ok := st.(Walker)
	if !ok {
		return fmt.Errorf("cache: this store cannot be listed")
	}
	if len(args) == 0 {
		return ErrUsage
	}
	switch {
	case args[0] == "list" && len(args) == 1:
		items, err := Select(ctx, wk, "")
		Print(w, items, now)
		fmt.Fprintf(w, "%d entries\n", len(items))
		return err
	case args[0] == "show" && len(args) == 2:
		items, err := Select(ctx, wk, args[1])
		if err == nil && len(items) == 0 {
			fmt.Fprintf(w, "no entry for %s\n", args[1])
		}
		Print(w, items, now)
		return err
	case args[0] == "flush" && len(args) == 2:
		what := args[1]
		if what == "--all" {
			what = ""
		} else if what == "" {
			return ErrUsage
		}
		items, err := Select(ctx, wk, what)
		if err != nil {
			return err
		}
		keys := make([]string, len(items))
		for i, it := range items {
			keys[i] = it.Key
		}
		if err := wk.Delete(ctx, keys...); err != nil {
			return err
		}
		fmt.Fprintf(w, "flushed %d entries\n", len(keys))
		return nil
	}
	return ErrUsage
}
