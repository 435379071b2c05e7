// The board over HTTPS in headless Chromium: `yamabiko serve --tls-cert --tls-key`
// (certificate made here with openssl), ALPN h2. Run by scripts/browser-test.sh.
//
// What it checks: the page loads over HTTP/2 (the page's own Navigation Timing says
// nextHopProtocol "h2"); the page's WebSocket is opened inside that same HTTP/2
// connection as an extended CONNECT (RFC 8441) — the server's log names each
// WebSocket's way in and the TCP connection it came on; and a post made in one page
// appears live in a second one.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const BIN = process.env.YAMABIKO_BIN || path.join(repo, "target/release/yamabiko");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = 20_000;

const tmp = mkdtempSync(path.join(tmpdir(), "yamabiko-browser-h2-"));
let server = null;
let browser = null;

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server && server.exitCode === null) process.kill(server.pid, "SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

/** A self-signed certificate for localhost and 127.0.0.1: { cert, key } paths. */
function certificate() {
  const cert = path.join(tmp, "cert.pem");
  const key = path.join(tmp, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-addext", "basicConstraints=critical,CA:FALSE",
  ], { stdio: "ignore" });
  return { cert, key };
}

/** Starts `yamabiko serve` over HTTPS; resolves with { child, port, log() }. */
function startServer({ cert, key }) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, [
      "serve", "--listen", "127.0.0.1:0", "--db", path.join(tmp, "board.db"),
      "--tls-cert", cert, "--tls-key", key,
    ], {
      stdio: ["ignore", "pipe", "pipe"],
      // Connections (debug, in the https module) and WebSockets (info) are logged.
      env: { ...process.env, RUST_LOG: "info,yamabiko_board::https=debug", NO_COLOR: "1" },
    });
    server = child;
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 10_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on https:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]), log: () => err });
      }
    });
    child.stderr.on("data", (d) => {
      err += d;
      if (process.env.SHOW_SERVER_LOG) process.stderr.write(d);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}): ${err}`));
    });
  });
}

async function waitConn(page, state) {
  await page.waitForFunction(
    (s) => document.getElementById("conn").dataset.state === s,
    state,
    { timeout: TIMEOUT },
  );
}

async function waitForPost(page, body) {
  await page.waitForFunction(
    (b) => [...document.querySelectorAll("#posts > li:not(.pending) .post-body")]
      .some((e) => e.textContent === b),
    body,
    { timeout: TIMEOUT },
  );
}

/** Waits until the server's log matches `re` `count` times; returns the matches. */
async function waitLog(srv, re, count) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const found = [...srv.log().matchAll(re)];
    if (found.length >= count) return found;
    if (Date.now() > deadline) throw new Error(`log never showed ${re} ×${count}:\n${srv.log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("the board over HTTPS: page and WebSocket on one HTTP/2 connection", { timeout: 90_000 }, async () => {
  const srv = await startServer(certificate());
  const base = `https://localhost:${srv.port}`;

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--ignore-certificate-errors",
    ],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const errors = [];
  const page1 = await context.newPage();
  const page2 = await context.newPage();
  for (const p of [page1, page2]) {
    p.on("pageerror", (e) => errors.push(String(e)));
    p.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  }

  await page1.goto(base);
  await waitConn(page1, "open");
  // The page and its script came over HTTP/2.
  const protocols = await page1.evaluate(() => [
    performance.getEntriesByType("navigation")[0].nextHopProtocol,
    ...performance.getEntriesByType("resource").map((e) => e.nextHopProtocol),
  ]);
  assert.ok(protocols.length >= 2, `entries: ${protocols}`);
  assert.ok(protocols.every((p) => p === "h2"), `page and resources over h2: ${protocols}`);

  // Its WebSocket is an extended CONNECT on the connection that served the page.
  const conns = await waitLog(srv, /HTTP\/2 connection peer=(127\.0\.0\.1:\d+)/g, 1);
  const sockets = await waitLog(srv, /client\{id=\d+ peer=(127\.0\.0\.1:\d+)\}: \S+ connected online=\d+ via="([^"]+)"/g, 1);
  assert.equal(sockets[0][2], "HTTP/2 extended CONNECT");
  assert.ok(conns.some((c) => c[1] === sockets[0][1]), "the WebSocket rides the page's HTTP/2 connection");

  await page1.fill("#nt-title", "HTTP/2 でようこそ — over h2");
  await page1.fill("#nt-name", "h2");
  await page1.fill("#nt-body", "The page and this socket share one connection.");
  await page1.click("#nt-submit");
  await page1.waitForFunction(() => /^#\/t\/\d+$/.test(location.hash), null, { timeout: TIMEOUT });
  const threadHash = await page1.evaluate(() => location.hash);

  // A second page (same origin, same browser): on the same connection too.
  await page2.goto(base + "/" + threadHash);
  await waitConn(page2, "open");
  await page2.waitForSelector("#posts > li[data-no='1']", { timeout: TIMEOUT });
  const both = await waitLog(srv, /client\{id=\d+ peer=(127\.0\.0\.1:\d+)\}: \S+ connected online=\d+ via="([^"]+)"/g, 2);
  assert.ok(both.every((m) => m[2] === "HTTP/2 extended CONNECT"), both.map((m) => m[2]).join(", "));
  const served = new Set([...srv.log().matchAll(/HTTP\/2 connection peer=(127\.0\.0\.1:\d+)/g)].map((c) => c[1]));
  assert.ok(both.every((m) => served.has(m[1])), "each WebSocket rides an HTTP/2 connection of the pages");
  assert.doesNotMatch(srv.log(), /via="HTTP\/1\.1 upgrade"/);

  // A post in page 1 appears live in page 2.
  await page1.fill("#r-body", "Live over HTTP/2.");
  await page1.click("#r-submit");
  await waitForPost(page2, "Live over HTTP/2.");
  await page2.fill("#r-body", "And back, on the same connection.");
  await page2.click("#r-submit");
  await waitForPost(page1, "And back, on the same connection.");

  assert.deepEqual(errors, [], "no script errors in the pages");
  await browser.close();
  browser = null;
  // A graceful stop reports the count of WebSockets that came over HTTP/2.
  const exited = new Promise((r) => srv.child.once("exit", r));
  process.kill(srv.child.pid, "SIGTERM");
  await exited;
  assert.match(srv.log(), /WebSockets served over HTTP\/2 \(extended CONNECT\) count=2/);
});
