// The game's rules in the page: the same integer arithmetic as the server's
// `step` (yamabiko-game/src/sim/step.rs), operation for operation. The page uses
// movePlayer to predict its own circle; step, the whole tick, is here so the shared
// vectors can check every part of it (tests/js/sim.test.mjs). No DOM: an ES module
// that node imports as well as the browser.
//
// Every intermediate value is an integer far below 2^53, so JavaScript's doubles
// compute exactly what Rust's integers do; division truncates toward zero like
// Rust's, and `+ 0` turns a -0 into 0.

export const MAX_PLAYERS = 16;
export const INPUT_MAX = 127;
export const COLLISION_PASSES = 32;
export const SUBUNITS = 8;

const tdiv = (a, b) => Math.trunc(a / b) + 0;
const clamp = (v, lo, hi) => (v < lo ? lo : v > hi ? hi : v);

/** The largest r with r*r <= n. */
export function isqrt(n) {
  if (n <= 0) return 0;
  let r = Math.floor(Math.sqrt(n));
  while (r * r > n) r -= 1;
  while ((r + 1) * (r + 1) <= n) r += 1;
  return r;
}

/** The velocity a stick position asks for (see target_velocity in step.rs). */
export function targetVelocity(params, dx, dy, isIt) {
  dx = Math.max(dx, -INPUT_MAX);
  dy = Math.max(dy, -INPUT_MAX);
  const len2 = dx * dx + dy * dy;
  if (len2 > INPUT_MAX * INPUT_MAX) {
    const len = isqrt(len2);
    dx = tdiv(dx * INPUT_MAX, len);
    dy = tdiv(dy * INPUT_MAX, len);
  }
  const speed = isIt ? params.it_speed : params.max_speed;
  return [tdiv(dx * speed, INPUT_MAX), tdiv(dy * speed, INPUT_MAX)];
}

/**
 * One movement step of one circle, in place: p = { x, y, vx, vy }. The whole of the
 * page's prediction.
 */
export function movePlayer(params, p, dx, dy, isIt) {
  const [tx, ty] = targetVelocity(params, dx, dy, isIt);
  p.vx += clamp(tx - p.vx, -params.accel, params.accel);
  p.vy += clamp(ty - p.vy, -params.accel, params.accel);
  p.x += p.vx;
  p.y += p.vy;
  const r = params.radius;
  if (p.x < r) {
    p.x = r;
    p.vx = Math.max(p.vx, 0);
  } else if (p.x > params.width - r) {
    p.x = params.width - r;
    p.vx = Math.min(p.vx, 0);
  }
  if (p.y < r) {
    p.y = r;
    p.vy = Math.max(p.vy, 0);
  } else if (p.y > params.height - r) {
    p.y = params.height - r;
    p.vy = Math.min(p.vy, 0);
  }
  return p;
}

const dist2 = (ax, ay, bx, by) => (ax - bx) * (ax - bx) + (ay - by) * (ay - by);

/** An empty room at tick 0. */
export function newState() {
  return {
    tick: 0,
    players: new Array(MAX_PLAYERS).fill(null),
    it: null,
    immune_until: 0,
    last_tag: null,
    history: [],
  };
}

function cloneState(s) {
  return {
    tick: s.tick,
    players: s.players.map((p) => (p ? { ...p } : null)),
    it: s.it,
    immune_until: s.immune_until,
    last_tag: s.last_tag,
    history: s.history.slice(),
  };
}

/** Seats a player at rest (State::add). */
export function addPlayer(state, slot, x, y) {
  state.players[slot] = { x, y, vx: 0, vy: 0, score: 0, ack: 0, away: false };
}

/** Marks a player away or back (State::set_away). */
export function setAway(state, slot, away) {
  const p = state.players[slot];
  if (!p) return;
  p.away = away;
  p.vx = 0;
  p.vy = 0;
  if (!away) p.ack = 0;
}

function chooseIt(params, s) {
  if (s.it !== null) {
    const cur = s.players[s.it];
    if (cur && !cur.away) return;
  }
  const from = s.it !== null ? s.players[s.it] : null;
  let best = null;
  for (let slot = 0; slot < MAX_PLAYERS; slot++) {
    const p = s.players[slot];
    if (!p || p.away) continue;
    const key = from ? dist2(from.x, from.y, p.x, p.y) : slot;
    if (best === null || key < best[0]) best = [key, slot];
  }
  s.it = best ? best[1] : null;
  if (s.it !== null) {
    s.immune_until = s.tick + params.immune_ticks;
    s.last_tag = { tick: s.tick, tagger: null, tagged: s.it };
  }
}

function positionAt(s, tick, slot) {
  for (const h of s.history) if (h.tick === tick) return h.frame[slot];
  return null;
}

function touchedBy(params, s, it, viewTick) {
  const me = s.players[it];
  if (!me) return null;
  const reach = 2 * params.radius + params.touch;
  const reach2 = reach * reach;
  let seen = null;
  if (viewTick[it] !== null) {
    const v = Math.max(viewTick[it], Math.max(0, s.tick - params.rewind_ticks));
    if (v < s.tick) seen = v;
  }
  let best = null;
  for (let slot = 0; slot < MAX_PLAYERS; slot++) {
    const p = s.players[slot];
    if (!p || slot === it || p.away) continue;
    let d2 = dist2(me.x, me.y, p.x, p.y);
    if (seen !== null) {
      const then = positionAt(s, seen, slot);
      if (then) d2 = Math.min(d2, dist2(me.x, me.y, then[0], then[1]));
    }
    if (d2 <= reach2 && (best === null || d2 < best[0])) best = [d2, slot];
  }
  return best ? best[1] : null;
}

function divAwayFromZero(a, b) {
  return a >= 0 ? tdiv(a + b - 1, b) : -tdiv(-a + b - 1, b);
}

function separate(a, b, m, r, size) {
  const lo = r;
  const hi = size - r;
  const wantA = a - m;
  let newA = clamp(wantA, lo, hi);
  const wantB = b + m + (newA - wantA);
  const newB = clamp(wantB, lo, hi);
  newA = clamp(newA + (newB - wantB), lo, hi);
  return [newA, newB];
}

function resolveCollisions(params, players) {
  const min = 2 * params.radius;
  for (let pass = 0; pass < COLLISION_PASSES; pass++) {
    let pushed = false;
    for (let i = 0; i < MAX_PLAYERS; i++) {
      for (let j = i + 1; j < MAX_PLAYERS; j++) {
        const a = players[i];
        const b = players[j];
        if (!a || !b) continue;
        const dx = b.x - a.x;
        const dy = b.y - a.y;
        const d2 = dx * dx + dy * dy;
        if (d2 >= min * min) continue;
        pushed = true;
        let nx = dx;
        let ny = dy;
        let dist;
        if (d2 === 0) {
          nx = 1;
          ny = 0;
          dist = 1;
        } else {
          dist = isqrt(d2);
        }
        const push = tdiv(min - dist, 2) + 1;
        const mx = divAwayFromZero(nx * push, dist);
        const my = divAwayFromZero(ny * push, dist);
        [a.x, b.x] = separate(a.x, b.x, mx, params.radius, params.width);
        [a.y, b.y] = separate(a.y, b.y, my, params.radius, params.height);
      }
    }
    if (!pushed) break;
  }
}

/**
 * One tick: returns the next state (the argument is not changed). inputs:
 * [{ slot, seq, dx, dy, view_tick }] in arrival order.
 */
export function step(params, state, inputs) {
  const s = cloneState(state);
  const tick = s.tick + 1;
  s.tick = tick;
  s.last_tag = null;

  const viewTick = new Array(MAX_PLAYERS).fill(null);
  for (const c of inputs) {
    const p = s.players[c.slot];
    if (!p || p.away) continue;
    movePlayer(params, p, c.dx, c.dy, s.it === c.slot);
    p.ack = c.seq;
    viewTick[c.slot] = c.view_tick;
  }

  chooseIt(params, s);

  if (s.it !== null && tick >= s.immune_until) {
    const tagged = touchedBy(params, s, s.it, viewTick);
    if (tagged !== null) {
      s.last_tag = { tick, tagger: s.it, tagged };
      s.it = tagged;
      s.immune_until = tick + params.immune_ticks;
    }
  }

  resolveCollisions(params, s.players);

  for (let slot = 0; slot < MAX_PLAYERS; slot++) {
    const p = s.players[slot];
    if (p && !p.away && s.it !== slot) p.score += 1;
  }

  s.history.push({ tick, frame: s.players.map((p) => (p ? [p.x, p.y] : null)) });
  while (s.history.length > params.rewind_ticks + 1) s.history.shift();
  return s;
}
