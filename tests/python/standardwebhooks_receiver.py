"""A webhook receiver written the way a Kit customer would write one: with the off-the-shelf
`standardwebhooks` library, knowing nothing about Kit Webhooks' code.

Usage: standardwebhooks_receiver.py PORT SECRET

Answers 204 to requests whose signature and timestamp verify and 401 to the rest, and prints one line per
request to stdout: `VERIFIED <webhook-id> <event type>` or `REJECTED <reason>`.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT = int(sys.argv[1])
WEBHOOK = Webhook(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            payload = WEBHOOK.verify(body, dict(self.headers.items()))
        except WebhookVerificationError as error:
            print(f"REJECTED {error}", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        print(f"VERIFIED {self.headers['webhook-id']} {payload['type']}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


print(json.dumps({"listening": PORT}), flush=True)
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
