// 鬼ごっこ — the page: lobby, game view, input, the socket, and the loop that ties
// prediction (own circle), interpolation (the others) and drawing together.
//
// Exposes what it draws as window.yamabikoGame = { me, tick, players: [{ id, name, x,
// y, it, score }] } in arena units (score in seconds), for automated tests.

import * as proto from "./protocol.js";
import { Prediction, Interpolation, TickClock, unwrapAck } from "./netcode.js";
import { createRenderer, seatColor } from "./render.js";
import { SUBUNITS } from "./sim.js";

const $ = (id) => document.getElementById(id);
const MAX_NAME = 16;
const MAX_ROOM = 24;
const DEFAULT_ROOM = "hiroba";

// ---------------------------------------------------------------- state

const game = {
  ws: null,
  view: "lobby", // lobby | game
  want: null, // { room, name, spectate } — the room we are in or going to
  reconnects: 0,
  intentionalClose: false,
  // In a room:
  params: null,
  room: null,
  me: null, // seat, or null when watching
  seats: new Map(), // slot → { name, bot, away, score, tick }
  it: null,
  immune: 0,
  latestTick: 0,
  prediction: null,
  prevOwn: null,
  interp: null,
  clock: null,
  acc: 0, // fraction of the current tick, for drawing one's own circle between ticks
  nextInput: null, // the server tick at which the next input is due
  firstMoveAt: null, // when the first input with the stick off centre was sent (tests)
  lastFrame: 0,
  correction: { x: 0, y: 0 },
  sentAt: new Map(),
  rtt: null,
  connected: false,
};

const hook = { me: null, tick: 0, players: [], room: null, spectator: false, connected: false, rtt: null };
window.yamabikoGame = hook;
if (new URLSearchParams(location.search).has("debug")) window.yamabikoGameDebug = game;

const renderer = createRenderer($("arena"));

// ---------------------------------------------------------------- helpers

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text) {
  if (!/^[0-9a-f]{32}$/.test(text || "")) return null;
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const tokenKey = (room) => `yamabiko-game:token:${room}`;

function clip(text, max) {
  return Array.from(text.trim()).slice(0, max).join("");
}

function savedName() {
  return localStorage.getItem("yamabiko-game:name") || "";
}

function setStatus(state, text) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = text;
}

function banner(text, kind = "") {
  const el = $("banner");
  el.textContent = text;
  el.className = `show ${kind}`;
  clearTimeout(banner.timer);
  banner.timer = setTimeout(() => {
    el.className = "";
  }, 2200);
}

function showView(view) {
  game.view = view;
  $("app").dataset.view = view;
  $("lobby").hidden = view !== "lobby";
  $("game").hidden = view !== "game";
  if (view === "game") requestAnimationFrame(() => renderer.resize(game.params));
}

// ---------------------------------------------------------------- socket

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  game.ws = ws;
  game.intentionalClose = false;
  setStatus("connecting", "Connecting…");
  ws.onopen = () => {
    game.connected = true;
    game.reconnects = 0;
    setStatus("open", "Live");
    if (game.want) sendJoin();
    else ws.send(proto.encodeLobby());
  };
  ws.onmessage = (ev) => {
    let msg;
    try {
      msg = proto.decodeServer(ev.data);
    } catch (e) {
      console.warn("bad message from the server", e);
      return;
    }
    onMessage(msg);
  };
  ws.onclose = (ev) => {
    game.connected = false;
    if (game.ws !== ws) return;
    game.ws = null;
    if (ev.code === proto.CLOSE.TAKEN_OVER) {
      setStatus("closed", "Playing in another tab");
      banner("This seat is now played in another tab or window.", "bad");
      game.want = null;
      return;
    }
    if (game.intentionalClose) return;
    const wait = Math.min(3000, 250 * 2 ** game.reconnects);
    game.reconnects += 1;
    setStatus("closed", game.want ? "Reconnecting… your seat is kept" : "Offline — retrying");
    setTimeout(connect, wait);
  };
}

function send(bytes) {
  if (game.ws && game.ws.readyState === WebSocket.OPEN) game.ws.send(bytes);
}

function sendJoin() {
  const { room, name, spectate } = game.want;
  const token = spectate ? null : unhex(sessionStorage.getItem(tokenKey(room)));
  send(proto.encodeJoin({ room, name, spectate, token }));
}

function onMessage(msg) {
  switch (msg.type) {
    case "lobby":
      renderLobby(msg.rooms);
      break;
    case "notice":
      $("lobby-error").textContent = msg.text;
      game.want = null;
      showView("lobby");
      history.replaceState(null, "", "/");
      send(proto.encodeLobby());
      break;
    case "welcome":
      onWelcome(msg);
      break;
    case "snapshot":
      onSnapshot(msg);
      break;
    case "joined":
      game.seats.set(msg.seat.slot, { ...msg.seat });
      renderScores();
      break;
    case "left":
      game.seats.delete(msg.slot);
      renderScores();
      break;
    case "presence": {
      const s = game.seats.get(msg.slot);
      if (s) Object.assign(s, { away: msg.away, score: msg.score, tick: msg.tick });
      renderScores();
      break;
    }
    case "tagged":
      onTagged(msg);
      break;
  }
}

function onWelcome(w) {
  game.params = w.params;
  game.room = w.room;
  game.me = w.you;
  game.it = w.it;
  game.latestTick = w.tick;
  game.seats = new Map(w.seats.map((s) => [s.slot, { ...s }]));
  game.prediction = w.you === null ? null : new Prediction(w.params);
  game.prevOwn = null;
  game.interp = new Interpolation();
  game.clock = new TickClock(w.params.tick_hz);
  game.correction = { x: 0, y: 0 };
  game.sentAt = new Map();
  game.acc = 0;
  game.nextInput = null;
  if (w.you !== null) sessionStorage.setItem(tokenKey(w.room), hex(w.token));
  $("room-name").textContent = w.room;
  $("role").textContent = w.you === null ? "watching" : "";
  showView("game");
  renderScores();
  if (w.you !== null) banner(game.it === w.you ? "You are 鬼 — catch someone!" : "Run! Don't let 鬼 touch you.", game.it === w.you ? "bad" : "");
}

function onSnapshot(s) {
  const now = performance.now();
  s.arrivedAt = now;
  if (!game.interp || !game.interp.push(s)) return;
  game.clock.observe(s.tick, now);
  game.latestTick = s.tick;
  game.it = s.it;
  game.immune = s.immune;
  if (game.prediction) {
    const mine = s.records.find((r) => r.slot === game.me);
    if (mine) {
      const fresh = game.prediction.state === null;
      const sent = game.sentAt.get(unwrapAck(mine.ack, game.prediction.seq));
      const jump = game.prediction.reconcile(mine);
      if (fresh) game.prevOwn = { ...game.prediction.state };
      if (jump.dx || jump.dy) {
        const far = Math.hypot(jump.dx, jump.dy) > game.params.radius * 4;
        game.correction = far ? { x: 0, y: 0 } : { x: game.correction.x - jump.dx, y: game.correction.y - jump.dy };
        if (far) game.prevOwn = { ...game.prediction.state };
      }
      if (sent !== undefined) {
        const sample = now - sent;
        game.rtt = game.rtt === null ? sample : game.rtt * 0.9 + sample * 0.1;
      }
      for (const seq of game.sentAt.keys()) if (seq <= game.prediction.acked) game.sentAt.delete(seq);
    }
  }
}

function onTagged(t) {
  for (const [slot, score] of [[t.tagger, t.tagger_score], [t.tagged, t.tagged_score]]) {
    const s = slot === null ? null : game.seats.get(slot);
    if (s) Object.assign(s, { score, tick: t.tick });
  }
  game.it = t.tagged;
  const name = (slot) => (slot === null ? "" : game.seats.get(slot)?.name ?? "?");
  const pos = game.interp?.sample(game.interp.latest()?.tick ?? 0).get(t.tagged);
  if (pos) renderer.burst(pos.x, pos.y, seatColor(t.tagged).hue);
  if (t.tagged === game.me) {
    banner(t.tagger === null ? "You are 鬼 now — catch someone!" : `${name(t.tagger)} caught you — you're 鬼!`, "bad");
    renderer.flashScreen();
    renderer.bump(1);
  } else if (t.tagger === game.me && t.tagger !== null) {
    banner(`You caught ${name(t.tagged)}! Run!`, "good");
    renderer.bump(0.5);
  } else if (t.tagger === null) {
    banner(`${name(t.tagged)} is 鬼 now`);
  } else {
    banner(`${name(t.tagger)} caught ${name(t.tagged)}`);
  }
  renderScores();
}

/** A seat's score in ticks at `tick`: it grows for everyone neither 鬼 nor away. */
function scoreAt(slot, tick) {
  const s = game.seats.get(slot);
  if (!s) return 0;
  const accrues = !s.away && game.it !== slot;
  return s.score + (accrues ? Math.max(0, tick - s.tick) : 0);
}

// ---------------------------------------------------------------- input

const keys = new Set();
const stick = { active: false, id: null, ox: 0, oy: 0, dx: 0, dy: 0 };

/** The stick in arena directions, -127..127 (keys and the touch stick are screen
 *  directions; the arena may be drawn turned on a tall screen). */
function currentStick() {
  if (stick.active) return renderer.toArena(stick.dx, stick.dy);
  let x = 0;
  let y = 0;
  if (keys.has("ArrowLeft") || keys.has("KeyA")) x -= 1;
  if (keys.has("ArrowRight") || keys.has("KeyD")) x += 1;
  if (keys.has("ArrowUp") || keys.has("KeyW")) y -= 1;
  if (keys.has("ArrowDown") || keys.has("KeyS")) y += 1;
  return renderer.toArena(x * 127, y * 127);
}

const MOVE_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "KeyA", "KeyD", "KeyW", "KeyS"]);

window.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement) return;
  if (MOVE_KEYS.has(e.code)) {
    keys.add(e.code);
    if (game.view === "game") e.preventDefault();
  }
});
window.addEventListener("keyup", (e) => keys.delete(e.code));
window.addEventListener("blur", () => keys.clear());

const stage = $("stage");
stage.addEventListener("pointerdown", (e) => {
  if (stick.active) return;
  stick.active = true;
  stick.id = e.pointerId;
  stick.ox = e.clientX;
  stick.oy = e.clientY;
  stick.dx = stick.dy = 0;
  stage.setPointerCapture?.(e.pointerId);
  const rect = stage.getBoundingClientRect();
  const el = $("stick");
  el.style.left = `${e.clientX - rect.left}px`;
  el.style.top = `${e.clientY - rect.top}px`;
  el.hidden = false;
  moveKnob(0, 0);
  e.preventDefault();
});
stage.addEventListener("pointermove", (e) => {
  if (!stick.active || e.pointerId !== stick.id) return;
  const R = 56;
  let vx = e.clientX - stick.ox;
  let vy = e.clientY - stick.oy;
  const len = Math.hypot(vx, vy);
  if (len > R) {
    vx = (vx / len) * R;
    vy = (vy / len) * R;
  }
  // A small dead zone, then full range.
  const m = Math.min(1, Math.max(0, (Math.min(len, R) - 6) / (R - 6)));
  stick.dx = len > 0 ? Math.round((vx / Math.max(len, 1e-6)) * 127 * m) : 0;
  stick.dy = len > 0 ? Math.round((vy / Math.max(len, 1e-6)) * 127 * m) : 0;
  moveKnob(vx, vy);
  e.preventDefault();
});
function endStick(e) {
  if (!stick.active || e.pointerId !== stick.id) return;
  stick.active = false;
  stick.dx = stick.dy = 0;
  $("stick").hidden = true;
}
stage.addEventListener("pointerup", endStick);
stage.addEventListener("pointercancel", endStick);

function moveKnob(x, y) {
  $("knob").style.transform = `translate(${x}px, ${y}px)`;
}

// ---------------------------------------------------------------- lobby

function renderLobby(rooms) {
  const list = $("rooms");
  list.replaceChildren();
  const all = [...rooms];
  if (!all.some((r) => r.name === DEFAULT_ROOM)) all.push({ name: DEFAULT_ROOM, players: 0, bots: 0, spectators: 0 });
  for (const r of all) {
    const li = document.createElement("li");
    li.className = "room";
    const people = r.players - r.bots;
    const title = document.createElement("span");
    title.className = "room-name";
    title.textContent = r.name;
    const meta = document.createElement("span");
    meta.className = "room-meta";
    meta.textContent = `${people} ${people === 1 ? "person" : "people"} · ${r.bots} bots${r.spectators ? ` · ${r.spectators} watching` : ""}`;
    const dots = document.createElement("span");
    dots.className = "dots";
    for (let i = 0; i < 16; i++) {
      const d = document.createElement("i");
      d.className = i < people ? "p" : i < r.players ? "b" : "";
      dots.append(d);
    }
    const play = document.createElement("button");
    play.textContent = "Join";
    play.className = "primary small";
    play.disabled = people >= 16;
    play.addEventListener("click", () => enter(r.name, false));
    const watch = document.createElement("button");
    watch.textContent = "Watch";
    watch.className = "small";
    watch.addEventListener("click", () => enter(r.name, true));
    const text = document.createElement("span");
    text.className = "room-text";
    text.append(title, meta);
    li.append(text, dots, play, watch);
    list.append(li);
  }
}

function enter(room, spectate) {
  room = clip(room || DEFAULT_ROOM, MAX_ROOM) || DEFAULT_ROOM;
  const name = clip($("name").value || savedName(), MAX_NAME);
  if (name) localStorage.setItem("yamabiko-game:name", name);
  $("lobby-error").textContent = "";
  game.want = { room, name, spectate };
  const url = `/?room=${encodeURIComponent(room)}${spectate ? "&watch=1" : ""}`;
  history.pushState(null, "", url);
  if (game.ws && game.ws.readyState === WebSocket.OPEN) sendJoin();
}

function leave() {
  if (game.want && !game.want.spectate) sessionStorage.removeItem(tokenKey(game.want.room));
  game.want = null;
  game.me = null;
  game.prediction = null;
  send(proto.encodeLeave());
  send(proto.encodeLobby());
  history.pushState(null, "", "/");
  showView("lobby");
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  enter($("room").value, false);
});
$("watch").addEventListener("click", () => enter($("room").value, true));
$("leave").addEventListener("click", leave);
$("share").addEventListener("click", async () => {
  const link = `${location.origin}/?room=${encodeURIComponent(game.room || "")}`;
  try {
    await navigator.clipboard.writeText(link);
    banner("Link copied — send it to a friend", "good");
  } catch {
    banner(link);
  }
});
window.addEventListener("popstate", () => {
  if (location.search === "" && game.want) leave();
});
window.addEventListener("resize", () => renderer.resize(game.params));

// ---------------------------------------------------------------- scores

function renderScores() {
  const list = $("scores");
  const tick = game.latestTick;
  const hz = game.params ? game.params.tick_hz : 30;
  const rows = [...game.seats.entries()].map(([slot, s]) => ({ slot, s, score: scoreAt(slot, tick) }));
  rows.sort((a, b) => b.score - a.score || a.slot - b.slot);
  list.replaceChildren();
  for (const { slot, s, score } of rows) {
    const li = document.createElement("li");
    li.className = [slot === game.me ? "me" : "", game.it === slot ? "it" : "", s.away ? "away" : ""].join(" ").trim();
    const dot = document.createElement("i");
    dot.style.background = game.it === slot ? "#e0213a" : seatColor(slot).fill;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = s.name;
    if (s.bot) {
      const b = document.createElement("small");
      b.textContent = "bot";
      name.append(" ", b);
    }
    const sc = document.createElement("span");
    sc.className = "score";
    sc.textContent = `${Math.floor(score / hz)}s`;
    li.append(dot, name, sc);
    if (game.it === slot) {
      const oni = document.createElement("b");
      oni.className = "oni-mark";
      oni.textContent = "鬼";
      li.append(oni);
    }
    list.append(li);
  }
}

// ---------------------------------------------------------------- the loop

function clientTick(now) {
  const p = game.prediction;
  if (!p || p.state === null || !game.connected) return;
  const [dx, dy] = currentStick();
  const view = game.clock.now(now) - game.clock.delay();
  game.prevOwn = { ...p.state };
  const input = p.apply(dx, dy, game.it === game.me, view);
  game.sentAt.set(input.seq, now);
  if ((dx || dy) && game.firstMoveAt === null) game.firstMoveAt = now;
  send(proto.encodeInput(input));
}

function frame(now) {
  requestAnimationFrame(frame);
  if (game.view !== "game" || !game.params) {
    game.lastFrame = now;
    return;
  }
  const hz = game.params.tick_hz;
  const dt = game.lastFrame ? now - game.lastFrame : 0;
  game.lastFrame = now;
  // One input per server tick, paced by the server's clock as seen in its snapshots
  // (not by this machine's): over time the page sends exactly as many inputs as the
  // server applies, so none queue up on the server and add delay.
  const serverNow = game.clock.now(now);
  if (game.nextInput === null || serverNow - game.nextInput > 4) {
    // First input, or back from a hidden tab: start from now, do not rush.
    game.nextInput = Math.floor(serverNow) + 1;
  }
  for (let n = 0; n < 4 && serverNow >= game.nextInput; n++) {
    clientTick(now);
    game.nextInput += 1;
  }
  game.acc = Math.min(1, Math.max(0, serverNow - (game.nextInput - 1)));
  // Corrections fade out over ~100 ms.
  const fade = Math.exp(-dt / 60);
  game.correction.x *= fade;
  game.correction.y *= fade;

  const renderTick = game.clock.now(now) - game.clock.delay();
  const others = game.interp.sample(renderTick);
  const latest = game.interp.latest();
  const players = [];
  let mePos = null;
  for (const [slot, seat] of game.seats) {
    let pos;
    let vx = 0;
    let vy = 0;
    if (slot === game.me && game.prediction && game.prediction.state) {
      const cur = game.prediction.state;
      const prev = game.prevOwn || cur;
      const a = Math.min(1, game.acc);
      pos = { x: prev.x + (cur.x - prev.x) * a + game.correction.x, y: prev.y + (cur.y - prev.y) * a + game.correction.y, away: false };
      vx = cur.vx;
      vy = cur.vy;
      mePos = pos;
    } else {
      pos = others.get(slot);
      if (!pos) continue;
      const rec = latest?.records.find((r) => r.slot === slot);
      if (rec) {
        vx = rec.vx;
        vy = rec.vy;
      }
    }
    // Away as the roster says (events come before the snapshots that show it).
    players.push({ slot, x: pos.x, y: pos.y, vx, vy, name: seat.name, it: game.it === slot, me: slot === game.me, away: seat.away });
  }
  let danger = 0;
  if (mePos && game.it !== game.me && game.it !== null) {
    const it = players.find((q) => q.slot === game.it);
    if (it) {
      const d = Math.hypot(it.x - mePos.x, it.y - mePos.y) / SUBUNITS;
      danger = Math.max(0, Math.min(1, (260 - d) / 200));
    }
  }
  const immuneFrac = game.params.immune_ticks ? Math.min(1, game.immune / game.params.immune_ticks) : 0;
  renderer.draw({ params: game.params, players, immuneFrac, danger }, now);

  hook.me = game.me;
  hook.tick = Math.max(0, Math.floor(renderTick));
  hook.room = game.room;
  hook.spectator = game.me === null;
  hook.connected = game.connected;
  hook.rtt = game.rtt === null ? null : Math.round(game.rtt);
  hook.players = players.map((q) => ({
    id: q.slot,
    name: q.name,
    x: q.x / SUBUNITS,
    y: q.y / SUBUNITS,
    it: q.it,
    score: Math.floor((scoreAt(q.slot, game.latestTick) * 10) / hz) / 10,
    away: q.away,
  }));

  // The HUD, a few times a second.
  if (!frame.hudAt || now - frame.hudAt > 250) {
    frame.hudAt = now;
    renderScores();
    $("ping").textContent = game.rtt === null ? "" : `${Math.round(game.rtt)} ms`;
    const itSeat = game.seats.get(game.it);
    $("it-name").textContent = game.it === game.me && game.me !== null ? "You!" : itSeat ? itSeat.name : "—";
    $("game").classList.toggle("i-am-it", game.it === game.me && game.me !== null);
  }
}

// ---------------------------------------------------------------- start

function start() {
  const q = new URLSearchParams(location.search);
  const name = clip(q.get("name") || savedName(), MAX_NAME);
  $("name").value = name;
  if (q.get("name")) localStorage.setItem("yamabiko-game:name", name);
  const room = q.get("room");
  if (room) {
    const clean = clip(room, MAX_ROOM);
    $("room").value = clean;
    game.want = { room: clean || DEFAULT_ROOM, name, spectate: q.has("watch") };
  }
  showView("lobby");
  connect();
  requestAnimationFrame(frame);
}

start();
