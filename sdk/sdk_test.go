package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubecord/kubecord/discordsim"
	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/sdk"
	"github.com/kubecord/kubecord/sdk/sdktest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestEventName(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		sdk.EventName[*discordv1.MessageCreate]():     "MESSAGE_CREATE",
		sdk.EventName[*discordv1.GuildMembersChunk](): "GUILD_MEMBERS_CHUNK",
		sdk.EventName[*discordv1.Ready]():             "READY",
	} {
		if got != want {
			t.Errorf("EventName = %q, want %q", got, want)
		}
	}
}

// TestEventsGenerated checks events.go lists exactly the Event payload cases.
func TestEventsGenerated(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "events.go")
	cmd := exec.Command("go", "run", "./internal/genevents", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("genevents: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("events.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("sdk/events.go is stale: run 'go generate ./sdk' and commit it")
	}
}

func TestNewOptionErrors(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]sdk.Option{
		"bad group":       sdk.WithGroup("no spaces allowed"),
		"zero credit":     sdk.WithMaxInFlight(0),
		"zero lanes":      sdk.WithConcurrency(0),
		"half a TLS pair": sdk.WithTLS("", "cert.pem", ""),
		"zero attempts":   sdk.WithFailurePolicy(sdk.RequeueOnFailure, 0),
	} {
		if _, err := sdk.New(opt, sdk.WithMetrics(nil)); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	bot, err := sdk.New(sdk.WithMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := bot.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "no gateway address") {
		t.Errorf("Run without gateways: %v, want an error naming the missing gateway address", err)
	}
	bot, err = sdk.New(sdk.WithGateways("127.0.0.1:1"), sdk.WithMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := bot.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "no handlers") {
		t.Errorf("Run without handlers: %v, want an error saying to register handlers", err)
	}
}

func TestReplyThroughServices(t *testing.T) {
	t.Parallel()
	env := sdktest.Start(t, sdktest.Options{})
	bot, err := sdk.New(append(env.BotOptions(), sdk.WithLogger(quiet))...)
	if err != nil {
		t.Fatal(err)
	}
	sdk.On(bot, func(ctx context.Context, e *discordv1.MessageCreate) error {
		m := e.GetMessage()
		if m.GetContent() != "!ping" {
			return nil
		}
		if sdk.EventFrom(ctx).GetSequence() == 0 {
			return errors.New("no event envelope in the handler's context")
		}
		// Read-your-event: the state service has applied this event.
		if _, err := bot.Guild(ctx, e.GetGuildId()); err != nil {
			return err
		}
		_, err := bot.Reply(ctx, m, "pong")
		return err
	})
	env.Run(t, bot)
	msg := env.Say(t, "!ping")
	if reply := env.WaitReply(t, msg, 20*time.Second); reply.Content != "pong" {
		t.Errorf("reply = %q, want pong", reply.Content)
	}
}

// TestOrderPanicsAndAcks runs simulated load through a worker whose handler
// sometimes panics: per guild, events arrive in sequence order, panics are
// recovered and counted, and every event is acked (the group drains to 0).
func TestOrderPanicsAndAcks(t *testing.T) {
	t.Parallel()
	env := sdktest.Start(t, sdktest.Options{Guilds: 6, Shards: 2})
	reg := prometheus.NewRegistry()
	bot, err := sdk.New(append(env.BotOptions(), sdk.WithMetrics(reg), sdk.WithConcurrency(4), sdk.WithLogger(quiet))...)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	last := map[[2]uint64]uint64{} // (shard, guild) -> last sequence
	var handled, outOfOrder, panics atomic.Int64
	sdk.OnEvent(bot, "*", func(ctx context.Context, ev *discordv1.Event) error {
		handled.Add(1)
		key := [2]uint64{uint64(ev.GetShardId()), ev.GetGuildId()}
		mu.Lock()
		if ev.GetSequence() <= last[key] {
			outOfOrder.Add(1)
		}
		last[key] = ev.GetSequence()
		mu.Unlock()
		if ev.GetSequence()%50 == 0 {
			panics.Add(1)
			panic("handler bug")
		}
		return nil
	})
	env.Run(t, bot)
	if err := env.Sim.StartLoad(discordsim.LoadConfig{Rate: 400}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for handled.Load() < 400 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	env.Sim.StopLoad()
	if handled.Load() < 400 {
		t.Fatalf("handled %d events in 20s, want at least 400", handled.Load())
	}
	if n := outOfOrder.Load(); n != 0 {
		t.Errorf("%d events arrived out of order within their guild", n)
	}
	if panics.Load() == 0 {
		t.Fatal("no handler panicked; the test proves nothing")
	}
	waitAcked(t, env, "bot")
	if got := counterSum(t, reg, "kubecord_sdk_handler_panics_total"); got != float64(panics.Load()) {
		t.Errorf("panics metric = %v, want %d", got, panics.Load())
	}
}

// TestDrainFinishesAndAcks stops a worker while its handler runs: Run waits
// for the handler, acks its event and leaves, so nothing is redelivered. The
// same holds for a gateway reached through a dns:/// name.
func TestDrainFinishesAndAcks(t *testing.T) {
	t.Parallel()
	for _, viaDNS := range []bool{false, true} {
		t.Run(fmt.Sprintf("dns=%v", viaDNS), func(t *testing.T) {
			t.Parallel()
			testDrain(t, viaDNS)
		})
	}
}

func testDrain(t *testing.T, viaDNS bool) {
	env := sdktest.Start(t, sdktest.Options{})
	opts := append(env.BotOptions(), sdk.WithLogger(quiet))
	if viaDNS {
		_, port, err := net.SplitHostPort(env.GatewayAddr)
		if err != nil {
			t.Fatal(err)
		}
		opts = []sdk.Option{sdk.WithGateways("dns:///localhost:" + port), sdk.WithState(env.StateAddr),
			sdk.WithREST(env.RESTAddr), sdk.WithGroup("bot"), sdk.WithMemberID("dns-worker"), sdk.WithMetrics(nil),
			sdk.WithLogger(quiet)}
	}
	bot, err := sdk.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	sdk.On(bot, func(ctx context.Context, e *discordv1.MessageCreate) error {
		if e.GetMessage().GetContent() != "!slow" {
			return nil
		}
		close(started)
		<-release
		finished.Store(true)
		return nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- bot.Run(ctx) }()
	env.Say(t, "!slow")
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the handler never started")
	}
	cancel() // SIGTERM, in a real worker
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a handler was still running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the handler finished")
	}
	bot.Close()
	if !finished.Load() {
		t.Fatal("Run returned before the handler finished")
	}
	waitAcked(t, env, "bot")
}

// TestHTTPProbes checks the worker's /readyz, /healthz and /metrics.
func TestHTTPProbes(t *testing.T) {
	t.Parallel()
	env := sdktest.Start(t, sdktest.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	bot, err := sdk.New(append(env.BotOptions(), sdk.WithLogger(quiet), sdk.WithMetrics(reg), sdk.WithHTTP(addr))...)
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 1)
	sdk.On(bot, func(ctx context.Context, e *discordv1.MessageCreate) error {
		select {
		case handled <- struct{}{}:
		default:
		}
		return nil
	})
	env.Run(t, bot)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after joining: %d %q, want 200", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	env.Say(t, "hello")
	select {
	case <-handled:
	case <-time.After(20 * time.Second):
		t.Fatal("no MESSAGE_CREATE handled")
	}
	if _, body := get("/metrics"); !strings.Contains(body, "kubecord_sdk_handler_duration_seconds") {
		t.Errorf("/metrics lacks the handler histogram:\n%s", body)
	}
}

// TestBacklogArrivesInBatches starts a worker after events piled up in its group: the
// gateway sends them in DeliveryBatch messages, and every one is handled once, in order,
// and acked.
func TestBacklogArrivesInBatches(t *testing.T) {
	t.Parallel()
	env := sdktest.Start(t, sdktest.Options{Guilds: 1})
	const n = 60
	before := buffered(t, env, "bot") // READY, GUILD_CREATE: nobody consumes the group yet
	for i := range n {
		env.Say(t, fmt.Sprintf("backlog %d", i))
	}
	waitBuffered(t, env, "bot", before+n)
	reg := prometheus.NewRegistry()
	bot, err := sdk.New(append(env.BotOptions(), sdk.WithMetrics(reg), sdk.WithLogger(quiet))...)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	sdk.On(bot, func(ctx context.Context, e *discordv1.MessageCreate) error {
		if c := e.GetMessage().GetContent(); strings.HasPrefix(c, "backlog ") {
			mu.Lock()
			got = append(got, c)
			mu.Unlock()
		}
		return nil
	})
	env.Run(t, bot)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %d of %d backlog messages in 20s", k, n)
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
	waitAcked(t, env, "bot")
	mu.Lock()
	defer mu.Unlock()
	for i, c := range got {
		if want := fmt.Sprintf("backlog %d", i); c != want {
			t.Fatalf("message %d handled is %q, want %q (once each, in order)", i, c, want)
		}
	}
	if len(got) != n {
		t.Errorf("handled %d messages, want %d", len(got), n)
	}
	if b := counterSum(t, reg, "kubecord_sdk_delivery_batches_total"); b == 0 {
		t.Error("no DeliveryBatch message arrived: the backlog came one delivery per message")
	}
}

// TestOnGapSessionReset tells a worker, through OnGap and a metric, that a shard's session
// was reset: Discord invalidated it without a resume, so what it sent meanwhile is gone.
func TestOnGapSessionReset(t *testing.T) {
	t.Parallel()
	env := sdktest.Start(t, sdktest.Options{})
	reg := prometheus.NewRegistry()
	bot, err := sdk.New(append(env.BotOptions(), sdk.WithLogger(quiet), sdk.WithMetrics(reg))...)
	if err != nil {
		t.Fatal(err)
	}
	sdk.OnEvent(bot, "*", func(context.Context, *discordv1.Event) error { return nil })
	gaps := make(chan *gatewayv1.Gap, 10)
	sdk.OnGap(bot, func(_ context.Context, g *gatewayv1.Gap) {
		select {
		case gaps <- g:
		default:
		}
	})
	env.Run(t, bot)
	env.Sim.InvalidateSession(discordsim.ShardTarget(0), false)
	select {
	case g := <-gaps:
		if g.GetReason() != gatewayv1.Gap_REASON_SESSION_RESET || len(g.GetRanges()) != 1 ||
			g.GetRanges()[0].GetFrom().GetShardId() != 0 || g.GetRanges()[0].GetTo() != nil || g.GetLost() != 0 {
			t.Errorf("gap = %v, want a session reset of shard 0 with an open range", g)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no gap after the session was invalidated")
	}
	if got := counterSum(t, reg, "kubecord_sdk_gaps_total"); got != 1 {
		t.Errorf("kubecord_sdk_gaps_total = %v, want 1", got)
	}
}
