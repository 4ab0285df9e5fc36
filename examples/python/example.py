"""Kit Webhooks from Python, through stubs generated from the repository's .proto files.

It creates a webhook, publishes an event to it, and reads the delivery back: the three calls every
integration makes. Run it against a server (the README's start command) with the keys the server wrote:

    python -m pip install grpcio-tools
    set -a; . ./kit-webhooks.keys; set +a
    python examples/python/example.py --server 127.0.0.1:7400

It prints one JSON object: the webhook, the event and the delivery.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:7400", help="host:port of the gRPC server")
    parser.add_argument("--url", default="https://hooks.example.com/kit", help="the webhook's endpoint")
    args = parser.parse_args()

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
            url=args.url, description="python example", events=["application.*", "offer.accepted"]
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
    delivery = webhooks.GetDelivery(
        webhook_service_pb2.GetDeliveryRequest(id=deliveries.deliveries[0].id), metadata=admin
    )

    print(json.dumps({
        "webhook_id": created.webhook.id,
        "secret_prefix": created.secret[:6],
        "event_id": published.event.id,
        "deliveries_queued": published.deliveries_queued,
        "delivery_id": delivery.id,
        "delivery_event_id": delivery.event_id,
        "delivery_status": resources_pb2.DeliveryStatus.Name(delivery.status),
    }))


if __name__ == "__main__":
    main()
