package discordsim

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// redirectTransport sends discordgo's requests for https://discord.com to the
// simulator. discordgo builds its URLs from package-level variables; rewriting
// in the transport leaves them alone, so this test can run in parallel with
// others.
type redirectTransport struct {
	target *url.URL
	base   http.RoundTripper
}

func (rt *redirectTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = rt.target.Scheme, rt.target.Host, rt.target.Host
	return rt.base.RoundTrip(r)
}

// discordgoSession returns a discordgo session that talks to s as its first bot.
func discordgoSession(t *testing.T, s *Server) *discordgo.Session {
	t.Helper()
	dg, err := discordgo.New("Bot " + botToken(s))
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	dg.Client = &http.Client{Transport: &redirectTransport{target: target, base: tr}, Timeout: 20 * time.Second}
	dg.MaxRestRetries = 3
	return dg
}

// TestFidelityRESTDiscordgo drives the REST API with discordgo, a widely used
// independent client: its typed decoding proves the object shapes, and its
// ratelimiter proves the headers and 429s are what a real client expects.
func TestFidelityRESTDiscordgo(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{
		// The real clock: discordgo sleeps for real on retry_after.
		Now: time.Now,
		// A window long enough that discordgo's first send still falls in
		// the one the raw client exhausted, even on a loaded machine.
		Buckets: map[string]BucketLimit{"message-create": {Limit: 2, Window: time.Second}},
	})
	dg := discordgoSession(t, s)
	var rateLimited atomic.Int64
	dg.SyncEvents = true
	dg.AddHandler(func(_ *discordgo.Session, r *discordgo.RateLimit) { rateLimited.Add(1) })
	chans, guilds := textChannels(s)
	ch, gid := chans[0].String(), guilds[0].String()

	me, err := dg.User("@me")
	if err != nil || me.ID != s.Bots()[0].ID.String() || !me.Bot {
		t.Fatalf("User(@me) = %+v, %v", me, err)
	}
	c, err := dg.Channel(ch)
	if err != nil || c.ID != ch || c.GuildID != gid || c.Type != discordgo.ChannelTypeGuildText {
		t.Fatalf("Channel = %+v, %v", c, err)
	}
	g, err := dg.Guild(gid)
	if err != nil || g.ID != gid || len(g.Roles) == 0 {
		t.Fatalf("Guild = %+v, %v", g, err)
	}
	roles, err := dg.GuildRoles(gid)
	if err != nil || len(roles) != len(g.Roles) {
		t.Fatalf("GuildRoles = %d roles, %v", len(roles), err)
	}
	members, err := dg.GuildMembers(gid, "", 10)
	if err != nil || len(members) == 0 || members[0].User == nil {
		t.Fatalf("GuildMembers = %+v, %v", members, err)
	}
	gw, err := dg.GatewayBot()
	// discordgo adds a trailing slash to the URL.
	if err != nil || strings.TrimSuffix(gw.URL, "/") != s.GatewayURL() || gw.Shards < 1 {
		t.Fatalf("GatewayBot = %+v, %v", gw, err)
	}

	// Exhaust the channel's message-create bucket behind discordgo's back,
	// so its next send gets a 429 it has to wait out.
	raw := newRESTClient(t, s, botToken(s))
	for i := 0; raw.do("POST", "/channels/"+ch+"/messages", map[string]string{"content": "filler"}).status != 429; i++ {
		if i == 20 {
			t.Fatal("20 messages in a row without a 429 from a bucket of 2 per second")
		}
	}
	before := s.RESTStats().RateLimitedByScope["user"]
	start := time.Now()
	m, err := dg.ChannelMessageSend(ch, "sent by discordgo")
	if err != nil {
		t.Fatalf("ChannelMessageSend after a 429: %v", err)
	}
	if m.Content != "sent by discordgo" || m.ChannelID != ch || m.Author == nil || m.Author.ID != me.ID {
		t.Fatalf("message %+v", m)
	}
	if rateLimited.Load() == 0 {
		t.Fatal("discordgo saw no 429")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("discordgo recovered in %v: it did not wait for retry_after", d)
	}
	if after := s.RESTStats().RateLimitedByScope["user"]; after <= before {
		t.Fatalf("RESTStats user-scope 429s %d -> %d: the 429 was not accounted", before, after)
	}
	// A burst: discordgo's bucket tracking (from the headers) paces itself;
	// every message must arrive, and at most a 429 per window may happen.
	for i := range 5 {
		if _, err := dg.ChannelMessageSend(chans[1].String(), "burst "+string(rune('a'+i))); err != nil {
			t.Fatalf("burst message %d: %v", i, err)
		}
	}
	msgs, err := dg.ChannelMessages(chans[1].String(), 10, "", "", "")
	if err != nil || len(msgs) != 5 || msgs[0].Content != "burst e" {
		t.Fatalf("ChannelMessages = %d messages, %v", len(msgs), err)
	}

	// Edits, reactions, files, deletes.
	if e, err := dg.ChannelMessageEdit(ch, m.ID, "edited by discordgo"); err != nil || e.Content != "edited by discordgo" || e.EditedTimestamp == nil {
		t.Fatalf("ChannelMessageEdit = %+v, %v", e, err)
	}
	if err := dg.MessageReactionAdd(ch, m.ID, "👍"); err != nil {
		t.Fatalf("MessageReactionAdd: %v", err)
	}
	users, err := dg.MessageReactions(ch, m.ID, "👍", 10, "", "")
	if err != nil || len(users) != 1 || users[0].ID != me.ID {
		t.Fatalf("MessageReactions = %+v, %v", users, err)
	}
	got, err := dg.ChannelMessage(ch, m.ID)
	if err != nil || len(got.Reactions) != 1 || !got.Reactions[0].Me || got.Reactions[0].Emoji.Name != "👍" {
		t.Fatalf("ChannelMessage reactions = %+v, %v", got, err)
	}
	withFile, err := dg.ChannelMessageSendComplex(chans[2].String(), &discordgo.MessageSend{
		Content: "a file",
		Files:   []*discordgo.File{{Name: "notes.txt", ContentType: "text/plain", Reader: bytes.NewReader([]byte("hello file"))}},
	})
	if err != nil || len(withFile.Attachments) != 1 || withFile.Attachments[0].Filename != "notes.txt" || withFile.Attachments[0].Size != 10 {
		t.Fatalf("ChannelMessageSendComplex = %+v, %v", withFile, err)
	}
	if err := dg.ChannelMessageDelete(ch, m.ID); err != nil {
		t.Fatalf("ChannelMessageDelete: %v", err)
	}
	if _, err := dg.ChannelMessage(ch, m.ID); err == nil || !strings.Contains(err.Error(), "10008") {
		t.Fatalf("deleted message: %v, want Unknown Message (10008)", err)
	}

	// Interactions and webhooks.
	in, err := s.CreateInteraction(InteractionSpec{GuildID: guilds[0], ChannelID: chans[0]})
	if err != nil {
		t.Fatal(err)
	}
	dgi := &discordgo.Interaction{ID: in.ID.String(), AppID: in.ApplicationID.String(), Token: in.Token}
	if err := dg.InteractionRespond(dgi, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredChannelMessageWithSource}); err != nil {
		t.Fatalf("InteractionRespond: %v", err)
	}
	if _, err := dg.InteractionResponseEdit(dgi, &discordgo.WebhookEdit{Content: ptr("done")}); err != nil {
		t.Fatalf("InteractionResponseEdit: %v", err)
	}
	if f, err := dg.FollowupMessageCreate(dgi, true, &discordgo.WebhookParams{Content: "followup"}); err != nil || f.Content != "followup" {
		t.Fatalf("FollowupMessageCreate = %+v, %v", f, err)
	}
	if err := dg.InteractionRespond(dgi, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Content: "twice"}}); err == nil || !strings.Contains(err.Error(), "40060") {
		t.Fatalf("second InteractionRespond: %v, want 40060", err)
	}
	hook, err := dg.WebhookCreate(ch, "fidelity", "")
	if err != nil || hook.Token == "" {
		t.Fatalf("WebhookCreate = %+v, %v", hook, err)
	}
	if wm, err := dg.WebhookExecute(hook.ID, hook.Token, true, &discordgo.WebhookParams{Content: "from a webhook"}); err != nil || wm.WebhookID != hook.ID {
		t.Fatalf("WebhookExecute = %+v, %v", wm, err)
	}

	st := s.RESTStats()
	if st.RateLimited == 0 || st.ByRoute["POST /channels/{channel.id}/messages"] < 8 || st.Global429 != 0 {
		t.Fatalf("RESTStats: %+v", st)
	}
	t.Logf("discordgo saw %d 429s; simulator answered %d (%v): %+v", rateLimited.Load(), st.RateLimited, st.RateLimitedByScope, st.RateLimitEvents)
}

func ptr[T any](v T) *T { return &v }
