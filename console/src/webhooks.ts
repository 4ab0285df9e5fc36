// The webhooks: the list, the create and edit form (the catalogue from ListEventTypes, by category), and one
// webhook's page with its actions.

import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { events, problem, webhooks } from "./api.js";
import { deliveriesTab } from "./deliveries.js";
import { type EventType, type Webhook, DeliveryStatus, WebhookStatus } from "./gen/kit/webhooks/v1/resources_pb.js";
import { button, el, field, render, when } from "./ui.js";

const PAGE = 50;
let catalogue: EventType[] = [];

async function eventTypes(): Promise<EventType[]> {
  if (catalogue.length === 0) {
    catalogue = (await events.listEventTypes({})).eventTypes.filter((t) => t.name !== "test.ping");
  }
  return catalogue;
}

function statusOf(hook: Webhook): HTMLElement {
  const [name, css] =
    hook.status === WebhookStatus.ACTIVE ? ["Active", "active"] : hook.status === WebhookStatus.PAUSED ? ["Paused", "paused"] : ["Disabled", "disabled"];
  return el(
    "span",
    {},
    el("span", { class: `status ${css}` }, name),
    hook.disabledReason ? el("div", { class: "note" }, hook.disabledReason) : null,
  );
}

/** The list, `PAGE` webhooks at a time. */
export async function list(pageToken = "", previous: string[] = []): Promise<void> {
  const page = await webhooks.listWebhooks({ pageSize: PAGE, pageToken });
  const rows = page.webhooks.map((hook) => {
    const last = el("td", { class: "hide-narrow" }, "…");
    void lastOutcome(hook.id).then((text) => last.replaceChildren(text));
    return el(
      "tr",
      {},
      el("td", {}, el("button", { type: "button", class: "row-link", click: () => void show(hook.id) }, hook.url), hook.description ? el("div", { class: "note" }, hook.description) : null),
      el("td", {}, statusOf(hook)),
      el("td", { class: "hide-narrow" }, hook.events.join(", ")),
      el("td", { class: "hide-narrow" }, String(hook.failureCount)),
      last,
    );
  });
  const pager = el(
    "div",
    { class: "actions" },
    previous.length > 0 ? button("Previous page", () => void list(previous[previous.length - 1], previous.slice(0, -1))) : null,
    page.nextPageToken ? button("Next page", () => void list(page.nextPageToken, [...previous, pageToken])) : null,
  );
  render(
    el("h1", {}, "Webhooks"),
    el("div", { class: "actions" }, button("Create webhook", () => void form(), "primary")),
    el(
      "div",
      { class: "card" },
      rows.length === 0
        ? el("p", {}, "No webhooks yet.")
        : el(
            "table",
            {},
            el("thead", {}, el("tr", {}, ...["URL", "Status", "Events", "Failures", "Last delivery"].map((h) => el("th", { class: h === "URL" || h === "Status" ? "" : "hide-narrow" }, h)))),
            el("tbody", {}, ...rows),
          ),
      pager,
    ),
  );
}

async function lastOutcome(id: string): Promise<string> {
  const page = await webhooks.listDeliveries({ webhookId: id, pageSize: 1 });
  const last = page.deliveries[0];
  if (!last) {
    return "none yet";
  }
  return `${last.eventType}: ${DeliveryStatus[last.status].toLowerCase()}`;
}

/** The create form, or the edit form of `hook` (which sends only what changed). */
export async function form(hook?: Webhook): Promise<void> {
  const types = await eventTypes();
  const url = el("input", { type: "url", value: hook?.url ?? "", required: true });
  const description = el("input", { type: "text", value: hook?.description ?? "" });
  const rate = el("input", { type: "number", min: "1", value: hook?.rateLimitPerSecond ? String(hook.rateLimitPerSecond) : "" });
  const chosen = new Set(hook?.events ?? []);
  const boxes: HTMLInputElement[] = [];
  const categories = [...new Set(types.map((t) => t.category))];
  const groups = categories.map((category) => {
    const all = el("input", { type: "checkbox", value: `${category}.*` });
    all.checked = chosen.has(`${category}.*`);
    boxes.push(all);
    const members = types
      .filter((t) => t.category === category)
      .map((t) => {
        const box = el("input", { type: "checkbox", value: t.name, id: `event-${t.name}` });
        box.checked = chosen.has(t.name);
        boxes.push(box);
        return el("label", { class: "check", for: `event-${t.name}`, title: t.description }, box, t.name);
      });
    all.id = `category-${category}`;
    return el(
      "fieldset",
      {},
      el("legend", {}, category.replace(/_/g, " ")),
      el("label", { class: "check", for: all.id }, all, `All ${category.replace(/_/g, " ")} events`),
      el("div", {}, ...members),
    );
  });
  const eventsError = el("div", { class: "error", id: "events-error" });
  const formError = el("div", { class: "error", role: "alert" });
  const fields = { url: "url", description: "description", events: "events", rate_limit_per_second: "rate" };
  const submit = async () => {
    for (const id of ["url", "description", "events", "rate"]) {
      document.getElementById(`${id}-error`)?.replaceChildren();
    }
    formError.replaceChildren();
    const picked = boxes.filter((b) => b.checked).map((b) => b.value);
    const limit = rate.value ? Number(rate.value) : 0;
    try {
      if (hook) {
        const paths: string[] = [];
        if (url.value !== hook.url) paths.push("url");
        if (description.value !== hook.description) paths.push("description");
        if (picked.join() !== hook.events.join()) paths.push("events");
        if (limit && limit !== hook.rateLimitPerSecond) paths.push("rate_limit_per_second");
        await webhooks.updateWebhook({
          id: hook.id,
          url: url.value,
          description: description.value,
          events: picked,
          rateLimitPerSecond: limit,
          updateMask: create(FieldMaskSchema, { paths }),
        });
        await show(hook.id);
      } else {
        const created = await webhooks.createWebhook({ url: url.value, description: description.value, events: picked, rateLimitPerSecond: limit });
        await show(created.webhook?.id ?? "", created.secret);
      }
    } catch (err) {
      const p = problem(err);
      const target = p.field ? document.getElementById(`${fields[p.field as keyof typeof fields] ?? ""}-error`) : null;
      (target ?? formError).replaceChildren(p.message);
    }
  };
  render(
    el("h1", {}, hook ? "Edit webhook" : "Create webhook"),
    el(
      "form",
      { class: "card", submit: (e: Event) => (e.preventDefault(), void submit()) },
      field("URL", url, "url"),
      field("Description", description, "description"),
      el("label", {}, "Events"),
      ...groups,
      eventsError,
      field("Rate limit", rate, "rate"),
      el("div", { class: "note" }, "Requests per second at most; empty for the default (100)."),
      formError,
      el("div", { class: "actions" }, el("button", { type: "submit", class: "primary" }, hook ? "Save" : "Create webhook"), button("Cancel", () => void (hook ? show(hook.id) : list()))),
    ),
  );
}

function secretBox(title: string, secret: string, note: string): HTMLElement {
  return el(
    "div",
    { class: "card", role: "status" },
    el("h2", {}, title),
    el("div", { class: "secret", "data-secret": "" }, secret),
    el("div", { class: "actions" }, button("Copy", () => void navigator.clipboard?.writeText(secret))),
    el("p", { class: "note" }, note),
  );
}

/** One webhook: its settings, its actions, and its deliveries; `secret` is shown once after creation. */
export async function show(id: string, secret?: string): Promise<void> {
  const hook = await webhooks.getWebhook({ id });
  const message = el("div", { role: "status" });
  const act = async (work: () => Promise<unknown>) => {
    message.replaceChildren();
    try {
      await work();
    } catch (err) {
      message.replaceChildren(el("p", { class: "error" }, problem(err).message));
    }
  };
  const grace = el("select", {}, ...[["24 hours", "86400"], ["1 hour", "3600"], ["7 days", "604800"], ["None: stop accepting the old secret now", "0"]].map(([t, v]) => el("option", { value: v }, t)));
  grace.id = "grace";
  const overview = el(
    "div",
    { class: "card" },
    el("table", {}, el("tbody", {}, ...[
      ["URL", hook.url],
      ["Description", hook.description || "—"],
      ["Events", hook.events.join(", ")],
      ["Failures", String(hook.failureCount)],
      ["Rate limit", `${hook.rateLimitPerSecond}/s`],
    ].map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))),
      el("tr", {}, el("th", {}, "Status"), el("td", {}, statusOf(hook))),
      el("tr", {}, el("th", {}, "Created"), el("td", {}, when(hook.createdAt))),
      hook.previousSecretExpiresAt ? el("tr", {}, el("th", {}, "Old secret accepted"), el("td", {}, when(hook.previousSecretExpiresAt))) : null)),
  );
  const actions = el(
    "div",
    { class: "actions" },
    button("Edit", () => void form(hook)),
    hook.status === WebhookStatus.ACTIVE ? button("Pause", () => void act(async () => (await webhooks.pauseWebhook({ id }), show(id)))) : null,
    hook.status !== WebhookStatus.ACTIVE ? button("Resume", () => void act(async () => (await webhooks.resumeWebhook({ id }), show(id)))) : null,
    button("Send test ping", () =>
      void act(async () => {
        message.replaceChildren("Sending a test ping…");
        const reply = await webhooks.sendTestPing({ id, wait: true });
        const attempt = reply.delivery?.attempts.at(-1);
        const text = !attempt
          ? "No attempt yet: is a delivery daemon running?"
          : attempt.error
            ? `Test ping failed: ${attempt.error} (${attempt.durationMs} ms)`
            : `Test ping: HTTP ${attempt.responseStatus} in ${attempt.durationMs} ms`;
        message.replaceChildren(el("p", { class: attempt && !attempt.error ? "ok" : "failed" }, text));
      }),
    ),
    button("Reveal secret", () =>
      void act(async () => {
        const reply = await webhooks.getWebhookSecret({ id });
        message.replaceChildren(secretBox("Signing secret", reply.secret, "Endpoints verify every request's signature with it."));
      }),
    ),
    el("span", {}, el("label", { for: "grace", class: "note" }, "Old secret stays valid for"), grace),
    button("Rotate secret", () =>
      void act(async () => {
        const reply = await webhooks.rotateSecret({ id, gracePeriodSeconds: Number(grace.value) });
        await show(id);
        const until = reply.webhook?.previousSecretExpiresAt;
        const note = until ? `The old secret is accepted until ${new Date(Number(until.seconds) * 1000).toLocaleString()}.` : "The old secret is no longer accepted.";
        document.getElementById("app")?.prepend(secretBox("New signing secret (shown once)", reply.secret, note));
      }),
    ),
    button("Delete", () =>
      void act(async () => {
        if (confirm(`Delete ${hook.url}? Its whole delivery history is deleted with it.`)) {
          await webhooks.deleteWebhook({ id });
          await list();
        }
      }),
      "danger",
    ),
  );
  const overviewTab = el("button", { type: "button", role: "tab", "aria-selected": "true" }, "Overview");
  const deliveriesTabButton = el("button", { type: "button", role: "tab", "aria-selected": "false" }, "Deliveries");
  const panel = el("div", { role: "tabpanel" }, overview);
  const select = (tab: HTMLButtonElement) => {
    for (const t of [overviewTab, deliveriesTabButton]) t.setAttribute("aria-selected", String(t === tab));
  };
  overviewTab.addEventListener("click", () => (select(overviewTab), panel.replaceChildren(overview)));
  deliveriesTabButton.addEventListener("click", () => (select(deliveriesTabButton), void deliveriesTab(id, panel)));
  render(
    el("div", { class: "actions" }, button("← All webhooks", () => void list())),
    secret ? secretBox("Signing secret (shown once)", secret, "Give it to the endpoint now: it verifies every request's signature with it.") : null,
    el("h1", {}, hook.url),
    actions,
    message,
    el("div", { class: "tabs", role: "tablist" }, overviewTab, deliveriesTabButton),
    panel,
  );
}
