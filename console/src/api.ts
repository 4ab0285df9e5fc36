// The console's one way to the server: clients generated from proto/ over gRPC-Web, with the API key of this
// browser tab (sessionStorage: never a cookie, never in a URL) on every call.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { EventService } from "./gen/kit/webhooks/v1/event_service_pb.js";
import { WebhookService } from "./gen/kit/webhooks/v1/webhook_service_pb.js";

const KEY = "kit-webhooks.api-key";

export const session = {
  key: (): string | null => sessionStorage.getItem(KEY),
  signIn: (key: string) => sessionStorage.setItem(KEY, key),
  signOut: () => sessionStorage.removeItem(KEY),
};

const withKey: Interceptor = (next) => async (request) => {
  const key = session.key();
  if (key) {
    request.header.set("authorization", `Bearer ${key}`);
  }
  return next(request);
};

const transport = createGrpcWebTransport({ baseUrl: location.origin, interceptors: [withKey] });
export const webhooks = createClient(WebhookService, transport);
export const events = createClient(EventService, transport);

/** What went wrong, for people: the field the server named (`url: must be https`), and its message. */
export interface Problem {
  field?: string;
  message: string;
  unauthenticated: boolean;
}

export function problem(err: unknown): Problem {
  const error = ConnectError.from(err);
  const text = error.rawMessage;
  const named = /^([a-z_.]+): (.*)$/s.exec(text);
  const unauthenticated = error.code === Code.Unauthenticated;
  if (error.code === Code.InvalidArgument && named) {
    return { field: named[1], message: named[2], unauthenticated };
  }
  return { message: text || Code[error.code], unauthenticated };
}
