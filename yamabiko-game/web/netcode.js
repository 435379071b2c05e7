// Netcode of the page, without the DOM (node tests import it):
//
// * Prediction — one's own circle moves the moment a key is pressed: every input is
//   applied locally with the server's own arithmetic (sim.js) and remembered; when a
//   snapshot acknowledges input n, the inputs up to n are forgotten and, if the
//   server's position differs from what was predicted for n, the remembered inputs
//   after n are replayed from the server's position (reconciliation).
// * Interpolation — the others are drawn a little in the past, between the two
//   snapshots around the render time, so they move smoothly at 30 ticks a second.
// * TickClock — the server's current tick, estimated from snapshot arrivals (the
//   render time is that minus a delay that grows with the jitter seen).

import { movePlayer } from "./sim.js";

/** The full sequence number whose low 8 bits are `ack8`, at most `latest`. */
export function unwrapAck(ack8, latest) {
  return latest - ((latest - ack8) & 0xff);
}

export class Prediction {
  constructor(params) {
    this.params = params;
    this.seq = 0;
    this.pending = []; // [{ seq, dx, dy, isIt, after: {x, y, vx, vy} }]
    this.state = null; // { x, y, vx, vy } after the last input
    this.acked = 0;
    this.corrections = 0;
  }

  /** Starts over from a server record (after a welcome; sequence numbers restart). */
  reset(record) {
    this.seq = 0;
    this.acked = 0;
    this.pending = [];
    this.state = { x: record.x, y: record.y, vx: record.vx, vy: record.vy };
  }

  /** Applies one tick of stick locally; returns the input to send. */
  apply(dx, dy, isIt, viewTick) {
    this.seq += 1;
    movePlayer(this.params, this.state, dx, dy, isIt);
    this.pending.push({ seq: this.seq, dx, dy, isIt, after: { ...this.state } });
    // Never more than 255 unacknowledged: the ack on the wire is 8 bits.
    if (this.pending.length > 240) this.pending.shift();
    return { seq: this.seq, dx, dy, view_tick: Math.max(0, Math.floor(viewTick)) >>> 0 };
  }

  /**
   * Takes the server's word for the circle after input `ack` (low 8 bits from the
   * snapshot). Returns the jump of the predicted position, { dx, dy } (0, 0 when the
   * prediction was right).
   */
  reconcile(record) {
    if (!this.state) {
      this.reset(record);
      return { dx: 0, dy: 0 };
    }
    const ack = unwrapAck(record.ack, this.seq);
    if (ack < this.acked) return { dx: 0, dy: 0 }; // an older snapshot
    this.acked = ack;
    const predicted = this.pending.find((p) => p.seq === ack);
    this.pending = this.pending.filter((p) => p.seq > ack);
    const server = { x: record.x, y: record.y, vx: record.vx, vy: record.vy };
    if (predicted && sameBody(predicted.after, server)) return { dx: 0, dy: 0 };
    // Mispredicted (pushed, tagged, or an input was lost): replay from the server.
    const before = this.state;
    const s = { ...server };
    for (const p of this.pending) {
      movePlayer(this.params, s, p.dx, p.dy, p.isIt);
      p.after = { ...s };
    }
    this.state = s;
    const jump = { dx: s.x - before.x, dy: s.y - before.y };
    if (jump.dx || jump.dy) this.corrections += 1;
    return jump;
  }
}

function sameBody(a, b) {
  return a.x === b.x && a.y === b.y && a.vx === b.vx && a.vy === b.vy;
}

/** Snapshots kept for interpolation. */
const KEEP = 32;

export class Interpolation {
  constructor() {
    this.snaps = []; // snapshot objects, by tick
  }

  push(snap) {
    const last = this.snaps[this.snaps.length - 1];
    if (last && snap.tick <= last.tick) return false;
    this.snaps.push(snap);
    if (this.snaps.length > KEEP) this.snaps.shift();
    return true;
  }

  latest() {
    return this.snaps[this.snaps.length - 1] || null;
  }

  /**
   * Positions at fractional tick `t`: Map slot → { x, y, away }, between the two
   * snapshots around t (held at the ends: never guessed beyond the newest).
   */
  sample(t) {
    const out = new Map();
    const n = this.snaps.length;
    if (n === 0) return out;
    let a = this.snaps[0];
    let b = a;
    if (t >= this.snaps[n - 1].tick) {
      a = b = this.snaps[n - 1];
    } else if (t > a.tick) {
      for (let i = 1; i < n; i++) {
        if (this.snaps[i].tick >= t) {
          a = this.snaps[i - 1];
          b = this.snaps[i];
          break;
        }
      }
    }
    const f = b.tick === a.tick ? 0 : (t - a.tick) / (b.tick - a.tick);
    const from = new Map(a.records.map((r) => [r.slot, r]));
    for (const r of b.records) {
      const p = from.get(r.slot);
      if (p) out.set(r.slot, { x: p.x + (r.x - p.x) * f, y: p.y + (r.y - p.y) * f, away: r.away });
      else out.set(r.slot, { x: r.x, y: r.y, away: r.away });
    }
    return out;
  }
}

export class TickClock {
  constructor(hz) {
    this.hz = hz;
    this.offset = null; // server tick minus local time in ticks, from the fastest arrivals
    this.jitter = 0; // ticks, smoothed mean deviation
  }

  observe(tick, nowMs) {
    const local = (nowMs * this.hz) / 1000;
    const o = tick - local;
    if (this.offset === null) {
      this.offset = o;
      return;
    }
    // Follow the fastest arrival at once, drift back slowly (0.05 tick per snapshot)
    // so a clock that runs apart is still tracked.
    const dev = this.offset - o;
    this.jitter += (Math.abs(dev) - this.jitter) * 0.05;
    this.offset = Math.max(o, this.offset - 0.05);
  }

  /** The server's tick now (fractional). */
  now(nowMs) {
    return this.offset === null ? 0 : (nowMs * this.hz) / 1000 + this.offset;
  }

  /** How far in the past to draw the others, in ticks. */
  delay() {
    return Math.min(6, Math.max(1.5, 1.2 + 2 * this.jitter));
  }
}
