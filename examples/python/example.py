"""Kit Webhooks from Python, through stubs generated from the repository's .proto files.

It creates a webhook, publishes an event to it, and reads the delivery back: the three calls every
integration makes. The webhook points at a small endpoint the example starts on this machine, which checks each
request's signature as a customer's endpoint would, so the example runs start to finish against the README's
start command (which lets the embedded daemon deliver to 127.0.0.1). Run it with the keys the server wrote:

    python -m pip install grpcio-tools
    set -a; . ./kit-webhooks.keys; set +a
    python examples/python/example.py --server 127.0.0.1:7400

It prints one JSON object: the webhook, the event, the delivery and what the endpoint received. With
`--url` the webhook points there instead, and the example does not wait for the delivery.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import pathlib
import queue
import sys
import tempfile
import threading
import time

from grpc_tools import protoc

# 1. Generate the stubs from proto/ into a temporary directory, and import them from there. A real
#    project would generate them once, at build time; the command is the same.
PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"
OUT = tempfile.mkdtemp(prefix="kit-webhooks-stubs-")
protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
status = protoc.main(
    ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{protoc._get_resource_file_name('grpc_tools', '_proto')}",
     f"--python_out={OUT}", f"--grpc_python_out={OUT}", *protos]
)
if status != 0:
    sys.exit(f"protoc failed with status {status}")
sys.path.insert(0, OUT)

import grpc  # noqa: E402  (after the stubs exist)
from kit.webhooks.v1 import (  # noqa: E402
    event_service_pb2,
    event_service_pb2_grpc,
    resources_pb2,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)


class Endpoint(http.server.BaseHTTPRequestHandler):
    """A webhook endpoint on 127.0.0.1: it keeps each request and answers 204."""

    received = queue.Queue()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Endpoint.received.put(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def start_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/kit"


def verify(secret, headers, body):
    """Standard Webhooks: HMAC-SHA256 of `id.timestamp.body` under the secret's bytes, in `webhook-signature`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, signature) for signature in given)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:7400", help="host:port of the gRPC server")
    parser.add_argument("--url", help="the webhook's endpoint [default: one this example starts on 127.0.0.1]")
    args = parser.parse_args()
    local = args.url is None
    url = start_endpoint() if local else args.url

    # 2. Every call carries `authorization: Bearer <key>`: the admin key for webhooks, the publisher key
    #    for events.
    admin = [("authorization", f"Bearer {os.environ['KIT_WEBHOOKS_ADMIN_KEY']}")]
    publisher = [("authorization", f"Bearer {os.environ['KIT_WEBHOOKS_PUBLISHER_KEY']}")]
    channel = grpc.insecure_channel(args.server)
    webhooks = webhook_service_pb2_grpc.WebhookServiceStub(channel)
    events = event_service_pb2_grpc.EventServiceStub(channel)

    # 3. Create a webhook subscribed to a whole category and one event type.
    created = webhooks.CreateWebhook(
        webhook_service_pb2.CreateWebhookRequest(
            url=url, description="python example", events=["application.*", "offer.accepted"]
        ),
        metadata=admin,
    )

    # 4. Publish an event. `data_json` is the JSON object as text, so 64-bit ids survive unchanged.
    published = events.PublishEvent(
        event_service_pb2.PublishEventRequest(
            account_id="default",
            type="application.submitted",
            data_json=json.dumps({"application_id": 9007199254740993}),
            idempotency_key="python-example-" + created.webhook.id,
        ),
        metadata=publisher,
    )

    # 5. Read the delivery it queued for the webhook.
    deliveries = webhooks.ListDeliveries(
        webhook_service_pb2.ListDeliveriesRequest(webhook_id=created.webhook.id), metadata=admin
    )
    delivery_id = deliveries.deliveries[0].id
    delivery = webhooks.GetDelivery(webhook_service_pb2.GetDeliveryRequest(id=delivery_id), metadata=admin)

    # 6. With the local endpoint: the request arrives signed, and the delivery is recorded as succeeded.
    received = None
    if local:
        headers, body = Endpoint.received.get(timeout=30)
        received = {
            "event_type": headers.get("kit-event-type"),
            "signature_valid": verify(created.secret, headers, body),
            "data": json.loads(body)["data"],
        }
        deadline = time.monotonic() + 30
        while delivery.status != resources_pb2.DELIVERY_STATUS_SUCCEEDED and time.monotonic() < deadline:
            time.sleep(0.1)
            delivery = webhooks.GetDelivery(
                webhook_service_pb2.GetDeliveryRequest(id=delivery_id), metadata=admin
            )

    print(json.dumps({
        "webhook_id": created.webhook.id,
        "secret_prefix": created.secret[:6],
        "event_id": published.event.id,
        "deliveries_queued": published.deliveries_queued,
        "delivery_id": delivery.id,
        "delivery_event_id": delivery.event_id,
        "delivery_status": resources_pb2.DeliveryStatus.Name(delivery.status),
        "received": received,
    }))


if __name__ == "__main__":
    main()
