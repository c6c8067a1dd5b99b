package shard

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// sendLimiter keeps one connection under the gateway's send limit (120 payloads per
// 60 s, heartbeats included). Commands may use the limit minus a headroom kept for the
// payloads the protocol itself must send: heartbeats, Identify or Resume, and heartbeats
// the server asks for.
type sendLimiter struct {
	limit    int
	window   time.Duration
	reserved int

	mu   sync.Mutex
	sent []time.Time // send times inside the window, oldest first
}

func newSendLimiter(limit int, window, heartbeat time.Duration) *sendLimiter {
	return &sendLimiter{limit: limit, window: window, reserved: heartbeatHeadroom(limit, window, heartbeat)}
}

// heartbeatHeadroom is the number of sends kept back from commands: the scheduled
// heartbeats that fit in one window (plus the jittered first one), the Identify or
// Resume, and two server-requested heartbeats. One send per window is always left for
// commands, even with a heartbeat interval too short for the limit.
func heartbeatHeadroom(limit int, window, heartbeat time.Duration) int {
	beats := 1
	if heartbeat > 0 {
		beats = int((window+heartbeat-1)/heartbeat) + 1
	}
	return max(min(beats+3, limit-1), 0)
}

// commandLimit is the number of commands allowed per window.
func (l *sendLimiter) commandLimit() int { return l.limit - l.reserved }

// reserve records a send at now if its class has room and returns 0; otherwise it
// returns how long to wait before asking again. Protocol payloads (priority) may use the
// whole limit and are recorded even over it, because a missed heartbeat costs the session.
func (l *sendLimiter) reserve(now time.Time, priority bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	cutoff := now.Add(-l.window)
	drop := 0
	for drop < len(l.sent) && !l.sent[drop].After(cutoff) {
		drop++
	}
	if drop > 0 {
		l.sent = append(l.sent[:0], l.sent[drop:]...)
	}
	capacity := l.commandLimit()
	if priority {
		capacity = l.limit
	}
	if len(l.sent) < capacity || priority {
		l.sent = append(l.sent, now)
		return 0
	}
	// The oldest sends must leave the window until one slot of this class is free.
	oldest := l.sent[len(l.sent)-capacity]
	return oldest.Add(l.window).Sub(now) + time.Millisecond
}

// wait blocks until a command may be sent and records it.
func (l *sendLimiter) wait(ctx context.Context) error {
	for {
		d := l.reserve(time.Now(), false)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the gateway send limit (%d commands per %s): %w", l.commandLimit(), l.window, ctx.Err())
		}
	}
}

// heartbeater tracks heartbeats and their ACKs on one connection. Only scheduled
// heartbeats judge the connection: an op 1 the server asked for, answered just before a
// scheduled beat, would otherwise look like a missed ACK.
type heartbeater struct {
	mu          sync.Mutex
	awaitingAck bool // a scheduled heartbeat is unacknowledged
	sentAt      time.Time
	reqPending  bool // a requested heartbeat is unacknowledged
	reqSentAt   time.Time
	latency     time.Duration
}

// beat is called when a scheduled heartbeat is due. It reports a zombie connection when
// the previous scheduled heartbeat got no ACK; otherwise it records the send.
func (h *heartbeater) beat(now time.Time) (zombie bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.awaitingAck {
		return true
	}
	h.awaitingAck = true
	h.sentAt = now
	return false
}

// requested records a heartbeat the server asked for with op 1.
func (h *heartbeater) requested(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.reqPending {
		h.reqPending, h.reqSentAt = true, now
	}
}

// ack records an op 11 and the latency it shows. ACKs carry no id; one is credited to
// the scheduled heartbeat first.
func (h *heartbeater) ack(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.awaitingAck:
		h.latency = now.Sub(h.sentAt)
		h.awaitingAck = false
	case h.reqPending:
		h.latency = now.Sub(h.reqSentAt)
		h.reqPending = false
	}
}

func (h *heartbeater) lastLatency() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.latency
}
