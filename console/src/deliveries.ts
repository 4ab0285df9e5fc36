// One webhook's Deliveries tab: newest first, filtered by status and event type, each delivery opening onto
// its attempts (request headers as sent, response status, headers and body as stored, duration, error), with
// Retry for a finished delivery and Replay for the failed ones of a time window. While it is open it watches the
// webhook (`WatchWebhooks`: no polling) and reads the list again when an attempt is recorded.

import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { problem, webhooks } from "./api.js";
import { type Attempt, type Delivery, DeliveryStatus } from "./gen/kit/webhooks/v1/resources_pb.js";
import { button, el, field, when } from "./ui.js";

/** Changes within this window are read once. */
const SETTLE_MS = 200;
/** A watch that ended (the server restarted, the connection went quiet) is opened again after this. */
const REOPEN_MS = 1000;
/** The watch of the tab open now, ended when another opens. */
let watching: AbortController | undefined;

/** Calls `changed` after each change to `webhookId` (a burst of them once), until `panel` leaves the page. */
async function watch(webhookId: string, panel: HTMLElement, changed: () => void) {
  watching?.abort();
  const ended = new AbortController();
  watching = ended;
  let settle: number | undefined;
  // A tab left behind ends its watch (the page's own check, no call to the server).
  const left = window.setInterval(() => {
    if (!panel.isConnected) {
      ended.abort();
    }
  }, REOPEN_MS);
  ended.signal.addEventListener("abort", () => window.clearInterval(left));
  while (panel.isConnected && !ended.signal.aborted) {
    try {
      for await (const change of webhooks.watchWebhooks({ webhookId }, { signal: ended.signal })) {
        // The first message says the watch is open; what happened before it is read below.
        if (change.change.case === undefined) {
          changed();
          continue;
        }
        window.clearTimeout(settle);
        settle = window.setTimeout(changed, SETTLE_MS);
      }
    } catch {
      // Ended, or refused: opened again below while the tab is shown.
    }
    await new Promise((resolve) => window.setTimeout(resolve, REOPEN_MS));
  }
  ended.abort();
}

function headers(map: { [key: string]: string }): HTMLElement {
  const text = Object.entries(map)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\n");
  return el("pre", {}, text || "(none)");
}

function attemptView(attempt: Attempt): HTMLElement {
  const outcome = attempt.error ? `${attempt.errorKind || "error"}: ${attempt.error}` : `HTTP ${attempt.responseStatus}`;
  return el(
    "div",
    { class: "card" },
    el("h2", {}, `Attempt ${attempt.number}: ${outcome}`),
    el("p", { class: "note" }, when(attempt.startedAt), ` · ${attempt.durationMs} ms`),
    el("div", {}, el("strong", {}, "Request headers"), headers(attempt.requestHeaders)),
    el("div", {}, el("strong", {}, `Response status ${attempt.responseStatus || "—"}`)),
    el("div", {}, el("strong", {}, "Response headers"), headers(attempt.responseHeaders)),
    el("div", {}, el("strong", {}, "Response body"), el("pre", {}, attempt.responseBody || "(empty)")),
  );
}

function statusName(status: DeliveryStatus): string {
  return DeliveryStatus[status].toLowerCase();
}

/** Renders the tab into `panel` and keeps it fresh until another view replaces it. */
export async function deliveriesTab(webhookId: string, panel: HTMLElement): Promise<void> {
  const status = el("select", {}, el("option", { value: "0" }, "Any"), ...[DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED].map((s) => el("option", { value: String(s) }, statusName(s))));
  const eventType = el("input", { type: "text", placeholder: "e.g. interview.scheduled" });
  const since = el("input", { type: "datetime-local" });
  const until = el("input", { type: "datetime-local" });
  const message = el("div", { role: "status" });
  const rows = el("div", {});
  const open = new Set<string>();

  const item = (delivery: Delivery): HTMLElement => {
    const body = el("div", {});
    const details = el(
      "details",
      {},
      el(
        "summary",
        {},
        `${delivery.eventType} · ${statusName(delivery.status)} · ${delivery.attemptCount} attempt(s) · `,
        when(delivery.createdAt),
      ),
      body,
    );
    const fill = async () => {
      const full = await webhooks.getDelivery({ id: delivery.id });
      const finished = full.status === DeliveryStatus.SUCCEEDED || full.status === DeliveryStatus.FAILED;
      const retry = finished
          ? button("Retry", async () => {
              try {
                await webhooks.retryDelivery({ id: full.id });
                message.replaceChildren(`${full.id} is queued again.`);
                await refresh();
              } catch (err) {
                message.replaceChildren(el("p", { class: "error" }, problem(err).message));
              }
            })
          : "";
      body.replaceChildren(
        el("p", { class: "note" }, `Delivery ${full.id} of event ${full.eventId}`),
        retry,
        ...(full.attempts.length ? full.attempts.map(attemptView) : [el("p", {}, "No attempt yet.")]),
      );
    };
    details.addEventListener("toggle", () => {
      if (details.open) {
        open.add(delivery.id);
        void fill();
      } else {
        open.delete(delivery.id);
      }
    });
    if (open.has(delivery.id)) {
      details.open = true;
    }
    return details;
  };

  const refresh = async () => {
    try {
      const page = await webhooks.listDeliveries({
        webhookId,
        status: Number(status.value),
        eventType: eventType.value.trim(),
        pageSize: 50,
      });
      rows.replaceChildren(...(page.deliveries.length ? page.deliveries.map(item) : [el("p", {}, "No deliveries.")]));
    } catch (err) {
      message.replaceChildren(el("p", { class: "error" }, problem(err).message));
    }
  };

  const replay = async () => {
    if (!since.value) {
      message.replaceChildren(el("p", { class: "error" }, "Choose when the window starts."));
      return;
    }
    const stamp = (value: string) => create(TimestampSchema, { seconds: BigInt(Math.floor(new Date(value).getTime() / 1000)) });
    try {
      const reply = await webhooks.replayDeliveries({ webhookId, since: stamp(since.value), until: until.value ? stamp(until.value) : undefined });
      message.replaceChildren(`${reply.deliveriesRequeued} failed deliveries queued again.`);
      await refresh();
    } catch (err) {
      message.replaceChildren(el("p", { class: "error" }, problem(err).message));
    }
  };

  status.addEventListener("change", () => void refresh());
  eventType.addEventListener("change", () => void refresh());
  panel.replaceChildren(
    el(
      "div",
      { class: "card filters" },
      field("Status", status, "delivery-status"),
      field("Event type", eventType, "delivery-event-type"),
      el("details", {}, el("summary", {}, "Replay failed…"), field("Since", since, "replay-since"), field("Until", until, "replay-until"), button("Replay failed deliveries", () => void replay())),
    ),
    message,
    rows,
  );
  await refresh();
  void watch(webhookId, panel, () => void refresh());
}
