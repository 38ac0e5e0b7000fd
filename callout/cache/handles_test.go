// handles_test.go: Handles opens a location once for all its claims,
// closes it with the last release (or Close), and retries a failed open.

package cache

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// countStore is a Memory counting its closes.
type countStore struct {
	Memory
	closes *int
}

func (s *countStore) Close() error { *s.closes++; return nil }

func TestHandles(t *testing.T) {
	ctx := context.Background()
	var h Handles
	opens, closes := 0, 0
	fail := true
	open := func(context.Context) (Store, error) {
		if fail {
			fail = false
			return nil, errors.New("not yet")
		}
		opens++
		return &countStore{closes: &closes}, nil
	}
	a := h.Claim("bolt:/x")
	if _, err := a.Open(ctx, open); err == nil {
		t.Fatal("the failing open did not fail")
	}
	sa, err := a.Open(ctx, open) // retried
	if err != nil {
		t.Fatal(err)
	}
	b := h.Claim("bolt:/x") // the reload's new backend
	sb, err := b.Open(ctx, open)
	if err != nil || sb != sa || opens != 1 {
		t.Fatalf("second claim: %v, same store %v, %d opens (want the one store, opened once)", err, sb == sa, opens)
	}
	sa.Put(ctx, "k", Entry{})
	if err := a.Release(); err != nil || closes != 0 {
		t.Fatalf("first release: %v, %d closes (want none: b holds it)", err, closes)
	}
	a.Release() // twice: nothing
	if _, ok, _ := sb.Get(ctx, "k"); !ok || closes != 0 || !slices.Equal(h.Locations(), []string{"bolt:/x"}) {
		t.Fatalf("after a's release: entry %v, %d closes, open %v", ok, closes, h.Locations())
	}
	if _, err := a.Open(ctx, open); err == nil {
		t.Error("Open of a released claim succeeded")
	}
	if err := b.Release(); err != nil || closes != 1 || len(h.Locations()) != 0 {
		t.Fatalf("last release: %v, %d closes, open %v (want closed)", err, closes, h.Locations())
	}
	c := h.Claim("bolt:/x") // a later backend: a fresh open
	if _, err := c.Open(ctx, open); err != nil || opens != 2 {
		t.Fatalf("claim after the close: %v, %d opens", err, opens)
	}
	d := h.Claim("memory:other")
	d.Open(ctx, open)
	if err := h.Close(); err != nil || closes != 3 || len(h.Locations()) != 0 {
		t.Fatalf("Close: %v, %d closes, open %v", err, closes, h.Locations())
	}
	if _, err := c.Open(ctx, open); err == nil {
		t.Error("Open after Close succeeded")
	}
	if err := c.Release(); err != nil || closes != 3 {
		t.Errorf("release after Close: %v, %d closes", err, closes)
	}
}
