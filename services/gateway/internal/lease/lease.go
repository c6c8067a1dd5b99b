// Package lease decides which gateway pod runs which shard.
//
// Every pod runs a Manager. The Redis one holds one lease per shard in Redis
// (a key whose value names the pod and its run, the fencing token, with a TTL
// the pod keeps renewing) and publishes a heartbeat in a sorted set of live
// pods. Each pod aims at a fair share, floor or ceil of shards / live pods: it claims free
// shards up to that share and releases the excess, so a pod joining or leaving
// rebalances the shards within a few renew intervals, and the leases of a pod
// that dies expire after their TTL. The Memory manager owns every shard, for
// one process.
//
// Consumers start the shards in Owned (or in each set received from Changes)
// and stop the others; a shard moved between pods resumes its session from a
// shared session store instead of identifying again.
package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Manager tells a pod which shards it owns.
type Manager interface {
	// Run keeps the ownership up to date until ctx ends or Stop is called. It
	// returns nil after Stop and ctx's error otherwise; ending ctx does not
	// release the leases (as if the pod died), Stop does.
	Run(ctx context.Context) error
	// Owned returns the shards this pod owns now, in ascending order.
	Owned() []int
	// Changes receives the owned set after each change. Only the latest set is
	// kept when the receiver is slow. It is closed by Stop, after an empty set.
	Changes() <-chan []int
	// Release gives up a shard that left the owned set, after its consumer stopped
	// it (see Config.HandOff); other pods may take it from then on.
	Release(ctx context.Context, shard int) error
	// Stop ends Run, releases this pod's shards so other pods can take them at
	// once, and closes Changes.
	Stop(ctx context.Context) error
}

// changes is a latest-value channel of owned sets.
type changes struct {
	ch chan []int
}

func newChanges() changes { return changes{ch: make(chan []int, 1)} }

// publish replaces an unread set with set. There is one sender at a time, so the
// send never blocks.
func (c changes) publish(set []int) {
	select {
	case <-c.ch:
	default:
	}
	c.ch <- slices.Clone(set)
}

// Memory is a Manager for a single process: it owns every shard.
type Memory struct {
	changes changes
	all     []int

	mu      sync.Mutex
	owned   []int
	stopped bool
	stop    chan struct{}
	done    chan struct{}
	started bool
}

var _ Manager = (*Memory)(nil)

// NewMemory returns a Memory manager of shards shards.
func NewMemory(shards int) (*Memory, error) {
	if shards < 1 {
		return nil, fmt.Errorf("lease: %d shards, want at least 1", shards)
	}
	all := make([]int, shards)
	for i := range all {
		all[i] = i
	}
	return &Memory{changes: newChanges(), all: all, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// NewFixed returns a Memory manager that owns exactly the given shards: a pod whose
// shards are assigned by configuration rather than by leases.
func NewFixed(ids []int) (*Memory, error) {
	if len(ids) == 0 {
		return nil, errors.New("lease: no shards to own")
	}
	all := slices.Sorted(slices.Values(ids))
	if all[0] < 0 {
		return nil, fmt.Errorf("lease: shard id %d is negative", all[0])
	}
	return &Memory{changes: newChanges(), all: slices.Compact(all), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Run implements Manager.
func (m *Memory) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.started || m.stopped {
		m.mu.Unlock()
		return errors.New("lease: Run called twice or after Stop")
	}
	m.started = true
	m.owned = m.all
	m.changes.publish(m.owned)
	m.mu.Unlock()
	defer close(m.done)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-m.stop:
		return nil
	}
}

// Owned implements Manager.
func (m *Memory) Owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.owned)
}

// Changes implements Manager.
func (m *Memory) Changes() <-chan []int { return m.changes.ch }

// Release implements Manager: a single process never hands shards to anyone.
func (m *Memory) Release(context.Context, int) error { return nil }

// Stop implements Manager.
func (m *Memory) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	started := m.started
	close(m.stop)
	m.mu.Unlock()
	if started {
		select {
		case <-m.done:
		case <-ctx.Done():
			return fmt.Errorf("lease: waiting for Run to end: %w", ctx.Err())
		}
	}
	m.mu.Lock()
	m.owned = nil
	m.mu.Unlock()
	m.changes.publish(nil)
	close(m.changes.ch)
	return nil
}
