// The console: sign in with an API key (kept for this tab only), then the account's webhooks.

import { problem, session, webhooks } from "./api.js";
import { button, el, field, render } from "./ui.js";
import { list } from "./webhooks.js";

function showSession(): void {
  const bar = document.getElementById("session");
  bar?.replaceChildren(session.key() ? button("Sign out", () => (session.signOut(), signIn())) : "");
}

function signIn(message = ""): void {
  showSession();
  const key = el("input", { type: "password", autocomplete: "off", required: true });
  const error = el("p", { class: "error", role: "alert" }, message);
  const submit = async () => {
    session.signIn(key.value.trim());
    try {
      await webhooks.listWebhooks({ pageSize: 1 });
      showSession();
      await list();
    } catch (err) {
      session.signOut();
      const p = problem(err);
      error.replaceChildren(p.unauthenticated ? "That key was not accepted: use the admin key from kit-webhooks.keys." : p.message);
    }
  };
  render(
    el("h1", {}, "Sign in"),
    el(
      "form",
      { class: "card", submit: (e: Event) => (e.preventDefault(), void submit()) },
      field("API key", key, "api-key"),
      el("p", { class: "note" }, "An admin key: the server's first start writes one to kit-webhooks.keys. It is kept for this browser tab only."),
      error,
      el("div", { class: "actions" }, el("button", { type: "submit", class: "primary" }, "Sign in")),
    ),
  );
}

async function start(): Promise<void> {
  if (!session.key()) {
    signIn();
    return;
  }
  showSession();
  try {
    await list();
  } catch (err) {
    const p = problem(err);
    session.signOut();
    signIn(p.unauthenticated ? "Your key is no longer accepted; sign in again." : p.message);
  }
}

void start();
