package discordsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RESTFault describes a failure the REST API injects into the next matching
// requests, so tests can prove a client survives what Discord sometimes does.
type RESTFault struct {
	// Route limits the fault to requests whose path (after /api/v{N})
	// contains this text, e.g. "/messages"; empty matches every request.
	Route string `json:"route,omitempty"`
	// Method limits the fault to one HTTP method; empty matches all.
	Method string `json:"method,omitempty"`
	// Count is how many requests the fault affects (default 1).
	Count int `json:"count,omitempty"`
	// Status answers the request with this status instead of serving it:
	// 500, 502, 503 or 504 with Discord's bodies, or 429 for a ratelimit of
	// scope "shared" (which does not count as an invalid request). Zero
	// serves the request normally (after Latency).
	Status int `json:"status,omitempty"`
	// RetryAfter is the retry_after of an injected 429 (default 1s).
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// Latency delays the request before it is answered.
	Latency time.Duration `json:"latency,omitempty"`
	// Drop closes the connection without an answer.
	Drop bool `json:"drop,omitempty"`
}

// validate checks a fault.
func (f *RESTFault) validate() error {
	switch f.Status {
	case 0, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
	default:
		return fmt.Errorf("fault status %d is not one of 429, 500, 502, 503, 504 (or 0)", f.Status)
	}
	if f.Count < 0 || f.Latency < 0 || f.RetryAfter < 0 {
		return errors.New("fault count, latency and retry_after must not be negative")
	}
	if f.Status == 0 && f.Latency == 0 && !f.Drop {
		return errors.New("fault does nothing: set status, latency or drop")
	}
	return nil
}

// faultList holds the pending faults, applied in order.
type faultList struct {
	mu      sync.Mutex
	pending []*RESTFault
	n       atomic.Int64 // len(pending), read without the lock on the hot path
}

// InjectRESTFault makes the next matching requests fail as f says.
func (s *Server) InjectRESTFault(f RESTFault) error {
	if s.rest == nil {
		return errors.New("injecting REST fault: the simulator is not started")
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("injecting REST fault: %w", err)
	}
	if f.Count == 0 {
		f.Count = 1
	}
	if f.Status == http.StatusTooManyRequests && f.RetryAfter == 0 {
		f.RetryAfter = time.Second
	}
	s.rest.faults.add(&f)
	return nil
}

// ClearRESTFaults removes every pending REST fault.
func (s *Server) ClearRESTFaults() {
	if s.rest != nil {
		s.rest.faults.clear()
	}
}

func (fl *faultList) add(f *RESTFault) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.pending = append(fl.pending, f)
	fl.setN(len(fl.pending))
}

func (fl *faultList) clear() {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.pending = nil
	fl.setN(0)
}

func (fl *faultList) setN(n int) { fl.n.Store(int64(n)) }

// take returns (a copy of) the first fault matching the request, consuming
// one of its uses.
func (fl *faultList) take(method, path string) (RESTFault, bool) {
	if fl.n.Load() == 0 {
		return RESTFault{}, false
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for i, f := range fl.pending {
		if (f.Method != "" && !strings.EqualFold(f.Method, method)) || !strings.Contains(path, f.Route) {
			continue
		}
		f.Count--
		out := *f
		if f.Count <= 0 {
			fl.pending = append(fl.pending[:i], fl.pending[i+1:]...)
			fl.setN(len(fl.pending))
		}
		return out, true
	}
	return RESTFault{}, false
}

// apply injects a pending fault into c; it returns true when the request has
// been answered (or dropped) by the fault.
func (fl *faultList) apply(rs *restState, c *reqCtx) bool {
	f, ok := fl.take(c.r.Method, c.r.URL.Path)
	if !ok {
		return false
	}
	rs.stats.fault()
	c.faulted = true
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-c.r.Context().Done():
			t.Stop()
			return true
		}
	}
	if f.Drop {
		if hj, ok := c.w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				c.status = -1
				return true
			}
		}
		// HTTP/2 cannot be hijacked: abort the stream instead.
		c.status = -1
		panic(http.ErrAbortHandler)
	}
	switch f.Status {
	case 0:
		return false
	case http.StatusTooManyRequests:
		d := decision{retryAfter: f.RetryAfter}
		c.w.Header()[hdrBucket] = []string{"shared"}
		rs.write429(c, d, "shared", false)
	case http.StatusBadGateway:
		c.raw(f.Status, []byte(`{"message": "502: Bad Gateway", "code": 0}`))
	case http.StatusServiceUnavailable:
		c.raw(f.Status, []byte(`{"message": "503: Service Unavailable", "code": 0}`))
	case http.StatusGatewayTimeout:
		c.raw(f.Status, []byte(`{"message": "504: Gateway Timeout", "code": 0}`))
	default:
		c.raw(f.Status, []byte(`{"message": "500: Internal Server Error", "code": 0}`))
	}
	return true
}

// faultWire is the admin endpoint's JSON form of a fault (durations in ms).
type faultWire struct {
	Route        string `json:"route"`
	Method       string `json:"method"`
	Count        int    `json:"count"`
	Status       int    `json:"status"`
	RetryAfterMS int64  `json:"retry_after_ms"`
	LatencyMS    int64  `json:"latency_ms"`
	Drop         bool   `json:"drop"`
}

// serveAdmin serves the REST admin endpoints:
//
//	POST   /_sim/rest/faults  body {"route","method","count","status","retry_after_ms","latency_ms","drop"}
//	DELETE /_sim/rest/faults  clears pending faults
//	GET    /_sim/rest/stats   the REST accounting (RESTStats)
func (rs *restState) serveAdmin(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_sim/rest/faults" && r.Method == http.MethodPost:
		var fw faultWire
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fw); err != nil {
			adminError(w, http.StatusBadRequest, "decoding fault: "+err.Error())
			return
		}
		err := rs.s.InjectRESTFault(RESTFault{Route: fw.Route, Method: fw.Method, Count: fw.Count, Status: fw.Status,
			RetryAfter: time.Duration(fw.RetryAfterMS) * time.Millisecond, Latency: time.Duration(fw.LatencyMS) * time.Millisecond, Drop: fw.Drop})
		if err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_sim/rest/faults" && r.Method == http.MethodDelete:
		rs.faults.clear()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_sim/rest/stats" && r.Method == http.MethodGet:
		b, err := json.Marshal(rs.s.RESTStats())
		if err != nil {
			adminError(w, http.StatusInternalServerError, "encoding stats: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	default:
		adminError(w, http.StatusNotFound, "unknown admin endpoint "+r.Method+" "+r.URL.Path+
			"; try POST|DELETE /_sim/rest/faults or GET /_sim/rest/stats")
	}
}

func adminError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
