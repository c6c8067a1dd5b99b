#!/usr/bin/env python3
"""Example Kubecord worker in Python.

It joins the consumer group "ping-python" on every gateway pod, answers
"!ping" with "pong from Python" through the REST service, and acks every event
after handling it. Stubs come from proto/ (run gen.sh first).

Configuration (environment): KUBECORD_GATEWAYS (comma-separated host:port),
KUBECORD_REST_ADDR, KUBECORD_AUTH_SECRET (optional), KUBECORD_GROUP.
"""

import os
import queue
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("KUBECORD_PY_STUBS", os.path.join(HERE, "gen")))

import grpc  # noqa: E402

from kubecord.discord.v1 import message_pb2  # noqa: E402
from kubecord.gateway.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
from kubecord.rest.v1 import rest_pb2, rest_pb2_grpc  # noqa: E402

STOP = threading.Event()


def log(*args):
    print("[ping-python]", *args, file=sys.stderr, flush=True)


def handle(rest, metadata, event):
    """Answers !ping; returns normally when the event is handled."""
    if event.WhichOneof("payload") != "message_create":
        return
    msg = event.message_create.message
    if msg.author.bot or msg.content.strip().lower() != "!ping":
        return
    rest.CreateMessage(
        rest_pb2.CreateMessageRequest(
            channel_id=msg.channel_id,
            content="pong from Python",
            message_reference=message_pb2.MessageReference(message_id=msg.id, channel_id=msg.channel_id),
        ),
        metadata=metadata,
        timeout=10,
    )


def consume(target, group, rest, metadata):
    """Keeps one Consume stream to a gateway pod, reconnecting with backoff."""
    backoff = 0.1
    member = "%s-%d" % (socket.gethostname(), os.getpid())
    while not STOP.is_set():
        outbox = queue.Queue()
        outbox.put(
            gateway_pb2.ConsumeRequest(
                subscribe=gateway_pb2.Subscribe(
                    group=group,
                    member_id=member,
                    event_names=["MESSAGE_CREATE"],
                    max_in_flight=64,
                    max_batch=64,
                )
            )
        )

        def requests():
            while True:
                item = outbox.get()
                if item is None:
                    return
                yield item

        channel = grpc.insecure_channel(target)
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            stream = stub.Consume(requests(), metadata=metadata)
            for resp in stream:
                kind = resp.WhichOneof("kind")
                if kind == "subscribed":
                    log("joined group", group, "on", target, "gateway", resp.subscribed.gateway_id)
                    backoff = 0.1
                elif kind in ("delivery", "delivery_batch"):
                    # A batch carries several deliveries in order (Subscribe.max_batch):
                    # handle each, then ack them all in one message.
                    deliveries = [resp.delivery] if kind == "delivery" else resp.delivery_batch.deliveries
                    for d in deliveries:
                        try:
                            handle(rest, metadata, d.event)
                        except grpc.RpcError as err:
                            log("handler failed:", err.code(), err.details())
                    ids = [d.delivery_id for d in deliveries]
                    outbox.put(gateway_pb2.ConsumeRequest(ack=gateway_pb2.Ack(delivery_ids=ids)))
                elif kind == "gap":
                    log("gateway lost", resp.gap.lost, "events for this group")
                if STOP.is_set():
                    break
        except grpc.RpcError as err:
            if not STOP.is_set():
                log("stream to", target, "ended:", err.code(), err.details())
        finally:
            outbox.put(None)
            channel.close()
        if STOP.wait(backoff):
            return
        backoff = min(backoff * 2, 5.0)


def main():
    gateways = [g.strip() for g in os.environ.get("KUBECORD_GATEWAYS", "").split(",") if g.strip()]
    rest_addr = os.environ.get("KUBECORD_REST_ADDR", "")
    if not gateways or not rest_addr:
        log("set KUBECORD_GATEWAYS (host:port, comma-separated) and KUBECORD_REST_ADDR")
        return 2
    secret = os.environ.get("KUBECORD_AUTH_SECRET", "")
    metadata = [("authorization", "Bearer " + secret)] if secret else []
    group = os.environ.get("KUBECORD_GROUP", "ping-python")
    rest = rest_pb2_grpc.RestServiceStub(grpc.insecure_channel(rest_addr))

    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    threads = [threading.Thread(target=consume, args=(g, group, rest, metadata), daemon=True) for g in gateways]
    for t in threads:
        t.start()
    log("running; gateways", gateways)
    while not STOP.is_set():
        time.sleep(0.2)
    log("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
