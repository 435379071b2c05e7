// End-to-end test of `yamabiko serve` in headless Chromium (Debian's package), driven
// by playwright-core. Run by scripts/browser-test.sh; needs YAMABIKO_BIN (the built
// binary) and writes docs/board-screenshot.png.
//
// What it checks, as a person would: two tabs, a post in one appears in the other
// without a reload; a posted <script> shows literally; the server is killed and
// restarted on the same database and port, and the pages reconnect by themselves,
// catch up on a post made while they were away, and deliver a post written while the
// server was down — once.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const BIN = process.env.YAMABIKO_BIN || path.join(repo, "target/release/yamabiko");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOT_DIR || path.join(repo, "docs");
const TIMEOUT = 20_000;

const tmp = mkdtempSync(path.join(tmpdir(), "yamabiko-browser-"));
const db = path.join(tmp, "board.db");
const servers = new Set();
let browser = null;

after(async () => {
  if (browser) await browser.close().catch(() => {});
  for (const s of servers) s.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

/** Starts `yamabiko serve`; resolves with { child, url } once it prints its address. */
function startServer(listen) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ["serve", "--listen", listen, "--db", db], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
    });
    servers.add(child);
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 10_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)\//);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
    child.stderr.on("data", (d) => {
      err += d;
      if (process.env.SHOW_SERVER_LOG) process.stderr.write(d);
    });
    child.on("exit", (code) => {
      servers.delete(child);
      clearTimeout(timer);
      reject(new Error(`server exited (${code}): ${err}`));
    });
  });
}

/** Kills the server by its PID with SIGKILL (a crash) and waits until it is gone. */
function killServer(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    process.kill(child.pid, "SIGKILL");
  });
}

async function waitConn(page, state) {
  await page.waitForFunction(
    (s) => document.getElementById("conn").dataset.state === s,
    state,
    { timeout: TIMEOUT },
  );
}

/** The posts shown in a page: [{ id, no, name, body, pending }]. */
function postsOf(page) {
  return page.$$eval("#posts > li", (lis) => lis.map((li) => ({
    id: li.dataset.id ? Number(li.dataset.id) : null,
    no: li.dataset.no ? Number(li.dataset.no) : null,
    name: li.querySelector(".post-name").textContent,
    body: li.querySelector(".post-body").textContent,
    pending: li.classList.contains("pending"),
  })));
}

async function waitForPost(page, body) {
  await page.waitForFunction(
    (b) => [...document.querySelectorAll("#posts > li:not(.pending) .post-body")]
      .some((e) => e.textContent === b),
    body,
    { timeout: TIMEOUT },
  );
}

async function reply(page, body, name) {
  if (name !== undefined) await page.fill("#r-name", name);
  await page.fill("#r-body", body);
  await page.click("#r-submit");
}

test("two tabs, live posts, literal text, restart and catch up", { timeout: 120_000 }, async () => {
  let server = await startServer("127.0.0.1:0");
  const base = server.url;
  const listen = base.replace("http://", "");

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1000, height: 820 }, locale: "ja-JP" });
  const errors = [];
  const page1 = await context.newPage();
  const page2 = await context.newPage();
  for (const p of [page1, page2]) {
    p.on("pageerror", (e) => errors.push(String(e)));
    p.on("console", (m) => {
      // The browser itself logs failed connection attempts while the server is down.
      if (m.type() === "error" && !/WebSocket connection|net::ERR_/.test(m.text())) errors.push(m.text());
    });
  }

  // --- Tab 1 starts a thread.
  await page1.goto(base);
  await waitConn(page1, "open");
  await page1.fill("#nt-title", "やまびこ掲示板へようこそ — welcome to the board");
  await page1.fill("#nt-name", "やまびこ");
  await page1.fill("#nt-body", "新しい投稿は更新ボタンなしで表示されます。\nPosts appear live in every open tab.");
  await page1.click("#nt-submit");
  await page1.waitForFunction(() => /^#\/t\/\d+$/.test(location.hash), null, { timeout: TIMEOUT });
  const threadHash = await page1.evaluate(() => location.hash);
  await waitForPost(page1, "新しい投稿は更新ボタンなしで表示されます。\nPosts appear live in every open tab.");

  // --- Tab 2 opens the list and sees the thread, then opens it.
  await page2.goto(base);
  await waitConn(page2, "open");
  await page2.waitForSelector("#threads li a", { timeout: TIMEOUT });
  assert.match(await page2.textContent("#threads li a"), /やまびこ掲示板へようこそ/);
  await page2.click("#threads li a");
  await page2.waitForFunction((h) => location.hash === h, threadHash, { timeout: TIMEOUT });
  await page2.waitForSelector("#posts > li[data-no='1']", { timeout: TIMEOUT });
  // Marks that prove there is no reload from here on.
  await page1.evaluate(() => { window.__noReload = 1; });
  await page2.evaluate(() => { window.__noReload = 2; });

  // --- A post in tab 1 appears in tab 2, live.
  await reply(page1, "こんにちは! Hello from tab 1.", "");
  await waitForPost(page2, "こんにちは! Hello from tab 1.");
  const seen = (await postsOf(page2)).find((p) => p.body === "こんにちは! Hello from tab 1.");
  assert.equal(seen.name, "名無しさん", "an empty name shows the default");
  await reply(page2, "Tab 2 here — replies go the other way too.", "tab2");
  await waitForPost(page1, "Tab 2 here — replies go the other way too.");
  // Online count: both tabs view the thread.
  await page1.waitForFunction(() => document.getElementById("thread-online").textContent === "2 online",
    null, { timeout: TIMEOUT });

  // --- Text is text: a posted <script> shows literally and does not run.
  const evil = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned=2\"> <b>not bold</b>";
  await reply(page1, evil, "tester");
  await waitForPost(page2, evil);
  for (const p of [page1, page2]) {
    await waitForPost(p, evil);
    assert.equal(await p.evaluate(() => window.__pwned), undefined, "user HTML never runs");
    assert.equal(await p.$$eval(".post-body b, .post-body img, .post-body script", (e) => e.length), 0);
  }

  // --- The server dies (kill -9) and comes back on the same database and port.
  await killServer(server.child);
  await waitConn(page1, "closed");
  await waitConn(page2, "closed");
  assert.match(await page1.textContent("#conn"), /Offline/);

  // Written while the server is down: shown as pending, sent when it is back.
  await reply(page1, "Written while the server was down.", "tab1");
  await page1.waitForSelector("#posts > li.pending", { timeout: TIMEOUT });
  assert.match(await page1.textContent("#posts > li.pending"), /waiting for connection/);

  // Meanwhile someone posts through another server on the same database (the pages
  // are away): they must catch up on it after reconnecting.
  const other = await startServer("127.0.0.1:0");
  const page3 = await context.newPage();
  await page3.goto(other.url + "/" + threadHash);
  await waitConn(page3, "open");
  await reply(page3, "Posted while you were away.", "someone");
  await waitForPost(page3, "Posted while you were away.");
  await page3.close();
  await killServer(other.child);

  server = await startServer(listen);
  await waitConn(page1, "open");
  await waitConn(page2, "open");
  for (const p of [page1, page2]) {
    await waitForPost(p, "Posted while you were away.");
    await waitForPost(p, "Written while the server was down.");
  }
  await page1.waitForFunction(() => document.querySelectorAll("#posts > li.pending").length === 0,
    null, { timeout: TIMEOUT });
  // No duplicates, nothing missing, in order, and still the same documents.
  for (const p of [page1, page2]) {
    const posts = await postsOf(p);
    const nos = posts.map((x) => x.no);
    assert.deepEqual(nos, [1, 2, 3, 4, 5, 6], `posts in ${await p.evaluate(() => window.__noReload)}`);
    const ids = posts.map((x) => x.id);
    assert.equal(new Set(ids).size, ids.length, "no post twice");
    assert.ok(await p.evaluate(() => window.__noReload), "no reload happened");
  }

  // Live again after the restart.
  await reply(page2, "Back online — and still live.", "tab2");
  await waitForPost(page1, "Back online — and still live.");

  // --- Validation errors are shown by the page, and the text is kept.
  await page1.evaluate(() => { document.getElementById("r-body").removeAttribute("maxlength"); });
  await reply(page1, "あ".repeat(2001));
  await page1.waitForFunction(() => document.getElementById("r-error").textContent.includes("too long"),
    null, { timeout: TIMEOUT });
  await page1.fill("#r-body", "");

  // --- Screenshots: the thread on a desktop and a phone, and the list.
  mkdirSync(SHOTS, { recursive: true });
  await page2.evaluate(() => window.scrollTo(0, 0));
  await page1.goto(base + "/#/");
  await waitConn(page1, "open");
  await page1.waitForSelector("#threads li", { timeout: TIMEOUT });
  await page2.waitForFunction(() => document.getElementById("thread-online").textContent === "1 online",
    null, { timeout: TIMEOUT });
  await page2.screenshot({ path: path.join(SHOTS, "board-screenshot.png"), fullPage: true });
  await page1.screenshot({ path: path.join(tmp, "list.png") });
  if (process.env.KEEP_SHOTS) await page1.screenshot({ path: path.join(process.env.KEEP_SHOTS, "list.png"), fullPage: true });
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const mobile = await phone.newPage();
  await mobile.goto(base + "/" + threadHash);
  await waitConn(mobile, "open");
  await waitForPost(mobile, "Back online — and still live.");
  const overflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px)`);
  await mobile.evaluate(() => window.scrollTo(0, 0));
  await mobile.screenshot({ path: path.join(SHOTS, "board-screenshot-phone.png") });
  await phone.close();

  assert.deepEqual(errors, [], "no script errors in the pages");
  await killServer(server.child);
});

// The page against a scripted server (Playwright's WebSocket routing; the real server
// only serves the page): after a live post that skipped one it never got, the page
// resyncs from the last post of the unbroken run, not from the newest id it has seen;
// a server that accepts and drops again gets ever slower retries (the backoff starts
// over only after a connection stayed up); an open that fails is asked again.
test("resync point, backoff until stable, reopen after an error", { timeout: 60_000 }, async () => {
  const server = await startServer("127.0.0.1:0");
  if (!browser) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ],
    });
  }
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  const post = (id, no) => ({ id, thread_id: 1, no, name: "n", body: `post ${no}`, created_at: 1767225600000 });
  const summary = (count, last) => ({
    id: 1, title: "scripted", post_count: count, last_post_id: last, last_post_at: 1767225600000,
    created_at: 1767225600000, online: 1,
  });
  const thread = (posts, count, last) => JSON.stringify({
    type: "thread", thread: summary(count, last), posts, has_older: false, has_newer: false,
  });
  const conns = [];
  await context.routeWebSocket(/\/ws$/, (ws) => {
    const c = { at: Date.now(), opens: [], posts: [] };
    conns.push(c);
    const n = conns.length;
    ws.send(JSON.stringify({
      type: "hello", server: "scripted",
      limits: { name: 40, body: 2000, title: 100, posts: 5, per_seconds: 10 },
    }));
    ws.onMessage((text) => {
      const msg = JSON.parse(text);
      if (msg.type === "post") {
        // The first try fails as when the database is down; the second is saved.
        c.posts.push(msg);
        ws.send(JSON.stringify(c.posts.length === 1
          ? { type: "error", code: "internal", client_id: msg.client_id,
            message: "the post could not be confirmed as saved: the database is unavailable" }
          : { type: "ack", client_id: msg.client_id, post: { ...post(15, 6), body: msg.body } }));
        return;
      }
      if (msg.type !== "open_thread") return;
      c.opens.push(msg);
      if (n === 1) {
        // Posts 1–3, then post 5 live (4 never came), then the connection drops.
        ws.send(thread([post(10, 1), post(11, 2), post(12, 3)], 3, 12));
        ws.send(JSON.stringify({ type: "post", post: post(14, 5) }));
        setTimeout(() => ws.close({ code: 1011, reason: "scripted drop" }), 100);
      } else if (n === 2) {
        ws.send(thread([post(13, 4), post(14, 5)], 5, 14));
        setTimeout(() => ws.close({ code: 1011, reason: "scripted drop" }), 50);
      } else if (n === 3) {
        ws.close({ code: 1011, reason: "scripted drop" });
      } else if (c.opens.length === 1) {
        ws.send(JSON.stringify({ type: "error", code: "internal", message: "the database is down" }));
      } else {
        ws.send(thread([], 5, 14));
      }
    });
  });

  await page.goto(server.url + "/#/t/1");
  await page.waitForFunction(() => document.querySelectorAll("#posts > li[data-no]").length === 5,
    null, { timeout: TIMEOUT });
  const deadline = Date.now() + 15_000;
  while ((conns.length < 4 || conns[3].opens.length < 2) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(conns.length >= 4, `four connections (got ${conns.length})`);
  assert.equal(conns[0].opens[0].after, undefined, "the first open asks for the newest posts");
  assert.equal(conns[1].opens[0].after, 12, "resync from post 3 (id 12), the end of the unbroken run");
  assert.equal(conns[2].opens[0].after, 14, "then from post 5 once 4 is there");
  const nos = (await postsOf(page)).map((p) => p.no);
  assert.deepEqual(nos, [1, 2, 3, 4, 5], "every post once, in order");
  // Delays: 0.25–0.5 s, 0.5–1 s, 1–2 s when the backoff is kept; a page that started
  // over on every connect would wait 0.25–0.5 s each time.
  const third = conns[3].at - conns[2].at;
  assert.ok(third >= 900, `the third retry waited ${third} ms: the backoff was reset`);
  assert.equal(conns[3].opens.length, 2, "a failed open is asked again on the same connection");

  // A post the server could not confirm comes back into the form; sent again, it
  // keeps its client_id (the server stores a client_id once: no double post).
  await reply(page, "maybe saved, maybe not");
  await page.waitForFunction(() => document.getElementById("r-error").textContent.includes("could not be confirmed"),
    null, { timeout: TIMEOUT });
  assert.equal(await page.inputValue("#r-body"), "maybe saved, maybe not", "the text is kept");
  await page.click("#r-submit");
  await waitForPost(page, "maybe saved, maybe not");
  const sent = conns[3].posts;
  assert.equal(sent.length, 2);
  assert.equal(sent[1].client_id, sent[0].client_id, "the same client_id the second time");
  assert.deepEqual(errors, [], "no script errors");
  await context.close();
  await killServer(server.child);
});
