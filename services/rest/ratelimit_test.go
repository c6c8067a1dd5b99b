package rest

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kubecord/kubecord/discordsim"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
	"github.com/kubecord/kubecord/internal/redistest"
)

// openLoad sends calls at rate per second for d, each in its own goroutine
// that may queue, and returns how many succeeded before d ended. Calls
// still queued at the end are cancelled.
func openLoad(t *testing.T, rate int, d time.Duration, call func(ctx context.Context) bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var ok atomic.Int64
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	done := make(chan struct{}, 1<<16)
	n := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			n++
			go func() {
				if call(ctx) && ctx.Err() == nil {
					ok.Add(1)
				}
				done <- struct{}{}
			}()
		}
	}
	for range n {
		<-done
	}
	return int(ok.Load())
}

func assertNo429(t *testing.T, sim *discordsim.Server) {
	t.Helper()
	st := sim.RESTStats()
	if st.RateLimited != 0 || st.InvalidRequests != 0 {
		t.Errorf("the simulator answered %d 429s (%v) and counted %d invalid requests; want none: %+v",
			st.RateLimited, st.RateLimitedByScope, st.InvalidRequests, st.RateLimitEvents)
	}
}

func TestTenTimesDemandOnOneBucket(t *testing.T) {
	t.Parallel()
	const limit, window, d = 20, time.Second, 4 * time.Second
	sim := startSim(t, discordsim.RESTConfig{Buckets: map[string]discordsim.BucketLimit{"message-create": {Limit: limit, Window: window}}})
	ch := textChannels(t, sim, tokenA)[0]
	s := startService(t, serviceConfig(sim))
	allowedPerSec := float64(limit) / window.Seconds()
	got := openLoad(t, int(10*allowedPerSec), d, func(ctx context.Context) bool {
		res, err := s.client.Do(ctx, doMsg(ch))
		return err == nil && res.GetStatus() == http.StatusOK
	})
	allowed := limit * int((d+window-1)/window)
	t.Logf("sent %d messages of %d allowed in %s (%.1f%%)", got, allowed, d, 100*float64(got)/float64(allowed))
	if float64(got) < 0.95*float64(allowed) {
		t.Errorf("sent %d messages in %s, want at least 95%% of the %d the bucket allows", got, d, allowed)
	}
	assertNo429(t, sim)
}

func TestGlobalLimitAcrossBuckets(t *testing.T) {
	t.Parallel()
	const global, window, d = 40, time.Second, 3 * time.Second
	sim := startSim(t, discordsim.RESTConfig{GlobalLimit: global, GlobalWindow: window,
		Buckets: map[string]discordsim.BucketLimit{"messages-read": {Limit: 1000, Window: time.Second}}})
	chans := textChannels(t, sim, tokenA)
	cfg := serviceConfig(sim)
	cfg.Limits.GlobalLimit, cfg.Limits.GlobalWindow = global, window
	s := startService(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	got := hammer(ctx, 16, func(ctx context.Context, i int) bool {
		res, err := s.client.Do(ctx, &restv1.DoRequest{Method: "GET", Path: "/channels/" + chans[i%len(chans)] + "/messages?limit=1"})
		return err == nil && res.GetStatus() == http.StatusOK
	})
	allowed := global * int(d/window)
	t.Logf("%d requests over %d buckets in %s; the global limit allows %d", got, len(chans), d, allowed)
	// A global slot is held until a window after its answer (Discord may
	// count the request any time before answering), so each window costs
	// a round trip on top: under a loaded race-detector run that is tens
	// of milliseconds.
	if float64(got) < 0.8*float64(allowed) || got > allowed+global {
		t.Errorf("%d requests in %s, want close to the %d the global limit allows", got, d, allowed)
	}
	assertNo429(t, sim)
}

func TestSharedBucketAcrossRoutes(t *testing.T) {
	t.Parallel()
	const d = 1500 * time.Millisecond
	sim := startSim(t, discordsim.RESTConfig{})
	ch := textChannels(t, sim, tokenA)[0]
	s := startService(t, serviceConfig(sim))
	res, err := s.client.Do(t.Context(), doMsg(ch))
	if err != nil || res.GetStatus() != http.StatusOK {
		t.Fatalf("creating a message: %v %v", res, err)
	}
	var msg struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(res.GetBody(), &msg); err != nil {
		t.Fatal(err)
	}
	// PUT and DELETE of a reaction are different routes of one bucket
	// (1 per 250 ms per channel): alternating them must not provoke a 429.
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	got := hammer(ctx, 4, func(ctx context.Context, i int) bool {
		method := http.MethodPut
		if i%2 == 1 {
			method = http.MethodDelete
		}
		res, err := s.client.Do(ctx, &restv1.DoRequest{Method: method, Path: "/channels/" + ch + "/messages/" + msg.ID + "/reactions/%F0%9F%91%8D/@me"})
		return err == nil && res.GetStatus() == http.StatusNoContent
	})
	t.Logf("%d reaction calls in %s", got, d)
	if got < int(d/(250*time.Millisecond))-2 {
		t.Errorf("%d reaction calls in %s, want about one per 250ms", got, d)
	}
	assertNo429(t, sim)
}

func TestTwoBotsHaveTheirOwnLimits(t *testing.T) {
	t.Parallel()
	const limit, window, d = 10, time.Second, 3 * time.Second
	sim := startSim(t, discordsim.RESTConfig{Buckets: map[string]discordsim.BucketLimit{"message-create": {Limit: limit, Window: window}}})
	ch := textChannels(t, sim, tokenA)[0]
	s := startService(t, serviceConfig(sim))
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var perBot [2]atomic.Int64
	hammer(ctx, 16, func(ctx context.Context, i int) bool {
		req := doMsg(ch)
		req.Bot = []string{"alpha", "beta"}[i%2]
		res, err := s.client.Do(ctx, req)
		if err == nil && res.GetStatus() == http.StatusOK {
			perBot[i%2].Add(1)
			return true
		}
		return false
	})
	allowed := limit * int((d+window-1)/window)
	for i, name := range []string{"alpha", "beta"} {
		got := perBot[i].Load()
		if float64(got) < 0.9*float64(allowed) {
			t.Errorf("bot %s sent %d messages, want close to its own %d", name, got, allowed)
		}
	}
	assertNo429(t, sim)
}

func TestReplicasShareRedis(t *testing.T) {
	t.Parallel()
	const limit, window, d = 20, time.Second, 4 * time.Second
	addr := redistest.Start(t).Addr
	sim := startSim(t, discordsim.RESTConfig{Buckets: map[string]discordsim.BucketLimit{"message-create": {Limit: limit, Window: window}}})
	ch := textChannels(t, sim, tokenA)[0]
	var replicas []*service
	for range 3 {
		cfg := serviceConfig(sim)
		cfg.RedisURL = "redis://" + addr + "/0"
		replicas = append(replicas, startService(t, cfg))
	}
	var n atomic.Int64
	got := openLoad(t, int(10*float64(limit)/window.Seconds()), d, func(ctx context.Context) bool {
		r := replicas[n.Add(1)%3]
		res, err := r.client.Do(ctx, doMsg(ch))
		return err == nil && res.GetStatus() == http.StatusOK
	})
	allowed := limit * int((d+window-1)/window)
	t.Logf("3 replicas sent %d of %d allowed", got, allowed)
	if float64(got) < 0.9*float64(allowed) {
		t.Errorf("3 replicas sent %d messages, want at least 90%% of the %d allowed", got, allowed)
	}
	assertNo429(t, sim)
}

func TestInvalidRequestGuard(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	cfg := serviceConfig(sim)
	cfg.Limits.InvalidLimit = 10
	s := startService(t, cfg)
	// A rejected token gets Discord's 401 once, then is refused locally.
	bad := &restv1.DoRequest{Method: "GET", Path: "/users/@me", Token: "Bot not-a-real-token-0"}
	if res, err := s.client.Do(t.Context(), bad); err != nil || res.GetStatus() != http.StatusUnauthorized {
		t.Fatalf("first call with a bad token: %v %v, want Discord's 401", res, err)
	}
	for range 4 {
		if _, err := s.client.Do(t.Context(), bad); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("a bad token again: %v, want UNAUTHENTICATED without sending", err)
		}
	}
	if got := sim.RESTStats().InvalidRequests; got != 1 {
		t.Fatalf("the simulator counted %d invalid requests for 5 calls with one bad token, want 1", got)
	}
	// ... and many bad tokens trip the guard at the threshold.
	var codesSeen []codes.Code
	for i := 1; i < 30; i++ {
		res, err := s.client.Do(t.Context(), &restv1.DoRequest{Method: "GET", Path: "/users/@me", Token: "Bot not-a-real-token-" + itoa(i)})
		if err == nil && res.GetStatus() != http.StatusUnauthorized {
			t.Fatalf("bad token %d: status %d", i, res.GetStatus())
		}
		codesSeen = append(codesSeen, status.Code(err))
	}
	if got := sim.RESTStats().InvalidRequests; got != 10 {
		t.Errorf("the simulator counted %d invalid requests, want the guard to stop at 10", got)
	}
	_, err := s.client.Do(t.Context(), &restv1.DoRequest{Method: "GET", Path: "/users/@me"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a good call after the guard tripped: %v, want RESOURCE_EXHAUSTED (codes seen %v)", err, codesSeen)
	}
}

func TestBadWebhookTokenDoesNotLockTheBot(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	ch := textChannels(t, sim, tokenA)[0]
	s := startService(t, serviceConfig(sim))
	res, err := s.client.Do(t.Context(), &restv1.DoRequest{Method: "POST", Path: "/channels/" + ch + "/webhooks", Body: []byte(`{"name":"hook"}`)})
	if err != nil || res.GetStatus() != http.StatusOK {
		t.Fatalf("creating a webhook: %v %v", res, err)
	}
	var hook struct{ ID, Token string }
	if err := json.Unmarshal(res.GetBody(), &hook); err != nil {
		t.Fatal(err)
	}
	bad := &restv1.DoRequest{Method: "POST", Path: "/webhooks/" + hook.ID + "/wrong-token-wrong-token", Body: []byte(`{"content":"x"}`)}
	res, err = s.client.Do(t.Context(), bad)
	if err != nil || res.GetStatus() != http.StatusUnauthorized {
		t.Fatalf("executing with a bad token: %v %v, want Discord's 401", res, err)
	}
	for range 3 {
		if _, err := s.client.Do(t.Context(), bad); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("bad webhook token again: %v, want FAILED_PRECONDITION without sending", err)
		}
	}
	good := &restv1.DoRequest{Method: "POST", Path: "/webhooks/" + hook.ID + "/" + hook.Token, Body: []byte(`{"content":"x"}`)}
	if res, err := s.client.Do(t.Context(), good); err != nil || res.GetStatus()/100 != 2 {
		t.Fatalf("the right token of the same webhook: %v %v", res, err)
	}
	if res, err := s.client.Do(t.Context(), doMsg(ch)); err != nil || res.GetStatus() != http.StatusOK {
		t.Fatalf("the bot after a bad webhook token: %v %v", res, err)
	}
	if got := sim.RESTStats().InvalidRequests; got != 1 {
		t.Errorf("the simulator counted %d invalid requests, want only the first 401", got)
	}
}

func TestDeadlineAndQueueBound(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{Buckets: map[string]discordsim.BucketLimit{"message-create": {Limit: 1, Window: time.Minute}}})
	ch := textChannels(t, sim, tokenA)[0]
	cfg := serviceConfig(sim)
	cfg.Limits.MaxQueue = 2
	cfg.RequestTimeout = 5 * time.Minute // queued calls must wait, not fail for their deadline
	s := startService(t, cfg)
	if res, err := s.client.Do(t.Context(), doMsg(ch)); err != nil || res.GetStatus() != http.StatusOK {
		t.Fatalf("first message: %v %v", res, err)
	}
	req := doMsg(ch)
	req.Timeout = durationpb.New(100 * time.Millisecond)
	start := time.Now()
	if _, err := s.client.Do(t.Context(), req); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("second message with a 100ms timeout on a bucket empty for a minute: %v, want DEADLINE_EXCEEDED", err)
	}
	if e := time.Since(start); e > 2*time.Second {
		t.Errorf("the deadline error took %s; it should come at once", e)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := s.client.Do(ctx, doMsg(ch))
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.svc.lim.QueueDepth() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two calls never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := s.client.Do(t.Context(), doMsg(ch)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("third queued call: %v, want RESOURCE_EXHAUSTED", err)
	}
	cancel()
	for range 2 {
		if err := <-errs; status.Code(err) != codes.Canceled {
			t.Errorf("a queued call after cancelling: %v, want CANCELED", err)
		}
	}
	if got := sim.RESTStats().Requests; got != 1 {
		t.Errorf("the simulator saw %d requests, want only the first", got)
	}
}

func TestReplicasShareTheGlobalLimit(t *testing.T) {
	t.Parallel()
	const global, window, d = 30, time.Second, 3 * time.Second
	addr := redistest.Start(t).Addr
	sim := startSim(t, discordsim.RESTConfig{GlobalLimit: global, GlobalWindow: window,
		Buckets: map[string]discordsim.BucketLimit{"messages-read": {Limit: 1000, Window: time.Second}}})
	chans := textChannels(t, sim, tokenA)
	var replicas []*service
	for range 3 {
		cfg := serviceConfig(sim)
		cfg.RedisURL = "redis://" + addr + "/0"
		cfg.Limits.GlobalLimit, cfg.Limits.GlobalWindow = global, window
		replicas = append(replicas, startService(t, cfg))
	}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	got := hammer(ctx, 12, func(ctx context.Context, i int) bool {
		res, err := replicas[i%3].client.Do(ctx, &restv1.DoRequest{Method: "GET", Path: "/channels/" + chans[i%len(chans)] + "/messages?limit=1"})
		return err == nil && res.GetStatus() == http.StatusOK
	})
	allowed := global * int(d/window)
	t.Logf("3 replicas made %d requests over %d buckets in %s; the global limit allows %d", got, len(chans), d, allowed)
	if float64(got) < 0.7*float64(allowed) || got > allowed+global {
		t.Errorf("%d requests in %s, want close to the %d the shared global limit allows", got, d, allowed)
	}
	assertNo429(t, sim)
}

func TestRedisGoingAwayIsUnavailable(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	sim := startSim(t, discordsim.RESTConfig{})
	cfg := serviceConfig(sim)
	cfg.RedisURL = "redis://" + rs.Addr + "/0"
	s := startService(t, cfg)
	if res, err := s.client.Do(t.Context(), &restv1.DoRequest{Method: "GET", Path: "/users/@me"}); err != nil || res.GetStatus() != http.StatusOK {
		t.Fatalf("with Redis up: %v %v", res, err)
	}
	rs.Stop()
	before := sim.RESTStats().Requests
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := s.client.Do(ctx, &restv1.DoRequest{Method: "GET", Path: "/users/@me"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "ratelimit") {
		t.Errorf("with Redis gone: %v, want UNAVAILABLE naming the ratelimit store", err)
	}
	if n := sim.RESTStats().Requests - before; n != 0 {
		t.Errorf("%d requests sent without the ratelimit store, want none", n)
	}
}
