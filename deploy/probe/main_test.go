package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /draining", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not ready: starting or draining", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// A listener that was closed: nothing answers on its port.
	dead := httptest.NewServer(mux)
	deadURL := dead.URL
	dead.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"ready", []string{srv.URL + "/readyz"}, 0, ""},
		{"not ready", []string{srv.URL + "/draining"}, 1, "503 Service Unavailable"},
		{"not found", []string{srv.URL + "/nope"}, 1, "404"},
		{"nothing listening", []string{deadURL + "/readyz"}, 1, "connection refused"},
		{"no argument", nil, 2, "usage"},
		{"two arguments", []string{srv.URL, srv.URL}, 2, "usage"},
		{"not a URL", []string{"127.0.0.1:9001/readyz"}, 1, "not an http(s) URL"},
		{"other scheme", []string{"ftp://127.0.0.1/readyz"}, 1, "not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if got := run(tt.args, &stderr); got != tt.wantCode {
				t.Fatalf("run(%q) = %d, want %d (stderr %q)", tt.args, got, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr = %q, want it to mention %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

func TestCheckRedactsPassword(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	u := strings.Replace(srv.URL, "http://", "http://user:hunter2hunter2@", 1)
	err := check(t.Context(), srv.Client(), u+"/readyz")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("check error = %v, want a failure that does not show the password", err)
	}
}
