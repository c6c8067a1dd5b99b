package gateway

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
)

// TestConsumeNackedThenStreamEndsRedeliversPromptly is the state service's report: a member
// nacks with requeue, its stream ends, and it reconnects with the same member id. The nacked
// events (whether or not the server had sent them again on the dying stream) must reach the
// new stream promptly, in per-guild order, not after the ack timeout or a heartbeat.
func TestConsumeNackedThenStreamEndsRedeliversPromptly(t *testing.T) {
	t.Parallel()
	// Heartbeats and ack timeouts far beyond the test's deadline: nothing may wait for them.
	s := newTestServer(t, Config{StreamHeartbeat: time.Hour, Delivery: delivery.Config{AckTimeout: time.Hour}})
	client := serveLoopback(t, s)
	const guild = 900000000000000001
	first := subscribe(t, client, &gatewayv1.Subscribe{Group: "state", MemberId: "state-0", MaxInFlight: 3}, false)
	for i := 1; i <= 5; i++ {
		s.HandleDispatch(messageCreate(0, uint64(i), guild))
	}
	waitFor(t, "the member to hold its credit", func() bool { return len(first.deliveries()) == 3 })
	var ids []uint64
	for _, d := range first.deliveries() {
		ids = append(ids, d.GetDeliveryId())
	}
	// Oldest first, one nack each, as a consumer failing event after event does.
	for _, id := range ids {
		if err := first.stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Nack{Nack: &gatewayv1.Nack{DeliveryIds: []uint64{id}, Requeue: true}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the server has applied the nacks (the requeued events went back out on
	// this stream), then end the stream without acking anything.
	waitFor(t, "the requeued deliveries on the first stream", func() bool { return len(first.deliveries()) >= 6 })
	got := first.deliveries()
	if seq := seqsOf(got[3:6]); !slices.Equal(seq, []uint64{1, 2, 3}) {
		t.Errorf("requeued deliveries came back as %v, want [1 2 3] (per-guild order)", seq)
	}
	first.cancel()

	// Reconnect with the same id: refused while the server has not yet seen the old stream
	// end, so retry like a client would, within the deadline.
	deadline := time.Now().Add(10 * time.Second)
	var second *consumer
	for second == nil {
		c, err := trySubscribe(t, client, &gatewayv1.Subscribe{Group: "state", MemberId: "state-0", MaxInFlight: 10})
		switch {
		case err == nil:
			second = c
		case status.Code(err) == codes.FailedPrecondition && time.Now().Before(deadline):
			time.Sleep(5 * time.Millisecond) // the old stream is being torn down; bounded by the deadline
		default:
			t.Fatalf("reconnecting: %v", err)
		}
	}
	start := time.Now()
	waitFor(t, "every event on the new stream", func() bool { return len(second.deliveries()) >= 5 })
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("redelivery took %v", took)
	}
	ds := second.deliveries()
	if seq := seqsOf(ds); !slices.Equal(seq, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("new stream got %v, want [1 2 3 4 5]", seq)
	}
	for _, d := range ds {
		if want := d.GetId().GetSequence() <= 3; d.GetRedelivered() != want {
			t.Errorf("seq %d redelivered=%v, want %v", d.GetId().GetSequence(), d.GetRedelivered(), want)
		}
	}
	waitFor(t, "the watermark", func() bool { wm, _ := s.hub.Watermark(0); return wm == 5 })
}

// trySubscribe is subscribe (a member that acks what it gets) returning the server's
// refusal as an error instead of failing the test.
func trySubscribe(t *testing.T, c gatewayv1.GatewayServiceClient, sub *gatewayv1.Subscribe) (*consumer, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := c.Consume(ctx)
	if err == nil {
		err = stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: sub}})
	}
	var first *gatewayv1.ConsumeResponse
	if err == nil {
		first, err = stream.Recv()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	cs := &consumer{t: t, stream: stream, cancel: cancel, sub: first.GetSubscribed(), done: make(chan error, 1)}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				cs.done <- err
				return
			}
			if d := resp.GetDelivery(); d != nil {
				cs.mu.Lock()
				cs.got = append(cs.got, d)
				cs.mu.Unlock()
				if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Ack{Ack: &gatewayv1.Ack{DeliveryIds: []uint64{d.GetDeliveryId()}}}}); err != nil {
					cs.done <- err
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-cs.done; status.Code(err) != codes.Canceled {
			t.Logf("stream of %s ended: %v", sub.GetMemberId(), err)
		}
	})
	return cs, nil
}

func seqsOf(ds []*gatewayv1.Delivery) []uint64 {
	out := make([]uint64, len(ds))
	for i, d := range ds {
		out[i] = d.GetId().GetSequence()
	}
	return out
}
