// yamabiko board — the page. Plain JavaScript on the browser's WebSocket API.
//
// Rules this file keeps:
// * user text is only ever put into the page with textContent, never parsed as HTML;
// * a post is "pending" until the server acknowledges it (after its commit), and
//   pending posts are re-sent with the same client_id after a reconnect (the server
//   drops duplicates), so nothing is lost and nothing is posted twice;
// * the connection reconnects by itself with exponential backoff and jitter; the
//   backoff starts over only once a connection has stayed up for STABLE_MS (a server
//   that accepts and drops again keeps getting slower retries, so a reconnect storm
//   settles);
// * on reconnect it asks for every post after the highest id up to which it holds
//   every post of the thread (not merely the highest id it has seen: a post it
//   missed before a later one must still come).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const LIMITS = { name: 40, body: 2000, title: 100 };
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const STABLE_MS = 10000;
  const PENDING_KEY = "yamabiko.pending";
  const NAME_KEY = "yamabiko.name";

  const state = {
    ws: null,
    attempt: 0,
    retryTimer: null,
    stableTimer: null,
    // open_thread sent and its `thread` reply not yet received.
    awaitingThread: false,
    reopenTimer: null,
    retryAt: 0,
    route: { view: "list" },
    threads: new Map(), // id -> summary
    thread: null, // { id, summary, posts: Map(id -> post), hasOlder, loadingOlder, missing }
    // client_id -> { msg, createdAt }
    pending: loadPending(),
    // A post the server could not confirm (the database was down): sent again with
    // the same text, it keeps its client_id, so it cannot be stored twice.
    unconfirmed: null,
  };

  // ---------- small helpers ----------

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function newClientId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function chars(s) {
    return Array.from(s).length;
  }

  function loadPending() {
    try {
      const raw = sessionStorage.getItem(PENDING_KEY);
      const list = raw ? JSON.parse(raw) : [];
      return new Map(list.map((p) => [p.msg.client_id, p]));
    } catch (_) {
      return new Map();
    }
  }

  function savePending() {
    try {
      sessionStorage.setItem(PENDING_KEY, JSON.stringify([...state.pending.values()]));
    } catch (_) {
      /* private mode: pending posts live as long as the page */
    }
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  function absTime(ms) {
    return timeFmt.format(new Date(ms));
  }

  function relTime(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 45) return "just now";
    const m = Math.round(s / 60);
    if (m < 60) return `${m} min ago`;
    const h = Math.round(m / 60);
    if (h < 24) return `${h} h ago`;
    const d = Math.round(h / 24);
    if (d < 7) return `${d} d ago`;
    return new Date(ms).toLocaleDateString();
  }

  let toastTimer = null;
  function toast(text, isError) {
    const t = $("toast");
    t.textContent = text;
    t.className = isError ? "toast error" : "toast";
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
  }

  function flash(node) {
    node.classList.add("flash");
    requestAnimationFrame(() => requestAnimationFrame(() => node.classList.remove("flash")));
  }

  // ---------- connection ----------

  function setConn(stateName, text) {
    const c = $("conn");
    c.dataset.state = stateName;
    $("conn-text").textContent = text;
    document.body.dataset.conn = stateName;
  }

  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    if (state.ws) return;
    setConn("connecting", "Connecting…");
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.onopen = () => {
      // Not state.attempt = 0 here: only a connection that stays up resets the backoff.
      clearTimeout(state.stableTimer);
      state.stableTimer = setTimeout(() => { state.attempt = 0; }, STABLE_MS);
      setConn("open", "Live");
      subscribe();
      resendPending();
      renderPending();
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      handle(msg);
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      clearTimeout(state.stableTimer);
      clearTimeout(state.reopenTimer);
      state.awaitingThread = false;
      if (ev.code === 1008) toast(`Disconnected by the server: ${ev.reason || "policy"}`, true);
      scheduleReconnect();
      renderPending();
    };
    // onerror is always followed by onclose.
  }

  function scheduleReconnect() {
    // Exponential backoff with jitter: 0.5–1 × min(max, min·2^attempt).
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    state.attempt = Math.min(state.attempt + 1, 10);
    state.retryAt = Date.now() + delay;
    state.retryTimer = setTimeout(connect, delay);
    updateRetryText();
  }

  function updateRetryText() {
    if (!state.retryTimer) return;
    const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    setConn("closed", s > 0 ? `Offline · retry in ${s}s` : "Offline · retrying…");
  }

  setInterval(updateRetryText, 500);

  $("conn").addEventListener("click", () => {
    if (!state.ws) connect();
  });
  window.addEventListener("online", () => {
    if (!state.ws) connect();
  });

  // Ask for what the current view needs; after a reconnect, only what is new.
  function subscribe() {
    clearTimeout(state.reopenTimer);
    if (state.route.view === "list") {
      state.awaitingThread = false;
      send({ type: "list_threads" });
    } else if (state.thread) {
      const msg = { type: "open_thread", thread_id: state.thread.id };
      const last = resyncPoint();
      if (last !== null) msg.after = last;
      state.awaitingThread = send(msg);
    }
  }

  function resendPending() {
    for (const p of state.pending.values()) send(p.msg);
  }

  // ---------- messages from the server ----------

  function handle(msg) {
    switch (msg.type) {
      case "hello":
        Object.assign(LIMITS, msg.limits || {});
        break;
      case "threads":
        state.threads = new Map(msg.threads.map((t) => [t.id, t]));
        renderThreads();
        break;
      case "thread_updated":
        onThreadUpdated(msg.thread);
        break;
      case "thread":
        onThread(msg);
        break;
      case "older_posts":
        onOlder(msg);
        break;
      case "post":
        onPost(msg.post, true);
        break;
      case "ack":
        onAck(msg);
        break;
      case "presence":
        onPresence(msg.thread_id, msg.online);
        break;
      case "error":
        onError(msg);
        break;
      default:
        break;
    }
  }

  function onThreadUpdated(summary) {
    state.threads.set(summary.id, summary);
    if (state.route.view === "list") renderThreads(summary.id);
    if (state.thread && state.thread.id === summary.id) {
      state.thread.summary = summary;
      renderThreadHead();
    }
  }

  function onThread(msg) {
    const t = state.thread;
    if (!t || t.id !== msg.thread.id) return;
    state.awaitingThread = false;
    const resync = t.posts.size > 0 && t.awaitingResync;
    t.summary = msg.thread;
    t.missing = false;
    if (!resync) {
      t.hasOlder = msg.has_older;
    }
    for (const p of msg.posts) t.posts.set(p.id, p);
    t.awaitingResync = true; // later `thread` answers for this view are resyncs
    renderThreadHead();
    renderPosts({ scrollToEnd: !resync });
    if (msg.has_newer && msg.posts.length > 0) {
      // More than one page was missed: continue from the last post of this page.
      state.awaitingThread = send({ type: "open_thread", thread_id: t.id, after: resyncPoint() });
    }
  }

  function onOlder(msg) {
    const t = state.thread;
    if (!t || t.id !== msg.thread_id) return;
    t.loadingOlder = false;
    t.hasOlder = msg.has_older;
    const before = document.documentElement.scrollHeight;
    const top = window.scrollY;
    for (const p of msg.posts) t.posts.set(p.id, p);
    renderPosts({});
    // Keep what the reader was looking at in place.
    window.scrollTo(0, top + (document.documentElement.scrollHeight - before));
  }

  function onPost(post, live) {
    const t = state.thread;
    if (!t || t.id !== post.thread_id) return;
    if (t.posts.has(post.id)) return;
    const nearEnd = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 140;
    t.posts.set(post.id, post);
    if (t.summary) {
      t.summary.post_count = Math.max(t.summary.post_count, post.no);
      t.summary.last_post_id = Math.max(t.summary.last_post_id, post.id);
      t.summary.last_post_at = Math.max(t.summary.last_post_at, post.created_at);
    }
    renderThreadHead();
    renderPosts({ flashId: live ? post.id : null, scrollToEnd: nearEnd });
  }

  function onAck(msg) {
    const p = state.pending.get(msg.client_id);
    state.pending.delete(msg.client_id);
    savePending();
    if (msg.thread) {
      state.threads.set(msg.thread.id, msg.thread);
      if (p && p.msg.type === "new_thread") {
        $("nt-submit").disabled = false;
        location.hash = `#/t/${msg.thread.id}`;
        return;
      }
    }
    onPost(msg.post, false);
    renderPending();
  }

  function onPresence(threadId, online) {
    const s = state.threads.get(threadId);
    if (s) {
      s.online = online;
      if (state.route.view === "list") renderThreads();
    }
    if (state.thread && state.thread.id === threadId && state.thread.summary) {
      state.thread.summary.online = online;
      renderThreadHead();
    }
  }

  function onError(msg) {
    const p = msg.client_id ? state.pending.get(msg.client_id) : null;
    if (p) {
      // The post was refused: take it back into its form so nothing typed is lost.
      state.pending.delete(msg.client_id);
      savePending();
      state.unconfirmed = msg.code === "internal" ? p.msg : null;
      if (p.msg.type === "new_thread") {
        $("nt-submit").disabled = false;
        if (!$("nt-body").value) $("nt-body").value = p.msg.body;
        if (!$("nt-title").value) $("nt-title").value = p.msg.title;
        $("nt-error").textContent = msg.message;
        updateCounter("nt");
      } else {
        if (!$("r-body").value) $("r-body").value = p.msg.body;
        $("r-error").textContent = msg.message;
        updateCounter("r");
      }
      renderPending();
      return;
    }
    if (msg.code === "not_found" && state.thread) {
      state.awaitingThread = false;
      state.thread.missing = true;
      renderThreadHead();
      renderPosts({});
      return;
    }
    if (state.awaitingThread) {
      // Opening the thread failed (the database is down, say): ask again shortly,
      // or the page would stay without live posts until the next reconnect.
      state.awaitingThread = false;
      const wait = msg.retry_after_ms || 1000 + Math.random() * 1000;
      state.reopenTimer = setTimeout(subscribe, wait);
    }
    toast(msg.message, true);
  }

  // ---------- rendering ----------

  function renderThreads(flashId) {
    const list = $("threads");
    const threads = [...state.threads.values()].sort((a, b) => b.last_post_id - a.last_post_id);
    list.replaceChildren(...threads.map((t) => {
      const li = el("li");
      li.dataset.threadId = String(t.id);
      const a = el("a", "thread-title", t.title);
      a.href = `#/t/${t.id}`;
      const meta = el("span", "thread-meta");
      meta.append(
        el("span", "count", `${t.post_count} ${t.post_count === 1 ? "post" : "posts"}`),
        " · ",
        el("span", "when", relTime(t.last_post_at)),
      );
      meta.lastChild.title = absTime(t.last_post_at);
      if (t.online > 0) {
        meta.append(" · ", el("span", "online some", `${t.online} here`));
      }
      li.append(a, meta);
      if (flashId === t.id) flash(li);
      return li;
    }));
    $("no-threads").hidden = threads.length > 0;
    $("thread-count").textContent = threads.length ? `(${threads.length})` : "";
  }

  function renderThreadHead() {
    const t = state.thread;
    if (!t) return;
    $("thread-missing").hidden = !t.missing;
    $("reply").hidden = !!t.missing;
    if (!t.summary) {
      $("thread-title").textContent = t.missing ? "Not found" : "Loading…";
      $("thread-posts").textContent = "";
      $("thread-online").textContent = "";
      return;
    }
    $("thread-title").textContent = t.summary.title;
    document.title = `${t.summary.title} — yamabiko 掲示板`;
    const n = t.summary.post_count;
    $("thread-posts").textContent = `${n} ${n === 1 ? "post" : "posts"}`;
    const online = t.summary.online;
    const o = $("thread-online");
    o.textContent = `${online} online`;
    o.className = online > 0 ? "online some" : "online";
  }

  function postNode(p, pending) {
    const li = el("li", pending ? "post pending" : "post");
    const head = el("div", "post-head");
    if (pending) {
      li.dataset.clientId = p.client_id;
      head.append(
        el("span", "post-no", "…"),
        el("span", "post-name", p.name || "名無しさん"),
        el("span", "post-state", state.ws && state.ws.readyState === WebSocket.OPEN
          ? "sending…" : "waiting for connection…"),
      );
    } else {
      li.dataset.id = String(p.id);
      li.dataset.no = String(p.no);
      const time = el("time", "post-time", absTime(p.created_at));
      time.dateTime = new Date(p.created_at).toISOString();
      head.append(el("span", "post-no", String(p.no)), el("span", "post-name", p.name), time);
    }
    li.append(head, el("p", "post-body", p.body));
    return li;
  }

  function renderPosts({ flashId = null, scrollToEnd = false }) {
    const t = state.thread;
    if (!t) return;
    const posts = [...t.posts.values()].sort((a, b) => a.id - b.id);
    const nodes = posts.map((p) => {
      const n = postNode(p, false);
      if (p.id === flashId) flash(n);
      return n;
    });
    for (const p of state.pending.values()) {
      if (p.msg.type === "post" && p.msg.thread_id === t.id) nodes.push(postNode(p.msg, true));
    }
    $("posts").replaceChildren(...nodes);
    $("older").hidden = !t.hasOlder || t.missing;
    $("older").disabled = !!t.loadingOlder;
    if (scrollToEnd) window.scrollTo(0, document.documentElement.scrollHeight);
  }

  function renderPending() {
    if (state.route.view === "thread") renderPosts({});
    const creating = [...state.pending.values()].some((p) => p.msg.type === "new_thread");
    $("nt-submit").disabled = creating;
    $("nt-submit").textContent = creating ? "Creating…" : "Create thread";
  }

  // The id of the last post of the unbroken run of numbers from the oldest post held
  // (null: none held). A live post can arrive after one this page never got (the
  // connection dropped in between); resyncing from it would skip that one for good.
  function resyncPoint() {
    const t = state.thread;
    if (!t || t.posts.size === 0) return null;
    const posts = [...t.posts.values()].sort((a, b) => a.no - b.no);
    let last = posts[0];
    for (const p of posts.slice(1)) {
      if (p.no !== last.no + 1) break;
      last = p;
    }
    return last.id;
  }

  // ---------- routing ----------

  function route() {
    const m = location.hash.match(/^#\/t\/(\d+)$/);
    if (m) {
      const id = Number(m[1]);
      state.route = { view: "thread", id };
      if (!state.thread || state.thread.id !== id) {
        state.thread = {
          id, summary: state.threads.get(id) || null, posts: new Map(),
          hasOlder: false, loadingOlder: false, missing: false, awaitingResync: false,
        };
      }
      $("list-view").hidden = true;
      $("thread-view").hidden = false;
      $("r-error").textContent = "";
      renderThreadHead();
      renderPosts({});
    } else {
      state.route = { view: "list" };
      state.thread = null;
      document.title = "yamabiko 掲示板";
      $("thread-view").hidden = true;
      $("list-view").hidden = false;
      renderThreads();
    }
    renderPending();
    subscribe();
    window.scrollTo(0, 0);
  }

  window.addEventListener("hashchange", route);

  // ---------- forms ----------

  function updateCounter(prefix) {
    const n = chars($(`${prefix}-body`).value);
    const c = $(`${prefix}-counter`);
    c.textContent = `${n} / ${LIMITS.body}`;
    c.classList.toggle("over", n > LIMITS.body);
  }

  function checkFields(fields) {
    for (const [label, value, max, required] of fields) {
      if (required && !value.trim()) return `${label} is empty`;
      const n = chars(value.trim());
      if (n > max) return `${label} is too long: ${n} characters, at most ${max}`;
    }
    return null;
  }

  function queuePost(msg) {
    const u = state.unconfirmed;
    if (u && u.type === msg.type && u.body === msg.body && u.thread_id === msg.thread_id &&
        u.title === msg.title) {
      msg.client_id = u.client_id;
    }
    state.unconfirmed = null;
    state.pending.set(msg.client_id, { msg, createdAt: Date.now() });
    savePending();
    send(msg);
    renderPending();
  }

  function rememberName(value) {
    try { localStorage.setItem(NAME_KEY, value); } catch (_) { /* ignore */ }
    $("nt-name").value = value;
    $("r-name").value = value;
  }

  $("reply").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = state.thread;
    if (!t) return;
    const name = $("r-name").value;
    const body = $("r-body").value;
    const problem = checkFields([["name", name, LIMITS.name, false], ["body", body, LIMITS.body, true]]);
    $("r-error").textContent = problem || "";
    if (problem) return;
    rememberName(name);
    $("r-body").value = "";
    updateCounter("r");
    queuePost({ type: "post", thread_id: t.id, name, body, client_id: newClientId() });
    window.scrollTo(0, document.documentElement.scrollHeight);
  });

  $("new-thread").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const title = $("nt-title").value;
    const name = $("nt-name").value;
    const body = $("nt-body").value;
    const problem = checkFields([
      ["title", title, LIMITS.title, true],
      ["name", name, LIMITS.name, false],
      ["body", body, LIMITS.body, true],
    ]);
    $("nt-error").textContent = problem || "";
    if (problem) return;
    rememberName(name);
    $("nt-title").value = "";
    $("nt-body").value = "";
    updateCounter("nt");
    queuePost({ type: "new_thread", title, name, body, client_id: newClientId() });
  });

  for (const prefix of ["r", "nt"]) {
    const body = $(`${prefix}-body`);
    body.addEventListener("input", () => updateCounter(prefix));
    body.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        $(prefix === "r" ? "reply" : "new-thread").requestSubmit();
      }
    });
  }

  $("older").addEventListener("click", () => {
    const t = state.thread;
    if (!t || t.posts.size === 0 || t.loadingOlder) return;
    const before = Math.min(...t.posts.keys());
    if (send({ type: "older", thread_id: t.id, before })) {
      t.loadingOlder = true;
      $("older").disabled = true;
    }
  });

  // Keep relative times fresh.
  setInterval(() => {
    if (state.route.view === "list") renderThreads();
  }, 30000);

  // ---------- start ----------

  try {
    const name = localStorage.getItem(NAME_KEY);
    if (name) { $("nt-name").value = name; $("r-name").value = name; }
  } catch (_) { /* ignore */ }
  updateCounter("r");
  updateCounter("nt");
  route();
  connect();
})();
