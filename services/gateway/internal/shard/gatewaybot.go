package shard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kubecord/kubecord/services/gateway/internal/identify"
)

// GatewayBot is the answer of GET /gateway/bot.
type GatewayBot struct {
	// URL is the gateway websocket URL.
	URL string
	// Shards is Discord's recommended shard count.
	Shards int
	// SessionStartLimit is the identify budget and concurrency.
	SessionStartLimit identify.SessionStartLimit
}

type gatewayBotJSON struct {
	URL               string `json:"url"`
	Shards            int    `json:"shards"`
	SessionStartLimit struct {
		Total          int   `json:"total"`
		Remaining      int   `json:"remaining"`
		ResetAfter     int64 `json:"reset_after"`
		MaxConcurrency int   `json:"max_concurrency"`
	} `json:"session_start_limit"`
}

// userAgent is the User-Agent Discord requires of bots.
const userAgent = "DiscordBot (https://github.com/kubecord/kubecord, 0.1)"

// FetchGatewayBot asks restBase (such as https://discord.com/api/v10, or the REST
// service's passthrough) for the gateway URL, the recommended shard count and the session
// start limit. The token is sent only in the Authorization header.
func FetchGatewayBot(ctx context.Context, restBase, token string) (GatewayBot, error) {
	if token == "" {
		return GatewayBot{}, errors.New("fetching /gateway/bot: a bot token is required")
	}
	url := strings.TrimSuffix(restBase, "/") + "/gateway/bot"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return GatewayBot{}, fmt.Errorf("fetching /gateway/bot: bad REST base %q: %w", restBase, err)
	}
	req.Header.Set("Authorization", "Bot "+token)
	req.Header.Set("User-Agent", userAgent)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return GatewayBot{}, fmt.Errorf("fetching /gateway/bot from %s: %w", hostOf(url), err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below; nothing to report
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return GatewayBot{}, fmt.Errorf("reading /gateway/bot response: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return GatewayBot{}, errors.New("fetching /gateway/bot: 401 Unauthorized: the bot token was rejected; set a valid token")
	case resp.StatusCode != http.StatusOK:
		return GatewayBot{}, fmt.Errorf("fetching /gateway/bot: HTTP %d: %.200s", resp.StatusCode, body)
	}
	return parseGatewayBot(body)
}

func parseGatewayBot(body []byte) (GatewayBot, error) {
	var g gatewayBotJSON
	if err := json.Unmarshal(body, &g); err != nil {
		return GatewayBot{}, fmt.Errorf("decoding /gateway/bot response: %w", err)
	}
	l := g.SessionStartLimit
	switch {
	case g.URL == "":
		return GatewayBot{}, errors.New("/gateway/bot response has no url")
	case g.Shards < 1:
		return GatewayBot{}, fmt.Errorf("/gateway/bot recommends %d shards, want at least 1", g.Shards)
	case l.MaxConcurrency < 1 || l.Total < 1 || l.Remaining < 0 || l.Remaining > l.Total || l.ResetAfter < 0:
		return GatewayBot{}, fmt.Errorf("/gateway/bot has an inconsistent session_start_limit (total %d, remaining %d, reset_after %d ms, max_concurrency %d)",
			l.Total, l.Remaining, l.ResetAfter, l.MaxConcurrency)
	}
	return GatewayBot{
		URL:    g.URL,
		Shards: g.Shards,
		SessionStartLimit: identify.SessionStartLimit{
			Total:          l.Total,
			Remaining:      l.Remaining,
			ResetAfter:     time.Duration(l.ResetAfter) * time.Millisecond,
			MaxConcurrency: l.MaxConcurrency,
		},
	}, nil
}
