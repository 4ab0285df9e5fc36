// The console in a real browser (headless Chromium, driven by Playwright), against a real server that
// tests/console.rs starts. Two phases around an event the harness publishes through the API in between:
//   node console.test.mjs first   sign in, a wrong key refused, create a webhook for a whole category, its
//                                 secret shown once, a field error beside its field, a test ping's result
//   node console.test.mjs second  the published event's delivery with its request headers and status, pause
//                                 and resume, rotate, edit, delete with confirmation
//   node console.test.mjs pages   with 55 webhooks, 50 to a page, and the next page's 5
// Each prints one JSON line of what the harness needs next, and fails (exit 1) at the first thing a user would
// not see.

import { chromium } from "playwright-core";

const { KIT_CONSOLE_URL: url, KIT_ADMIN_KEY: key, KIT_RECEIVER_URL: receiver, KIT_CHROMIUM: executable } = process.env;
const phase = process.argv[2];

function check(condition, what) {
  if (!condition) {
    throw new Error(what);
  }
}

async function signIn(page, apiKey) {
  await page.goto(url);
  await page.getByLabel("API key").fill(apiKey);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function first(page) {
  // A wrong key gets a readable message, and stays on the sign-in form.
  await signIn(page, "kit_not_a_key");
  await page.getByText("That key was not accepted").waitFor();

  await signIn(page, key);
  await page.getByRole("heading", { name: "Webhooks" }).waitFor();
  check(!page.url().includes(key), "the key is never in the URL");
  check((await page.evaluate(() => document.cookie)) === "", "the key is never in a cookie");
  check((await page.evaluate(() => sessionStorage.length)) === 1, "the key is kept for the tab");

  await page.getByRole("button", { name: "Create webhook" }).click();
  // The server's refusal appears beside the field it names.
  await page.getByLabel("URL").fill("ftp://files.example.com/");
  await page.getByLabel("All application events").check();
  await page.getByRole("button", { name: "Create webhook" }).click();
  await page.locator("#url-error").filter({ hasText: /https/ }).waitFor();

  await page.getByLabel("URL").fill(receiver);
  await page.getByLabel("Description").fill("console test");
  await page.getByLabel("interview.scheduled").check();
  await page.getByRole("button", { name: "Create webhook" }).click();
  await page.getByText("Signing secret (shown once)").waitFor();
  const secret = (await page.locator("[data-secret]").first().textContent()).trim();
  check(secret.startsWith("whsec_"), `a secret is shown: ${secret}`);
  await page.getByRole("button", { name: "Copy" }).waitFor();
  await page.getByText("application.*, interview.scheduled").waitFor();

  await page.getByRole("button", { name: "Send test ping" }).click();
  await page.getByText(/Test ping: HTTP 204 in \d+ ms/).waitFor();

  // Back on the list, the secret is not shown again.
  await page.getByRole("button", { name: "← All webhooks" }).click();
  await page.getByRole("heading", { name: "Webhooks" }).waitFor();
  await page.getByText("console test").waitFor();
  check((await page.locator("[data-secret]").count()) === 0, "the secret is shown once");
  return { secret };
}

async function second(page, previousSecret) {
  await signIn(page, key);
  await page.getByRole("button", { name: receiver }).click();

  await page.getByRole("tab", { name: "Deliveries" }).click();
  const delivery = page.locator("summary", { hasText: "application.submitted" });
  await delivery.waitFor();
  // Still in flight when the tab opens; the tab's watch shows the attempt once it is recorded.
  await page.locator("summary", { hasText: /application\.submitted · sending/ }).waitFor();
  await page.locator("summary", { hasText: /application\.submitted · succeeded · 1 attempt/ }).waitFor({ timeout: 20000 });
  await page.locator("summary", { hasText: "application.submitted" }).click();
  await page.getByText("Attempt 1: HTTP 204").waitFor();
  await page.getByText("Request headers").first().waitFor();
  const shown = await page.locator("details[open]").first().textContent();
  check(shown.includes("webhook-signature: v1,"), "the request's signature header is shown");
  check(shown.includes("kit-event-type: application.submitted"), "the request's event type header is shown");
  check(shown.includes("Response status 204"), "the response status is shown");

  await page.getByRole("tab", { name: "Overview" }).click();
  await page.getByRole("button", { name: "Pause" }).click();
  await page.locator(".status", { hasText: "Paused" }).waitFor();
  await page.getByRole("button", { name: "Resume" }).click();
  await page.locator(".status", { hasText: "Active" }).waitFor();

  await page.getByLabel("Old secret stays valid for").selectOption({ label: "1 hour" });
  await page.getByRole("button", { name: "Rotate secret" }).click();
  await page.getByText("New signing secret (shown once)").waitFor();
  const rotated = (await page.locator("[data-secret]").first().textContent()).trim();
  check(rotated.startsWith("whsec_") && rotated !== previousSecret, "a new secret is shown");
  await page.getByText(/The old secret is accepted until/).waitFor();

  await page.getByRole("button", { name: "Edit" }).click();
  await page.getByLabel("Description").fill("edited in the console");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("edited in the console").waitFor();

  let asked = "";
  page.once("dialog", (dialog) => {
    asked = dialog.message();
    void dialog.accept();
  });
  await page.getByRole("button", { name: "Delete" }).click();
  await page.getByText("No webhooks yet.").waitFor();
  check(asked.includes("delivery history"), `the confirmation says the history goes too: ${asked}`);

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key").waitFor();
  check((await page.evaluate(() => sessionStorage.length)) === 0, "signing out forgets the key");
  return {};
}

async function pages(page) {
  await signIn(page, key);
  const rows = page.locator("tbody tr");
  await page.getByRole("button", { name: "Next page" }).waitFor();
  check((await rows.count()) === 50, `50 webhooks on the first page, not ${await rows.count()}`);
  await page.getByRole("button", { name: "Next page" }).click();
  await page.getByRole("button", { name: "Previous page" }).waitFor();
  check((await rows.count()) === 5, `5 webhooks on the second page, not ${await rows.count()}`);
  check((await page.getByRole("button", { name: "Next page" }).count()) === 0, "no page after the last");
  await page.getByRole("button", { name: "Previous page" }).click();
  await page.getByRole("button", { name: "Next page" }).waitFor();
  check((await rows.count()) === 50, "back on the first page");
  return {};
}

const browser = await chromium.launch({ executablePath: executable || "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15000);
  const phases = { first: () => first(page), second: () => second(page, process.env.KIT_PREVIOUS_SECRET), pages: () => pages(page) };
  const result = await phases[phase]();
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(err.stack || String(err));
  process.exitCode = 1;
} finally {
  await browser.close();
}
