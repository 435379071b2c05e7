// The game's binary protocol in the page (docs/game.md; the server's side is
// yamabiko-game/src/protocol/). Little-endian; the first byte names the message.
// No DOM: an ES module node imports too (tests/js/protocol.test.mjs checks it against
// bytes the server's codec wrote).

export const VERSION = 1;

export const LOBBY = 0x01;
export const JOIN = 0x02;
export const LEAVE = 0x03;
export const INPUT = 0x04;

export const WELCOME = 0x81;
export const SNAPSHOT = 0x82;
export const JOINED = 0x83;
export const LEFT = 0x84;
export const TAGGED = 0x85;
export const PRESENCE = 0x86;
export const LOBBY_LIST = 0x87;
export const NOTICE = 0x88;

export const CLOSE = {
  GOING_AWAY: 1001,
  TEXT_NOT_ACCEPTED: 1003,
  INVALID_TEXT: 1007,
  TOO_SLOW: 1008,
  BAD_MESSAGE: 4000,
  UNSUPPORTED_VERSION: 4001,
  OUT_OF_ORDER: 4002,
  TAKEN_OVER: 4003,
  TOO_MANY_MESSAGES: 4004,
};

export const NOTICE_CODES = { 1: "room_full", 2: "too_many_rooms", 3: "bad_room_name", 4: "server_busy" };

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Bytes of `text`, cut to `max` bytes at a character boundary. */
function textBytes(text, max = 255) {
  let bytes = utf8.encode(text);
  if (bytes.length > max) {
    let end = max;
    while (end > 0 && (bytes[end] & 0xc0) === 0x80) end -= 1;
    bytes = bytes.subarray(0, end);
  }
  return bytes;
}

export function encodeLobby() {
  return new Uint8Array([LOBBY, VERSION]);
}

export function encodeLeave() {
  return new Uint8Array([LEAVE]);
}

/** { room, name, spectate, token } — token: 16 bytes (Uint8Array) or null. */
export function encodeJoin({ room, name, spectate = false, token = null }) {
  const r = textBytes(room, 96);
  const n = textBytes(name, 64);
  const out = new Uint8Array(3 + 1 + r.length + 1 + n.length + (token ? 16 : 0));
  let i = 0;
  out[i++] = JOIN;
  out[i++] = VERSION;
  out[i++] = (spectate ? 1 : 0) | (token ? 2 : 0);
  out[i++] = r.length;
  out.set(r, i);
  i += r.length;
  out[i++] = n.length;
  out.set(n, i);
  i += n.length;
  if (token) out.set(token, i);
  return out;
}

/** { seq, dx, dy, view_tick } → 11 bytes. */
export function encodeInput({ seq, dx, dy, view_tick }) {
  const out = new Uint8Array(11);
  const v = new DataView(out.buffer);
  out[0] = INPUT;
  v.setUint32(1, seq >>> 0, true);
  v.setInt8(5, dx);
  v.setInt8(6, dy);
  v.setUint32(7, view_tick >>> 0, true);
  return out;
}

/** A malformed message from the server. */
export class DecodeError extends Error {}

class Reader {
  constructor(bytes, what) {
    this.b = bytes;
    this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.i = 1;
    this.what = what;
  }
  need(n) {
    if (this.i + n > this.b.length) throw new DecodeError(`${this.what} message is truncated`);
  }
  u8() { this.need(1); return this.b[this.i++]; }
  i8() { this.need(1); return this.v.getInt8(this.i++); }
  u16() { this.need(2); const x = this.v.getUint16(this.i, true); this.i += 2; return x; }
  u32() { this.need(4); const x = this.v.getUint32(this.i, true); this.i += 4; return x; }
  bytes(n) { this.need(n); const x = this.b.slice(this.i, this.i + n); this.i += n; return x; }
  seat() {
    const s = this.u8();
    if (s === 255) return null;
    if (s > 15) throw new DecodeError(`seat ${s} is out of range`);
    return s;
  }
  text() {
    const n = this.u8();
    const raw = this.bytes(n);
    try {
      return fromUtf8.decode(raw);
    } catch {
      throw new DecodeError("text is not UTF-8");
    }
  }
  finish() {
    if (this.i !== this.b.length) throw new DecodeError(`${this.what} message has ${this.b.length - this.i} bytes too many`);
  }
}

function seatInfo(r) {
  const slot = r.seat();
  const flags = r.u8();
  const score = r.u32();
  const tick = r.u32();
  const name = r.text();
  return { slot, name, bot: (flags & 1) !== 0, away: (flags & 2) !== 0, score, tick };
}

/** Decodes a server message (ArrayBuffer or Uint8Array) into a plain object. */
export function decodeServer(data) {
  const b = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (b.length === 0) throw new DecodeError("empty message");
  switch (b[0]) {
    case WELCOME: {
      const r = new Reader(b, "welcome");
      const version = r.u8();
      if (version !== VERSION) throw new DecodeError(`protocol version ${version} is not supported`);
      const you = r.seat();
      const token = r.bytes(16);
      const params = {
        tick_hz: r.u16(), width: r.u16(), height: r.u16(), radius: r.u16(),
        max_speed: r.u8(), it_speed: r.u8(), accel: r.u8(), touch: r.u8(),
        immune_ticks: r.u16(), rewind_ticks: r.u8(),
      };
      const tick = r.u32();
      const it = r.seat();
      const immune_until = r.u32();
      const room = r.text();
      const n = r.u8();
      const seats = [];
      for (let k = 0; k < n; k++) seats.push(seatInfo(r));
      r.finish();
      return { type: "welcome", room, you, token, params, tick, it, immune_until, seats };
    }
    case SNAPSHOT: {
      const r = new Reader(b, "snapshot");
      const tick = r.u32();
      const it = r.seat();
      const immune = r.u8();
      const n = r.u8();
      if (n > 16) throw new DecodeError(`record count ${n} is out of range`);
      const records = [];
      for (let k = 0; k < n; k++) {
        const tag = r.u8();
        records.push({ slot: tag & 0x0f, away: (tag & 0x10) !== 0, x: r.u16(), y: r.u16(), vx: r.i8(), vy: r.i8(), ack: r.u8() });
      }
      r.finish();
      return { type: "snapshot", tick, it, immune, records };
    }
    case JOINED: {
      const r = new Reader(b, "joined");
      const seat = seatInfo(r);
      r.finish();
      return { type: "joined", seat };
    }
    case LEFT: {
      const r = new Reader(b, "left");
      const slot = r.seat();
      r.finish();
      return { type: "left", slot };
    }
    case TAGGED: {
      const r = new Reader(b, "tagged");
      const ev = { type: "tagged", tick: r.u32(), tagger: r.seat(), tagged: r.seat(), tagger_score: r.u32(), tagged_score: r.u32() };
      r.finish();
      return ev;
    }
    case PRESENCE: {
      const r = new Reader(b, "presence");
      const ev = { type: "presence", slot: r.seat(), away: r.u8() === 1, tick: r.u32(), score: r.u32() };
      r.finish();
      return ev;
    }
    case LOBBY_LIST: {
      const r = new Reader(b, "lobby");
      const n = r.u8();
      const rooms = [];
      for (let k = 0; k < n; k++) rooms.push({ name: r.text(), players: r.u8(), bots: r.u8(), spectators: r.u16() });
      r.finish();
      return { type: "lobby", rooms };
    }
    case NOTICE: {
      const r = new Reader(b, "notice");
      const code = r.u8();
      const text = r.text();
      r.finish();
      return { type: "notice", code: NOTICE_CODES[code] || `code_${code}`, text };
    }
    default:
      throw new DecodeError(`unknown message type 0x${b[0].toString(16)}`);
  }
}
