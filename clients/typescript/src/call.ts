// Kit Webhooks from TypeScript: a client generated from proto/ (npm run generate) calls the server over gRPC
// with the admin key, as the README shows. Usage: node dist/call.js --server http://127.0.0.1:7400 --key KEY
// It prints one JSON object: how many event types the catalogue has, and one of them.

import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EventService } from "./gen/kit/webhooks/v1/event_service_pb.js";

function flag(name: string): string {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? process.argv[at + 1] : undefined;
  if (!value) {
    throw new Error(`--${name} is required`);
  }
  return value;
}

const transport = createGrpcTransport({ baseUrl: flag("server") });
const events = createClient(EventService, transport);
// Every call carries the key as `authorization: Bearer <key>`.
const headers = { authorization: `Bearer ${flag("key")}` };
const catalogue = await events.listEventTypes({}, { headers });
const first = catalogue.eventTypes[0];
console.log(
  JSON.stringify({
    event_types: catalogue.eventTypes.length,
    first: { name: first?.name, category: first?.category },
  }),
);
