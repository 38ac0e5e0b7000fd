// Package arena hands out values and short lists from arrays allocated a
// chunk at a time: one allocation for many small objects of a
// connection (its events, their macro sets, the macro packets' strings)
// instead of one each.
//
// Nothing handed out is ever reused: a value or list stays valid for as
// long as it is referenced, and a full array is left to what points into
// it (the garbage collector frees it with the last). So an arena trades
// a little memory (an array lives while one of its values is kept) for
// allocations: keep chunks small for objects a connection holds long.
package arena

// Arena hands out from arrays of Chunk values (16 when zero). The zero
// value is ready; not for concurrent use.
type Arena[T any] struct {
	Chunk int
	free  []T
}

// Take returns an empty list with room for exactly n values: appending
// up to n fills the arena's array, one more reallocates. A list longer
// than a quarter of a chunk gets an array of its own.
func (a *Arena[T]) Take(n int) []T {
	chunk := a.Chunk
	if chunk <= 0 {
		chunk = 16
	}
	if n > chunk/4 {
		return make([]T, 0, n)
	}
	if len(a.free) < n {
		a.free = make([]T, chunk)
	}
	out := a.free[:0:n]
	a.free = a.free[n:]
	return out
}

// New returns a pointer to a copy of v.
func (a *Arena[T]) New(v T) *T {
	s := append(a.Take(1), v)
	return &s[0]
}
