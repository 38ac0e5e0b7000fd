// memory.go: a Store in a map, for tests and tools; expired entries are
// dropped when the map grows past MaxEntries (default 100000).

package cache

import (
	"context"
	"sync"
	"time"
)

// Memory is an in-memory Store. The zero value is ready to use.
type Memory struct {
	// MaxEntries bounds the map (default 100000); when it is full,
	// expired entries are swept and, if still full, Put drops the entry.
	MaxEntries int

	mu sync.RWMutex
	m  map[string]Entry
}

// Get implements Store.
func (s *Memory) Get(_ context.Context, key string) (Entry, bool, error) {
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	return e, ok, nil
}

// Put implements Store.
func (s *Memory) Put(_ context.Context, key string, e Entry) error {
	max := s.MaxEntries
	if max <= 0 {
		max = 100000
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]Entry)
	}
	if _, ok := s.m[key]; !ok && len(s.m) >= max {
		now := time.Now()
		for k, v := range s.m {
			if !now.Before(v.Expires) {
				delete(s.m, k)
			}
		}
		if len(s.m) >= max {
			return nil
		}
	}
	s.m[key] = e
	return nil
}

// Len returns the number of entries (live or not).
func (s *Memory) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// Close implements Store.
func (s *Memory) Close() error { return nil }
