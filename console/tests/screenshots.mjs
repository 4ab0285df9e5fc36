// The README's screenshots of the console: node tests/screenshots.mjs URL ADMIN_KEY OUT_DIR, against a server
// with a few webhooks and deliveries (docs/console-*.png).

import { chromium } from "playwright-core";

const [url, key, out] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.KIT_CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1180, height: 760 } });
await page.goto(url);
await page.getByLabel("API key").fill(key);
await page.getByRole("button", { name: "Sign in" }).click();
await page.getByRole("heading", { name: "Webhooks" }).waitFor();
await page.getByText(/succeeded/).first().waitFor();
await page.screenshot({ path: `${out}/console-list.png` });
await page.getByRole("button", { name: "Create webhook" }).click();
await page.getByLabel("URL").fill("https://ats.example.com/kit/webhooks");
await page.getByLabel("Description").fill("Candidate pipeline sync");
await page.getByLabel("All application events").check();
await page.getByLabel("interview.scheduled").check();
await page.screenshot({ path: `${out}/console-create.png`, fullPage: true });
await page.getByRole("button", { name: "Cancel" }).click();
await page.getByRole("button", { name: /hooks\/ats/ }).click();
await page.getByRole("tab", { name: "Deliveries" }).click();
await page.locator("summary", { hasText: "application.submitted" }).click();
await page.getByText("Attempt 1: HTTP 204").waitFor();
await page.screenshot({ path: `${out}/console-delivery.png`, fullPage: true });
await browser.close();
