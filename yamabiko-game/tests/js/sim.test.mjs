// The page's simulation (web/sim.js) against the vectors the server's simulation
// wrote (tests/vectors/sim.json, kept current by the Rust test `vectors`):
// the prediction of one's own circle, and whole ticks of whole rooms, must agree
// with the server to the sub-unit on every step.
//
//   node --test yamabiko-game/tests/js/

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { movePlayer, step, newState, setAway, isqrt } from "../../web/sim.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const vectors = JSON.parse(readFileSync(path.join(here, "../vectors/sim.json"), "utf8"));

test("vector file version", () => {
  assert.equal(vectors.version, 1);
  assert.ok(vectors.prediction.length >= 10);
  assert.ok(vectors.step.length >= 4);
});

test("isqrt is exact", () => {
  for (let n = 0; n < 200000; n++) {
    const r = isqrt(n);
    assert.ok(r * r <= n && (r + 1) * (r + 1) > n, `isqrt(${n}) = ${r}`);
  }
});

for (const c of vectors.prediction) {
  test(`prediction: ${c.name}`, () => {
    const [x, y, vx, vy] = c.start;
    const p = { x, y, vx, vy };
    c.inputs.forEach(([dx, dy], i) => {
      movePlayer(c.params, p, dx, dy, c.is_it);
      assert.deepEqual([p.x, p.y, p.vx, p.vy], c.states[i], `after input ${i + 1} (${dx}, ${dy})`);
    });
  });
}

/** The vector form of a state (history left out, as the server writes it). */
function vectorOf(s) {
  return {
    tick: s.tick,
    it: s.it,
    immune_until: s.immune_until,
    last_tag: s.last_tag ? [s.last_tag.tick, s.last_tag.tagger, s.last_tag.tagged] : null,
    players: s.players.map((p) => (p ? [p.x, p.y, p.vx, p.vy, p.score, p.ack, p.away ? 1 : 0] : null)),
  };
}

function fromVector(v) {
  const s = newState();
  s.tick = v.tick;
  s.it = v.it;
  s.immune_until = v.immune_until;
  s.players = v.players.map((p) =>
    p ? { x: p[0], y: p[1], vx: p[2], vy: p[3], score: p[4], ack: p[5], away: p[6] === 1 } : null);
  return s;
}

for (const c of vectors.step) {
  test(`step: ${c.name}`, () => {
    let s = fromVector(c.start);
    let tags = 0;
    c.ticks.forEach((t, i) => {
      for (const [slot, away] of t.roster) setAway(s, slot, away === 1);
      const inputs = t.inputs.map(([slot, seq, dx, dy, view_tick]) => ({ slot, seq, dx, dy, view_tick }));
      const before = JSON.stringify(vectorOf(s));
      const next = step(c.params, s, inputs);
      assert.equal(JSON.stringify(vectorOf(s)), before, "step does not change its argument");
      s = next;
      assert.deepEqual(vectorOf(s), t.state, `tick ${i + 1}`);
      if (s.last_tag && s.last_tag.tagger !== null) tags += 1;
    });
    if (/^chase|tagged$/.test(c.name)) assert.ok(tags > 0, "the case exercises tagging");
    if (/beyond the rewind$/.test(c.name)) assert.equal(tags, 0, "no tag beyond the rewind");
  });
}
