package discordsim

import (
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// gwRedirect sends discordgo's requests for https://discord.com to the
// simulator, without touching discordgo's package-level endpoint variables
// (other tests in this package run in parallel).
type gwRedirect struct{ base *url.URL }

func (r gwRedirect) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = r.base.Scheme, r.base.Host, r.base.Host
	return http.DefaultTransport.RoundTrip(req)
}

// waitUntil polls cond until it holds or fails the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFidelityGatewayDiscordgo drives the simulator with an independent,
// widely used client library: discordgo discovers the gateway over REST,
// identifies, receives READY and every GUILD_CREATE, sees a message created
// over REST arrive as MESSAGE_CREATE, survives a forced disconnect by
// resuming (no second identify), and receives what was sent while it was away.
func TestFidelityGatewayDiscordgo(t *testing.T) {
	t.Parallel()
	sim := newSim(t, Config{Guilds: 12, Members: 1200})
	base, err := url.Parse(sim.URL())
	if err != nil {
		t.Fatal(err)
	}
	dg, err := discordgo.New("Bot " + botToken(sim))
	if err != nil {
		t.Fatal(err)
	}
	dg.Client = &http.Client{Transport: gwRedirect{base}, Timeout: 10 * time.Second}
	dg.Identify.Intents = discordgo.IntentsAll
	dg.LogLevel = -1

	var (
		mu       sync.Mutex
		ready    *discordgo.Ready
		guilds   = map[string]bool{}
		resumed  int
		messages = map[string]bool{}
	)
	dg.AddHandler(func(_ *discordgo.Session, r *discordgo.Ready) {
		mu.Lock()
		ready = r
		mu.Unlock()
	})
	dg.AddHandler(func(_ *discordgo.Session, g *discordgo.GuildCreate) {
		mu.Lock()
		guilds[g.ID] = true
		mu.Unlock()
	})
	dg.AddHandler(func(_ *discordgo.Session, _ *discordgo.Resumed) {
		mu.Lock()
		resumed++
		mu.Unlock()
	})
	dg.AddHandler(func(_ *discordgo.Session, m *discordgo.MessageCreate) {
		mu.Lock()
		messages[m.Content] = true
		mu.Unlock()
	})
	if err := dg.Open(); err != nil {
		t.Fatalf("discordgo Open: %v", err)
	}
	t.Cleanup(func() { _ = dg.Close() })

	locked := func(f func() bool) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return f()
		}
	}
	waitUntil(t, 20*time.Second, "READY and 12 GUILD_CREATEs", locked(func() bool { return ready != nil && len(guilds) == 12 }))
	mu.Lock()
	sessionID := ready.SessionID
	if ready.User.ID != sim.Bots()[0].ID.String() || len(ready.Guilds) != 12 {
		t.Fatalf("READY user %s with %d guilds, want the bot with 12", ready.User.ID, len(ready.Guilds))
	}
	mu.Unlock()
	// discordgo's state cache is filled from GUILD_CREATE.
	g, err := dg.State.Guild(sim.world.guildOrder[0].String())
	if err != nil || g.MemberCount < 2 || len(g.Channels) == 0 {
		t.Fatalf("discordgo state for the biggest guild: %v %+v", err, g)
	}

	// REST -> world -> gateway: a message sent with discordgo comes back as MESSAGE_CREATE.
	var textID string
	for _, ch := range g.Channels {
		if ch.Type == discordgo.ChannelTypeGuildText {
			textID = ch.ID
		}
	}
	if _, err := dg.ChannelMessageSend(textID, "over rest"); err != nil {
		t.Fatalf("ChannelMessageSend: %v", err)
	}
	waitUntil(t, 20*time.Second, "MESSAGE_CREATE of the REST message", locked(func() bool { return messages["over rest"] }))

	// Forced disconnect: discordgo must resume, not identify again.
	if n := sim.Disconnect(SessionTarget(sessionID), CloseUnknownError); n != 1 {
		t.Fatalf("Disconnect affected %d connections, want 1", n)
	}
	sim.Dispatch(sim.world.guildOrder[0], "MESSAGE_CREATE", map[string]any{
		"id": sim.newID(), "channel_id": textID, "guild_id": g.ID, "content": "while away", "type": 0,
		"author": map[string]any{"id": sim.Bots()[0].ID, "username": "bot"}, "mentions": []any{}, "attachments": []any{}, "embeds": []any{},
		"timestamp": time.Now().UTC().Format(time.RFC3339),
	})
	waitUntil(t, 20*time.Second, "RESUMED", locked(func() bool { return resumed == 1 }))
	waitUntil(t, 20*time.Second, "the event sent while disconnected", locked(func() bool { return messages["while away"] }))
	st := sim.GatewayStats()
	if st.Identifies != 1 || st.Resumes != 1 {
		t.Fatalf("identifies %d resumes %d, want 1 and 1 (%+v)", st.Identifies, st.Resumes, st)
	}
	sent, _ := sim.SentSeqs(sessionID)
	if len(sent) != 1 || sent[0].From != 1 {
		t.Fatalf("sent sequence numbers %v, want one gapless range from 1", sent)
	}
}
