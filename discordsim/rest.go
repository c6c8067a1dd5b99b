package discordsim

import (
	"net/http"
	"time"
)

// RESTConfig holds the REST API's limits. Zero values take Discord's real values.
type RESTConfig struct {
	// GlobalLimit is the number of requests per second one bot may make across
	// all routes (Discord: 50).
	GlobalLimit int
	// InvalidLimit is the number of 401, 403 and 429 responses one IP may get
	// within InvalidWindow before it is banned (Discord: 10,000 per 10 minutes).
	InvalidLimit int
	// InvalidWindow is the window of InvalidLimit (Discord: 10 minutes).
	InvalidWindow time.Duration
}

// restState is the REST API's mutable state.
type restState struct {
	s *Server
}

// newRESTState builds the REST state for s.
func newRESTState(s *Server) *restState {
	return &restState{s: s}
}

// restHandler serves /api/... .
func (s *Server) restHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message": "404: Not Found", "code": 0}`))
	})
}

// RESTStats is the REST API's accounting.
type RESTStats struct {
	// Requests counts every request answered.
	Requests int64 `json:"requests"`
}

// RESTStats returns a snapshot of the REST accounting.
func (s *Server) RESTStats() RESTStats {
	return RESTStats{}
}
