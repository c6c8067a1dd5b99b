package shard

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/services/gateway/internal/identify"
)

// DefaultSessionTTL is how long a saved session stays in Redis after its last
// save. Discord does not publish how long a session stays resumable; it is
// minutes, and a session older than this is almost certainly gone anyway, so
// keeping it longer would only cost one refused RESUME (op 9) before a fresh
// IDENTIFY.
const DefaultSessionTTL = 10 * time.Minute

// RedisSessionStoreConfig configures a RedisSessionStore.
type RedisSessionStoreConfig struct {
	// Token is the bot token; only a hash of its user-id part is used in keys. Required.
	Token string
	// Prefix starts every key; empty means identify.DefaultPrefix.
	Prefix string
	// TTL is how long a session survives its last save; 0 means DefaultSessionTTL.
	TTL time.Duration
}

// RedisSessionStore is a SessionStore in Redis, so a shard moved to another pod
// can RESUME its session instead of spending an IDENTIFY.
type RedisSessionStore struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
}

var _ SessionStore = (*RedisSessionStore)(nil)

// NewRedisSessionStore returns a RedisSessionStore.
func NewRedisSessionStore(client redis.UniversalClient, cfg RedisSessionStoreConfig) (*RedisSessionStore, error) {
	if client == nil {
		return nil, errors.New("session store: redis client is nil")
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("session store: TTL %s is negative", cfg.TTL)
	}
	bot, err := identify.BotKey(cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = identify.DefaultPrefix
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	return &RedisSessionStore{client: client, prefix: fmt.Sprintf("%s:session:{%s}:", prefix, bot), ttl: ttl}, nil
}

func (r *RedisSessionStore) key(shardID int) string {
	return r.prefix + strconv.Itoa(shardID)
}

// Load implements SessionStore.
func (r *RedisSessionStore) Load(ctx context.Context, shardID int) (Session, bool, error) {
	if shardID < 0 {
		return Session{}, false, fmt.Errorf("loading session: shard id %d is negative", shardID)
	}
	v, err := r.client.HMGet(ctx, r.key(shardID), "id", "url", "seq").Result()
	if err != nil {
		return Session{}, false, fmt.Errorf("loading session of shard %d from redis: %w", shardID, err)
	}
	id, _ := v[0].(string)
	if id == "" {
		return Session{}, false, nil
	}
	url, _ := v[1].(string)
	seqText, _ := v[2].(string)
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return Session{}, false, fmt.Errorf("loading session of shard %d from redis: bad seq %q: %w", shardID, seqText, err)
	}
	return Session{ID: id, ResumeURL: url, Seq: seq}, true, nil
}

// Save implements SessionStore. Each save restarts the TTL.
func (r *RedisSessionStore) Save(ctx context.Context, shardID int, s Session) error {
	if shardID < 0 {
		return fmt.Errorf("saving session: shard id %d is negative", shardID)
	}
	key := r.key(shardID)
	if s.ID == "" {
		if err := r.client.Del(ctx, key).Err(); err != nil {
			return fmt.Errorf("removing session of shard %d from redis: %w", shardID, err)
		}
		return nil
	}
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "id", s.ID, "url", s.ResumeURL, "seq", strconv.FormatUint(s.Seq, 10))
		p.PExpire(ctx, key, r.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("saving session of shard %d to redis: %w", shardID, err)
	}
	return nil
}
