// The chat example (yamabiko/examples/chat) in headless Chromium (Debian's package),
// driven by playwright-core. Run by scripts/browser-test.sh; needs CHAT_BIN (the built
// example).
//
// What it checks, as a person would: two windows on the page served by the example;
// a message typed in one appears in both, as text (markup shows literally); the page
// says when the connection ends.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const BIN = process.env.CHAT_BIN || path.join(repo, "target/release/examples/chat");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = 20_000;

let server = null;
let browser = null;

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server && server.exitCode === null) server.kill("SIGKILL");
});

/** Starts the chat example on a free port; resolves with its base URL. */
function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ["127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
    server = child;
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`chat did not start: ${err}`)), 10_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/open (http:\/\/\S+) in two windows/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.stderr.on("data", (d) => { err += d; });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`chat exited (${code}): ${err}`));
    });
  });
}

const lines = (page) => page.$$eval("#log > div:not(.status)", (ds) => ds.map((d) => d.textContent));

async function waitForLine(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#log > div:not(.status)")].some((d) => d.textContent === t),
    text,
    { timeout: TIMEOUT },
  );
}

test("two windows see each other's messages, as text", { timeout: 60_000 }, async () => {
  const base = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext();
  const errors = [];
  const [alice, bob] = [await context.newPage(), await context.newPage()];
  for (const p of [alice, bob]) {
    p.on("pageerror", (e) => errors.push(String(e)));
    p.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await p.goto(base);
    await p.waitForFunction(
      () => [...document.querySelectorAll("#log .status")].some((d) => d.textContent === "connected"),
      null,
      { timeout: TIMEOUT },
    );
  }

  await alice.fill("#msg", "こんにちは from alice");
  await alice.press("#msg", "Enter");
  await waitForLine(bob, "こんにちは from alice");
  await waitForLine(alice, "こんにちは from alice");

  const markup = "<img src=x onerror=alert(1)> bob";
  await bob.fill("#msg", markup);
  await bob.click("button");
  await waitForLine(alice, markup);
  assert.deepEqual(await lines(alice), ["こんにちは from alice", markup]);
  assert.equal(await alice.$$eval("#log img", (imgs) => imgs.length), 0);

  // The server goes away: the pages say so.
  server.kill("SIGKILL");
  await bob.waitForFunction(
    () => [...document.querySelectorAll("#log .status")].some((d) => d.textContent.startsWith("connection closed")),
    null,
    { timeout: TIMEOUT },
  );
  assert.deepEqual(errors.filter((e) => !/WebSocket connection/.test(e)), []);
});
