// Watches azlin serve's dashboard in headless Chromium, for the CI service test that drives it
// through stdin/stdout: it prints `ready` once the page is loaded, `run` when a run appears,
// `log` when LINE shows in a run's output, then `done` once the run shows success, after a
// screenshot. The page is never reloaded: everything after `ready` arrives live.
//
// node watch.mjs URL LINE SCREENSHOT
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, line, screenshot] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "azlin-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.AZLIN_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  let loads = 0;
  page.on("load", () => loads++);
  const limit = { timeout: 90_000 };
  await page.goto(url);
  console.log("ready");
  await page.waitForSelector(".run", limit);
  console.log("run");
  await page.waitForFunction(
    (text) => [...document.querySelectorAll("pre.log")].some((p) => p.textContent.includes(text)),
    line,
    limit,
  );
  console.log("log");
  await page.waitForSelector(".run .head .state.success", limit);
  await page.screenshot({ path: screenshot, fullPage: true });
  if (loads !== 1) throw new Error(`the page loaded ${loads} times`);
  console.log("done");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
