// caches.go: the callout caches are the process's, as the metrics are:
// one open store per cache location (cache.Handles), handed to each
// engine's callout backends as it is built, so that a reload's new
// backend uses the store the old one has open (a bbolt file is opened
// once per process, a memory cache keeps its entries). A store closes
// when a reload drops the last backend using it, and at exit.

package service

import (
	"log/slog"

	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/pmult"
)

// cacheSharer is a backend that can use the process's cache stores
// (backends/callout).
type cacheSharer interface {
	ShareCaches(h *cache.Handles)
}

// shareCaches hands caches to every backend of e that keeps a cache;
// call it before e serves a session.
func shareCaches(e *pmult.Engine, caches *cache.Handles) {
	for _, sl := range e.Slots {
		if s, ok := sl.Backend.(cacheSharer); ok {
			s.ShareCaches(caches)
		}
	}
}

// closeCaches closes the stores still open (the process is stopping).
func closeCaches(caches *cache.Handles, log *slog.Logger) {
	if err := caches.Close(); err != nil {
		log.Warn("closing the callout caches", "err", err)
	}
}
