package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestLimiterWaitsForProbeThenUsesBucket(t *testing.T) {
	t.Parallel()
	l := New(NewMemoryStore(), Config{})
	ctx := t.Context()
	if err := l.Wait(ctx, "b", routeA, 0); err != nil {
		t.Fatalf("probe: %v", err)
	}
	second := make(chan error, 1)
	go func() { second <- l.Wait(ctx, "b", routeA, 0) }()
	// The second request must wait for the probe's answer...
	select {
	case err := <-second:
		t.Fatalf("second request went out before the probe answered (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	// ... and go as soon as it arrives.
	if _, err := l.Observe(ctx, "b", routeA, 200, header("X-RateLimit-Bucket", "h", "X-RateLimit-Limit", "5",
		"X-RateLimit-Remaining", "4", "X-RateLimit-Reset", "1800000000.5", "X-RateLimit-Reset-After", "1.5"), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("second request: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second request still waiting 5s after the probe answered")
	}
}

func TestLimiterQueueBoundAndDeadline(t *testing.T) {
	t.Parallel()
	l := New(NewMemoryStore(), Config{MaxQueue: 2})
	ctx := t.Context()
	if err := l.Wait(ctx, "b", routeA, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Observe(ctx, "b", routeA, 200, header("X-RateLimit-Limit", "1", "X-RateLimit-Remaining", "0",
		"X-RateLimit-Reset", "1800000000", "X-RateLimit-Reset-After", "60"), nil); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	var de *DeadlineError
	if err := l.Wait(short, "b", routeA, 0); !errors.As(err, &de) || de.Reason != ReasonBucket {
		t.Fatalf("Wait with a 100ms deadline on a bucket empty for 60s = %v, want a DeadlineError", err)
	}
	// Fill the queue: two waiters, the third is refused.
	waitCtx, stop := context.WithCancel(ctx)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- l.Wait(waitCtx, "b", routeA, 0) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.QueueDepth() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("waiters never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.Wait(ctx, "b", routeA, 0); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiter: %v, want ErrQueueFull", err)
	}
	stop()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled waiter: %v, want context.Canceled", err)
		}
	}
	if d := l.QueueDepth(); d != 0 {
		t.Fatalf("queue depth %d after every waiter left, want 0", d)
	}
}

func TestLimiterObserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		route       Route
		bot         string
		status      int
		h           http.Header
		body        string
		want        Verdict
		thenRefused Reason // the next Wait on the same route
	}{
		{name: "user 429 from body", route: routeA, bot: "b", status: 429,
			h:    header("X-RateLimit-Scope", "user", "Retry-After", "3"),
			body: `{"message":"You are being rate limited.","retry_after":2.5,"global":false}`,
			want: Verdict{RateLimited: true, Scope: "user", RetryAfter: 2510 * time.Millisecond, Invalid: true}},
		{name: "shared 429 is not invalid", route: routeA, bot: "b", status: 429,
			h:    header("X-RateLimit-Scope", "shared", "Retry-After", "1"),
			body: `not json`,
			want: Verdict{RateLimited: true, Scope: "shared", RetryAfter: 1010 * time.Millisecond}},
		{name: "global 429", route: routeA, bot: "b", status: 429,
			h:    header("X-RateLimit-Global", "true", "Retry-After", "1"),
			body: `{"retry_after":0.25,"global":true}`,
			want: Verdict{RateLimited: true, Scope: "global", RetryAfter: 260 * time.Millisecond, Invalid: true}},
		{name: "webhook 401", route: hookA, bot: "b", status: 401, body: `{"code":50027}`,
			want: Verdict{Invalid: true}, thenRefused: ReasonBadWebhook},
		{name: "webhook unknown", route: hookA, bot: "b", status: 404, body: `{"code":10015}`,
			want: Verdict{}, thenRefused: ReasonBadWebhook},
		{name: "webhook unknown message is fine", route: hookA, bot: "b", status: 404, body: `{"code":10008}`,
			want: Verdict{}},
		{name: "bot 401", route: routeA, bot: "b", status: 401, body: `{"code":0}`,
			want: Verdict{Invalid: true}, thenRefused: ReasonBadToken},
		{name: "403 is invalid", route: routeA, bot: "b", status: 403, want: Verdict{Invalid: true}},
		{name: "garbage headers are ignored", route: routeA, bot: "b", status: 200,
			h:    header("X-RateLimit-Limit", "x", "X-RateLimit-Remaining", "-1", "X-RateLimit-Reset-After", "NaN"),
			want: Verdict{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := New(NewMemoryStore(), Config{})
			if tc.h == nil {
				tc.h = http.Header{}
			}
			if err := l.Wait(t.Context(), tc.bot, tc.route, 0); err != nil {
				t.Fatal(err)
			}
			v, err := l.Observe(t.Context(), tc.bot, tc.route, tc.status, tc.h, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if v != tc.want {
				t.Errorf("verdict %+v, want %+v", v, tc.want)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			err = l.Wait(ctx, tc.bot, tc.route, 0)
			var re *RefusedError
			switch {
			case tc.thenRefused != "" && (!errors.As(err, &re) || re.Reason != tc.thenRefused):
				t.Errorf("next Wait: %v, want refused for %s", err, tc.thenRefused)
			case tc.thenRefused == "" && errors.As(err, &re):
				t.Errorf("next Wait refused (%v), want it allowed or waiting", err)
			}
		})
	}
}

func FuzzObserveHeaders(f *testing.F) {
	f.Add("5", "4", "1800000000.123", "1.5", "abc", "user", "2", `{"retry_after":1.5,"global":false}`, 429)
	f.Add("", "", "", "", "", "", "", "", 200)
	f.Add("1e400", "-0", "NaN", "Inf", "", "global", "-1", `{"retry_after":1e308}`, 429)
	f.Fuzz(func(t *testing.T, limit, remaining, reset, resetAfter, bucket, scope, retryAfter, body string, status int) {
		l := New(NewMemoryStore(), Config{ProbeTTL: time.Millisecond})
		h := header("X-RateLimit-Limit", limit, "X-RateLimit-Remaining", remaining, "X-RateLimit-Reset", reset,
			"X-RateLimit-Reset-After", resetAfter, "X-RateLimit-Bucket", bucket, "X-RateLimit-Scope", scope, "Retry-After", retryAfter)
		v, err := l.Observe(context.Background(), "b", routeA, status, h, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if v.RetryAfter < 0 || v.RetryAfter > maxWait+time.Second {
			t.Fatalf("retry after %s out of range", v.RetryAfter)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		_ = l.Wait(ctx, "b", routeA, 0) // must return, whatever the headers said
	})
}

func TestLimiterGlobalSlotHeldUntilAnswered(t *testing.T) {
	t.Parallel()
	l := New(NewMemoryStore(), Config{GlobalLimit: 1, GlobalWindow: 10 * time.Millisecond})
	ctx := t.Context()
	other := Route{Key: "GET /channels/{major}", Major: "channels:9"}
	if err := l.Wait(ctx, "b", routeA, 0); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- l.Wait(ctx, "b", other, 0) }()
	// The first request is in flight: its global slot is held, however
	// long its window is past.
	select {
	case err := <-second:
		t.Fatalf("second request went out while the first was in flight (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := l.Observe(ctx, "b", routeA, 200, http.Header{}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second request still waiting 5s after the first was answered")
	}
}
