package discordsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Target picks the gateway connections a fault applies to: one session, one
// shard id (of any shard count), or, when both are empty, every connection.
type Target struct {
	SessionID string `json:"session_id,omitempty"`
	Shard     *int   `json:"shard,omitempty"`
}

// SessionTarget targets the connection of one session.
func SessionTarget(id string) Target { return Target{SessionID: id} }

// ShardTarget targets every connection identified as shard id.
func ShardTarget(id int) Target { return Target{Shard: &id} }

// connsFor returns the live connections matching t.
func (g *gatewayState) connsFor(t Target) []*gwConn {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []*gwConn
	for c := range g.conns {
		sess := c.sess.Load()
		switch {
		case t.SessionID != "":
			if sess == nil || sess.id != t.SessionID {
				continue
			}
		case t.Shard != nil:
			if sess == nil || sess.shardID != *t.Shard {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// Disconnect closes the targeted connections with a close code (4000 when
// code is 0). Codes 4003, 4004 and 4007-4014 end the session as Discord's
// "start a new session" codes imply; others leave it resumable. It returns
// how many connections it closed.
func (s *Server) Disconnect(t Target, code int) int {
	if code == 0 {
		code = CloseUnknownError
	}
	conns := s.gw.connsFor(t)
	for _, c := range conns {
		if sess := c.sess.Load(); sess != nil && !resumableClose(code) {
			s.gw.killSession(sess)
		}
		c.closeWith(code, "Disconnected by discordsim fault injection.")
	}
	return len(conns)
}

func resumableClose(code int) bool {
	switch code {
	case 1000, 1001, CloseNotAuthenticated, CloseAuthenticationFailed, CloseInvalidSeq, CloseSessionTimedOut,
		CloseInvalidShard, CloseShardingRequired, CloseInvalidAPIVersion, CloseInvalidIntents, CloseDisallowedIntents:
		return false
	}
	return true
}

// reconnectCloseDelay is how long after op 7 the server closes the socket
// itself if the client has not ("a few seconds later", protocol.md §10).
const reconnectCloseDelay = 5 * time.Second

// SendReconnect sends op 7 to the targeted connections; the server closes
// them a few seconds later if the client does not. The session stays
// resumable. It returns how many connections got it.
func (s *Server) SendReconnect(t Target) int {
	conns := s.gw.connsFor(t)
	for _, c := range conns {
		s.gw.stats.reconnects.Add(1)
		c.sendControl([]byte(`{"op":7,"d":null,"s":null,"t":null}`))
		delay := min(reconnectCloseDelay, s.cfg.HeartbeatInterval)
		c.mu.Lock()
		if c.closeCode == 0 && c.reconnect == nil {
			c.reconnect = time.AfterFunc(delay, func() { c.closeWith(CloseUnknownError, "Reconnect requested.") })
		}
		c.mu.Unlock()
	}
	return len(conns)
}

// InvalidateSession sends op 9 with d:resumable. With resumable false the
// session ends: it gets no more dispatches and cannot be resumed, and the
// connection may Identify again. With true the connection is detached and
// the client is expected to reconnect and resume.
func (s *Server) InvalidateSession(t Target, resumable bool) int {
	conns := s.gw.connsFor(t)
	for _, c := range conns {
		s.gw.stats.invalidSessions.Add(1)
		sess := c.sess.Swap(nil)
		if sess != nil {
			if resumable {
				sess.mu.Lock()
				if sess.conn == c {
					sess.conn, sess.detachedAt = nil, time.Now()
				}
				sess.mu.Unlock()
			} else {
				s.gw.killSession(sess)
			}
		}
		if resumable {
			c.sendControl([]byte(`{"op":9,"d":true,"s":null,"t":null}`))
		} else {
			c.sendControl([]byte(`{"op":9,"d":false,"s":null,"t":null}`))
		}
	}
	return len(conns)
}

// Zombie makes the targeted connections stop (on) or resume (off) ACKing
// heartbeats, so a client's zombie detection can be tested.
func (s *Server) Zombie(t Target, on bool) int {
	conns := s.gw.connsFor(t)
	for _, c := range conns {
		c.zombie.Store(on)
	}
	return len(conns)
}

// DropNextAck makes the targeted connections skip the ACK of their next n heartbeats.
func (s *Server) DropNextAck(t Target, n int) int {
	conns := s.gw.connsFor(t)
	for _, c := range conns {
		c.dropAcks.Add(int32(n))
	}
	return len(conns)
}

// RequestHeartbeat sends op 1 (the server asking for a heartbeat now).
func (s *Server) RequestHeartbeat(t Target) int {
	conns := s.gw.connsFor(t)
	for _, c := range conns {
		c.sendControl([]byte(`{"op":1,"d":null,"s":null,"t":null}`))
	}
	return len(conns)
}

// SetGuildUnavailable starts (true) or ends (false) an outage of a guild.
// Starting one dispatches GUILD_DELETE with unavailable:true; ending it
// dispatches a full GUILD_CREATE to each session of the guild's shard, built
// for that session's intents and large_threshold. Sessions that identify
// during the outage see the guild as unavailable in READY and get no
// GUILD_CREATE for it until it comes back.
func (s *Server) SetGuildUnavailable(guildID Snowflake, unavailable bool) error {
	w := s.world
	w.mu.Lock()
	gd := w.guilds[guildID]
	if gd == nil {
		w.mu.Unlock()
		return fmt.Errorf("discordsim: unknown guild %v", guildID)
	}
	changed := gd.Unavailable != unavailable
	gd.Unavailable = unavailable
	w.mu.Unlock()
	if !changed {
		return nil
	}
	if unavailable {
		s.dispatch(guildID, "GUILD_DELETE", map[string]any{"id": guildID, "unavailable": true})
		return nil
	}
	// Per-session GUILD_CREATE, under the world's read lock like READY's.
	g := s.gw
	w.mu.RLock()
	defer w.mu.RUnlock()
	g.mu.RLock()
	defer g.mu.RUnlock()
	for numShards, byShard := range g.live {
		for sess := range byShard[ShardFor(guildID, numShards)] {
			if sess.intents&IntentGuilds == 0 {
				continue
			}
			body := mustJSON(w.guildCreateLocked(gd, sess))
			sess.mu.Lock()
			if !sess.dead {
				sess.pushLocked(&s.cfg, "GUILD_CREATE", body)
			}
			sess.mu.Unlock()
		}
	}
	return nil
}

// faultRequest is the body of POST /_sim/faults/{kind}.
type faultRequest struct {
	Target
	GuildID   Snowflake `json:"guild_id"`
	Code      int       `json:"code"`
	Resumable bool      `json:"resumable"`
	On        *bool     `json:"on"`
	N         int       `json:"n"`
}

// mountAdmin mounts the /_sim endpoints: stats, gateway faults and load.
func (s *Server) mountAdmin() {
	s.mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"gateway": s.GatewayStats(), "rest": s.RESTStats(), "load": s.LoadStats()})
	})
	s.mux.HandleFunc("GET /_sim/sessions/{id}/sent", func(w http.ResponseWriter, r *http.Request) {
		set, ok := s.SentSeqs(r.PathValue("id"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "unknown session id", "code": 0})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"sent": set, "count": set.Count()})
	})
	s.mux.HandleFunc("POST /_sim/faults/{kind}", func(w http.ResponseWriter, r *http.Request) {
		var req faultRequest
		if err := decodeBody(r, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": err.Error(), "code": 50035})
			return
		}
		var n int
		switch r.PathValue("kind") {
		case "disconnect":
			n = s.Disconnect(req.Target, req.Code)
		case "reconnect":
			n = s.SendReconnect(req.Target)
		case "invalidate":
			n = s.InvalidateSession(req.Target, req.Resumable)
		case "zombie":
			n = s.Zombie(req.Target, req.On == nil || *req.On)
		case "drop-ack":
			n = s.DropNextAck(req.Target, max(req.N, 1))
		case "heartbeat":
			n = s.RequestHeartbeat(req.Target)
		case "outage":
			if err := s.SetGuildUnavailable(req.GuildID, req.On == nil || *req.On); err != nil {
				writeJSON(w, http.StatusNotFound, map[string]any{"message": err.Error(), "code": 10004})
				return
			}
			n = 1
		default:
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "unknown fault; use disconnect, reconnect, invalidate, zombie, drop-ack, heartbeat or outage", "code": 0})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"affected": n})
	})
	s.mux.HandleFunc("POST /_sim/load", func(w http.ResponseWriter, r *http.Request) {
		var lc LoadConfig
		if err := decodeBody(r, &lc); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": err.Error(), "code": 50035})
			return
		}
		s.StopLoad()
		if lc.Rate > 0 {
			if err := s.StartLoad(lc); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"message": err.Error(), "code": 50035})
				return
			}
		}
		writeJSON(w, http.StatusOK, s.LoadStats())
	})
}

// decodeBody decodes a small JSON request body; an empty body is allowed.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("invalid JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
