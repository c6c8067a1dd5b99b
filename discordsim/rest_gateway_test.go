package discordsim

import (
	"encoding/json"
	"net/http"
	"testing"
)

// GET /gateway needs no Authorization (Discord documents it as
// unauthenticated); GET /gateway/bot does; a wrong token is still refused.
func TestRESTGatewayAuth(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{})
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/api/v10/gateway", "", http.StatusOK},
		{"/api/v10/gateway", "Bot " + s.Bots()[0].Token, http.StatusOK},
		{"/api/v10/gateway", "Bot not-a-token", http.StatusUnauthorized},
		{"/api/v10/gateway/bot", "", http.StatusUnauthorized},
		{"/api/v10/gateway/bot", "Bot " + s.Bots()[0].Token, http.StatusOK},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			URL string `json:"url"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s (with auth: %v): status %d, want %d", tc.path, tc.auth != "", resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && (err != nil || body.URL != s.GatewayURL()) {
			t.Errorf("GET %s: url %q (%v), want %q", tc.path, body.URL, err, s.GatewayURL())
		}
	}
}
