// redis.go: the shared Store, in Redis (github.com/redis/go-redis/v9):
// one string key per entry, Prefix + key (default prefix
// "mailmux:callout:"), expiring in Redis itself when the entry does.

package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix starts every key the Redis store writes.
const DefaultRedisPrefix = "mailmux:callout:"

// Redis is a Store in Redis.
type Redis struct {
	Client *redis.Client
	Prefix string
}

// OpenRedis connects to the Redis server named by url
// ("redis://[:password@]host:port/db") and checks it answers.
func OpenRedis(ctx context.Context, url, prefix string) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("cache: redis url: %w", err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("cache: redis %s: %w", opt.Addr, err)
	}
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return &Redis{Client: c, Prefix: prefix}, nil
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) (Entry, bool, error) {
	b, err := r.Client.Get(ctx, r.Prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("cache: redis get: %w", err)
	}
	e, err := decode(b)
	if err != nil {
		return Entry{}, false, err
	}
	return e, true, nil
}

// Put implements Store.
func (r *Redis) Put(ctx context.Context, key string, e Entry) error {
	ttl := time.Until(e.Expires)
	if ttl <= 0 {
		return r.Client.Del(ctx, r.Prefix+key).Err()
	}
	if err := r.Client.Set(ctx, r.Prefix+key, encode(e), ttl).Err(); err != nil {
		return fmt.Errorf("cache: redis set: %w", err)
	}
	return nil
}

// Close implements Store.
func (r *Redis) Close() error { return r.Client.Close() }
