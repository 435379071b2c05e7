// The page's codec (web/protocol.js) against bytes the server's codec wrote
// (tests/vectors/sim.json, "protocol"): every server message decodes to the expected
// object, every page message encodes to the expected bytes, and malformed input is a
// DecodeError, never a crash.
//
//   node --test yamabiko-game/tests/js/

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import * as proto from "../../web/protocol.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const vectors = JSON.parse(readFileSync(path.join(here, "../vectors/sim.json"), "utf8")).protocol;

const unhex = (h) => Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16)));
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
/** Uint8Arrays as plain arrays, for comparison with JSON. */
const plain = (v) => JSON.parse(JSON.stringify(v, (_, x) => (x instanceof Uint8Array ? Array.from(x) : x)));

for (const { hex: h, msg } of vectors.server) {
  test(`decodes ${msg.type}`, () => {
    assert.deepEqual(plain(proto.decodeServer(unhex(h))), msg);
    // Also from an ArrayBuffer, as a WebSocket hands it over.
    assert.deepEqual(plain(proto.decodeServer(unhex(h).buffer)), msg);
  });
  test(`truncated or extended ${msg.type} is a DecodeError`, () => {
    const bytes = unhex(h);
    for (let cut = 0; cut < bytes.length; cut++) {
      assert.throws(() => proto.decodeServer(bytes.subarray(0, cut)), proto.DecodeError, `cut at ${cut}`);
    }
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    assert.throws(() => proto.decodeServer(longer), proto.DecodeError);
  });
}

for (const { hex: h, msg } of vectors.client) {
  test(`encodes ${msg.kind}`, () => {
    let bytes;
    switch (msg.kind) {
      case "lobby": bytes = proto.encodeLobby(); break;
      case "leave": bytes = proto.encodeLeave(); break;
      case "join": bytes = proto.encodeJoin({ ...msg, token: msg.token && Uint8Array.from(msg.token) }); break;
      case "input": bytes = proto.encodeInput(msg); break;
    }
    assert.equal(hex(bytes), h);
  });
}

test("garbage is a DecodeError", () => {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (let i = 0; i < 2000; i++) {
    const bytes = Uint8Array.from({ length: next() % 40 }, next);
    if (bytes.length) bytes[0] = 0x81 + (next() % 8);
    try {
      proto.decodeServer(bytes);
    } catch (e) {
      assert.ok(e instanceof proto.DecodeError, String(e));
    }
  }
});

test("a name too long for the wire is cut at a character boundary", () => {
  const bytes = proto.encodeJoin({ room: "r", name: "あ".repeat(30) });
  const nameLen = bytes[3 + 1 + 1];
  assert.ok(nameLen <= 64 && nameLen % 3 === 0, `${nameLen} bytes`);
});
