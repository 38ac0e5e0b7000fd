// bolt.go: the embedded Store, one bbolt file (bucket "callout"). Writes
// from concurrent probes are batched (bbolt's Batch); Sweep removes expired
// entries (call it now and then; calloutd does every 10 minutes).

package cache

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucket = []byte("callout")

// Bolt is a Store in a bbolt file.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens (creating it if needed) the cache file at path.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("cache: %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Get implements Store.
func (b *Bolt) Get(_ context.Context, key string) (e Entry, ok bool, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get([]byte(key))
		if v == nil {
			return nil
		}
		e, err = decode(v)
		ok = err == nil
		return err
	})
	return e, ok, err
}

// Put implements Store.
func (b *Bolt) Put(_ context.Context, key string, e Entry) error {
	return b.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), encode(e))
	})
}

// Sweep deletes the entries expired at now and returns how many.
func (b *Bolt) Sweep(now time.Time) (int, error) {
	n := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e, err := decode(v)
			if err != nil || !now.Before(e.Expires) {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}

// Close implements Store.
func (b *Bolt) Close() error { return b.db.Close() }
