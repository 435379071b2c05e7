// The page's netcode (web/netcode.js): prediction with reconciliation, replayed
// against the server's own states from the shared vectors, plus interpolation and
// the server clock estimate.
//
//   node --test yamabiko-game/tests/js/

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Prediction, Interpolation, TickClock, unwrapAck } from "../../web/netcode.js";
import { movePlayer } from "../../web/sim.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const vectors = JSON.parse(readFileSync(path.join(here, "../vectors/sim.json"), "utf8"));

test("unwrapAck finds the full sequence number", () => {
  assert.equal(unwrapAck(5, 5), 5);
  assert.equal(unwrapAck(250, 260), 250);
  assert.equal(unwrapAck(3, 260), 259);
  assert.equal(unwrapAck(4, 260), 260);
  assert.equal(unwrapAck(0, 0), 0);
});

for (const c of vectors.prediction) {
  test(`reconciling against the server's states never corrects: ${c.name}`, () => {
    const [x, y, vx, vy] = c.start;
    const p = new Prediction(c.params);
    p.reset({ x, y, vx, vy, ack: 0 });
    // The server answers each input `lag` inputs later, with its own state.
    const lag = 4;
    c.inputs.forEach(([dx, dy], i) => {
      const sent = p.apply(dx, dy, c.is_it, 0);
      assert.equal(sent.seq, i + 1);
      const answered = i + 1 - lag;
      if (answered >= 1) {
        const [sx, sy, svx, svy] = c.states[answered - 1];
        const jump = p.reconcile({ x: sx, y: sy, vx: svx, vy: svy, ack: answered & 0xff });
        assert.deepEqual(jump, { dx: 0, dy: 0 }, `input ${answered}`);
      }
      const [ex, ey, evx, evy] = c.states[i];
      assert.deepEqual(p.state, { x: ex, y: ey, vx: evx, vy: evy }, `predicted after input ${i + 1}`);
    });
    assert.equal(p.corrections, 0);
  });
}

test("a mispredicted input is corrected by replaying the rest from the server", () => {
  const c = vectors.prediction[0];
  const params = c.params;
  const p = new Prediction(params);
  p.reset({ x: 4000, y: 3000, vx: 0, vy: 0, ack: 0 });
  for (let i = 0; i < 10; i++) p.apply(127, 0, false, 0);
  // The server says that after input 6 the circle was pushed 100 sub-units down.
  const truth = { x: 4000, y: 3000, vx: 0, vy: 0 };
  for (let i = 0; i < 6; i++) movePlayer(params, truth, 127, 0, false);
  truth.y += 100;
  const before = { ...p.state };
  const jump = p.reconcile({ ...truth, ack: 6 });
  for (let i = 0; i < 4; i++) movePlayer(params, truth, 127, 0, false);
  assert.deepEqual(p.state, truth);
  assert.deepEqual(jump, { dx: truth.x - before.x, dy: truth.y - before.y });
  assert.equal(p.pending.length, 4);
  assert.equal(p.corrections, 1);
  // An older snapshot changes nothing.
  assert.deepEqual(p.reconcile({ x: 0, y: 0, vx: 0, vy: 0, ack: 5 }), { dx: 0, dy: 0 });
  assert.deepEqual(p.state, truth);
});

test("interpolation: between snapshots, held at the newest, new seats appear", () => {
  const it = new Interpolation();
  const snap = (tick, records) => ({ tick, records });
  assert.equal(it.push(snap(10, [{ slot: 1, x: 0, y: 0, away: false }])), true);
  assert.equal(it.push(snap(12, [{ slot: 1, x: 100, y: 50, away: false }, { slot: 2, x: 7, y: 7, away: true }])), true);
  assert.equal(it.push(snap(11, [])), false, "older than the newest: ignored");
  assert.deepEqual(it.sample(11).get(1), { x: 50, y: 25, away: false });
  assert.deepEqual(it.sample(11).get(2), { x: 7, y: 7, away: true });
  assert.deepEqual(it.sample(20).get(1), { x: 100, y: 50, away: false });
  assert.deepEqual(it.sample(3).get(1), { x: 0, y: 0, away: false });
  for (let t = 13; t < 60; t++) it.push(snap(t, []));
  assert.ok(it.snaps.length <= 32, "bounded");
});

test("the tick clock follows the fastest arrivals and widens the delay with jitter", () => {
  const clock = new TickClock(30);
  const period = 1000 / 30;
  // Snapshots leave every tick; arrivals take 5 ms plus 0–2 ms.
  for (let t = 100; t < 400; t++) clock.observe(t, (t - 100) * period + 5 + (t % 3));
  const at = 299 * period + 5;
  assert.ok(Math.abs(clock.now(at) - 399) < 0.3, `${clock.now(at)}`);
  const calm = clock.delay();
  assert.ok(calm >= 1.5 && calm < 2, `${calm}`);
  // Now arrivals spread over 0–60 ms.
  for (let t = 400; t < 700; t++) clock.observe(t, (t - 100) * period + 5 + ((t * 37) % 60));
  assert.ok(clock.delay() > calm, `${clock.delay()}`);
  assert.ok(clock.delay() <= 6);
});
