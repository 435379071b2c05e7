//! Shared test vectors: inputs and the states the server's simulation computes from
//! them, written as JSON for the page's code to replay under `node --test`
//! (`yamabiko-game/tests/js/sim.test.mjs`).
//!
//! `yamabiko-game/tests/vectors/sim.json` holds the current set (and, under
//! `protocol`, messages in bytes next to what the page's codec must make of them); the Rust test
//! `vectors_are_current` fails when [`generate`] no longer reproduces it (run it with
//! `UPDATE_VECTORS=1` to rewrite the file after a deliberate change of the rules).
//!
//! Two kinds of case:
//! * **prediction**: one circle and a stream of inputs, the state after each — what
//!   the page's prediction of its own circle ([`move_player`]) must reproduce;
//! * **step**: whole rooms (collisions, tags with lag compensation, players going away
//!   and coming back, scoring) over many ticks — the page's port of [`step`] must
//!   agree on every tick. A tick's `roster` changes ([`State::set_away`]) apply before
//!   its inputs.

use super::params::{Params, MAX_PLAYERS};
use super::state::{Command, Player, State};
use super::step::{move_player, step};
use serde_json::{json, Value};

/// Format version of the vector file.
pub const VECTORS_VERSION: u32 = 1;

/// A small deterministic generator (xorshift32), so the vectors never change by
/// accident.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }

    fn stick(&mut self) -> i8 {
        (self.below(255) as i32 - 127) as i8
    }
}

fn params_json(p: &Params) -> Value {
    json!({
        "tick_hz": p.tick_hz, "width": p.width, "height": p.height, "radius": p.radius,
        "max_speed": p.max_speed, "it_speed": p.it_speed, "accel": p.accel,
        "touch": p.touch, "immune_ticks": p.immune_ticks, "rewind_ticks": p.rewind_ticks,
    })
}

fn player_json(p: &Player) -> Value {
    json!([p.x, p.y, p.vx, p.vy, p.score, p.ack, u8::from(p.away)])
}

/// A state as the vectors carry it (the lag-compensation history is not written: it
/// is rebuilt by replaying from the start).
pub fn state_json(s: &State) -> Value {
    let players: Vec<Value> = s
        .players
        .iter()
        .map(|p| p.as_ref().map_or(Value::Null, player_json))
        .collect();
    json!({
        "tick": s.tick,
        "it": s.it,
        "immune_until": s.immune_until,
        "last_tag": s.last_tag.map(|t| json!([t.tick, t.tagger, t.tagged])),
        "players": players,
    })
}

fn prediction_case(name: &str, hz: u32, is_it: bool, start: Player, sticks: &[(i8, i8)]) -> Value {
    let params = Params::for_tick_hz(hz).expect("supported rate");
    let mut p = start;
    let mut states = vec![];
    for &(dx, dy) in sticks {
        move_player(&params, &mut p, dx, dy, is_it);
        states.push(json!([p.x, p.y, p.vx, p.vy]));
    }
    json!({
        "name": name,
        "params": params_json(&params),
        "is_it": is_it,
        "start": [start.x, start.y, start.vx, start.vy],
        "inputs": sticks.iter().map(|&(dx, dy)| json!([dx, dy])).collect::<Vec<_>>(),
        "states": states,
    })
}

/// Keyboard-like input: runs of one of the 9 key combinations.
fn keyboard(rng: &mut Rng, len: usize) -> Vec<(i8, i8)> {
    let mut out = vec![];
    while out.len() < len {
        let dx = [-127i8, 0, 127][rng.below(3) as usize];
        let dy = [-127i8, 0, 127][rng.below(3) as usize];
        for _ in 0..1 + rng.below(20) {
            out.push((dx, dy));
        }
    }
    out.truncate(len);
    out
}

fn prediction_cases() -> Vec<Value> {
    let mut rng = Rng(0x9e37_79b9);
    let centre = Player {
        x: 4800,
        y: 3000,
        ..Player::default()
    };
    let mut cases = vec![];
    let hold_release: Vec<(i8, i8)> = std::iter::repeat_n((127, 0), 20)
        .chain(std::iter::repeat_n((0, 0), 10))
        .chain(std::iter::repeat_n((-127, -127), 20))
        .chain(std::iter::repeat_n((0, 127), 15))
        .chain(std::iter::repeat_n((0, 0), 10))
        .collect();
    for hz in [30, 60, 20, 120] {
        cases.push(prediction_case(
            &format!("hold and release, {hz} Hz"),
            hz,
            false,
            centre,
            &hold_release,
        ));
    }
    // Into a corner and along the walls.
    let corner = Player {
        x: 400,
        y: 300,
        vx: -40,
        vy: 10,
        ..Player::default()
    };
    let walls: Vec<(i8, i8)> = std::iter::repeat_n((-127, -127), 30)
        .chain(std::iter::repeat_n((0, -127), 20))
        .chain(std::iter::repeat_n((127, -60), 40))
        .collect();
    cases.push(prediction_case(
        "into the corner, 30 Hz",
        30,
        false,
        corner,
        &walls,
    ));
    cases.push(prediction_case(
        "into the corner as it, 30 Hz",
        30,
        true,
        corner,
        &walls,
    ));
    // Keyboard mashing and a touch stick (any deflection).
    for hz in [30, 60] {
        let keys = keyboard(&mut rng, 300);
        cases.push(prediction_case(
            &format!("keys, {hz} Hz"),
            hz,
            false,
            centre,
            &keys,
        ));
        let stick: Vec<(i8, i8)> = (0..300).map(|_| (rng.stick(), rng.stick())).collect();
        cases.push(prediction_case(
            &format!("stick, {hz} Hz"),
            hz,
            hz == 60,
            centre,
            &stick,
        ));
    }
    // A turning stick: every direction at full and partial deflection.
    let circle: Vec<(i8, i8)> = (0..240)
        .map(|i| {
            let a = f64::from(i) * std::f64::consts::TAU / 60.0;
            let m = if i < 120 { 127.0 } else { 70.0 };
            ((a.cos() * m).round() as i8, (a.sin() * m).round() as i8)
        })
        .collect();
    cases.push(prediction_case(
        "circling stick, 30 Hz",
        30,
        false,
        centre,
        &circle,
    ));
    cases
}

/// A room whose players mostly run from "it" while "it" chases the nearest; inputs
/// arrive unevenly (none, one or two a tick) with lagging view ticks.
fn step_case(name: &str, hz: u32, seed: u32, seats: usize, ticks: u32, crowd: bool) -> Value {
    let params = Params::for_tick_hz(hz).expect("supported rate");
    let mut rng = Rng(seed);
    let mut state = State::new();
    for slot in 0..seats {
        let (x, y) = if crowd {
            // Packed toward the top-left corner.
            (
                params.radius + rng.below(6 * params.radius as u32) as i32,
                params.radius + rng.below(6 * params.radius as u32) as i32,
            )
        } else {
            (
                params.radius + rng.below((params.width - 2 * params.radius) as u32) as i32,
                params.radius + rng.below((params.height - 2 * params.radius) as u32) as i32,
            )
        };
        state.add(slot as u8, x, y);
    }
    if seats > 3 {
        state.set_away(3, true);
    }
    let start = state_json(&state);
    let mut seq = [0u32; MAX_PLAYERS];
    let mut out = vec![];
    for t in 0..ticks {
        // Roster changes are not part of a tick: they are applied to the state between
        // ticks, as the server does. Seat 3 comes back half way through; whoever is
        // "it" at two thirds goes away for a while.
        let mut roster = vec![];
        if seats > 3 && t == ticks / 2 {
            roster.push((3u8, false));
        }
        if seats > 3 && t == ticks * 2 / 3 {
            if let Some(it) = state.it {
                roster.push((it, true));
            }
        }
        if seats > 3 && t == ticks * 5 / 6 {
            for slot in 0..seats as u8 {
                if matches!(state.players[usize::from(slot)], Some(p) if p.away) {
                    roster.push((slot, false));
                }
            }
        }
        for &(slot, away) in &roster {
            state.set_away(slot, away);
            if !away {
                seq[usize::from(slot)] = 0;
            }
        }
        let mut inputs = vec![];
        for (slot, next_seq) in seq.iter_mut().enumerate().take(seats) {
            let Some(me) = state.players[slot] else {
                continue;
            };
            let n = match rng.below(10) {
                0 => 0,
                1 => 2,
                _ => 1,
            };
            for _ in 0..n {
                let (dx, dy) = if crowd {
                    (-127, -127)
                } else if state.it == Some(slot as u8) {
                    toward_nearest(&state, slot, &me)
                } else if rng.below(4) == 0 {
                    (rng.stick(), rng.stick())
                } else {
                    away_from_it(&state, &me)
                };
                *next_seq += 1;
                inputs.push(Command {
                    slot: slot as u8,
                    seq: *next_seq,
                    dx,
                    dy,
                    view_tick: state.tick.saturating_sub(rng.below(6)),
                });
            }
        }
        // Arrival order across seats varies.
        let k = (rng.below(inputs.len() as u32 + 1) as usize).min(inputs.len());
        inputs.rotate_left(k);
        let inputs_json: Vec<Value> = inputs
            .iter()
            .map(|c| json!([c.slot, c.seq, c.dx, c.dy, c.view_tick]))
            .collect();
        state = step(&params, state, &inputs);
        let roster_json: Vec<Value> = roster
            .iter()
            .map(|&(slot, away)| json!([slot, u8::from(away)]))
            .collect();
        out.push(
            json!({ "roster": roster_json, "inputs": inputs_json, "state": state_json(&state) }),
        );
    }
    json!({ "name": name, "params": params_json(&params), "start": start, "ticks": out })
}

fn toward_nearest(state: &State, me_slot: usize, me: &Player) -> (i8, i8) {
    let target = state
        .players
        .iter()
        .enumerate()
        .filter(|(i, p)| *i != me_slot && matches!(p, Some(p) if !p.away))
        .filter_map(|(_, p)| *p)
        .min_by_key(|p| {
            let (dx, dy) = (i64::from(p.x - me.x), i64::from(p.y - me.y));
            dx * dx + dy * dy
        });
    match target {
        Some(t) => (stick_toward(t.x - me.x), stick_toward(t.y - me.y)),
        None => (0, 0),
    }
}

fn away_from_it(state: &State, me: &Player) -> (i8, i8) {
    match state.it.and_then(|it| state.players[usize::from(it)]) {
        Some(it) => (stick_toward(me.x - it.x), stick_toward(me.y - it.y)),
        None => (0, 0),
    }
}

fn stick_toward(d: i32) -> i8 {
    (d / 8).clamp(-127, 127) as i8
}

/// Lag compensation by hand: "it" (seat 0) stands still while the runner (seat 1)
/// starts touching it and runs off (within reach only after tick 1); at tick
/// `claim_at` "it" moves claiming to have seen the runner at tick 1. Within the rewind
/// (3 ticks at 30 Hz) that is a tag.
fn rewind_case(name: &str, claim_at: u32) -> Value {
    let params = Params::for_tick_hz(30).expect("supported rate");
    let mut state = State::new();
    state.add(0, 2000, 2000);
    state.add(1, 2000 + 2 * params.radius, 2000);
    state.it = Some(0);
    state.immune_until = 4;
    let start = json!({
        "tick": 0, "it": 0, "immune_until": 4, "last_tag": null,
        "players": state_json(&state)["players"].clone(),
    });
    let mut out = vec![];
    for t in 1..=6u32 {
        let mut inputs = vec![Command {
            slot: 1,
            seq: t,
            dx: 127,
            dy: 0,
            view_tick: t - 1,
        }];
        if t == claim_at {
            inputs.push(Command {
                slot: 0,
                seq: 1,
                dx: 0,
                dy: 0,
                view_tick: 1,
            });
        }
        let inputs_json: Vec<Value> = inputs
            .iter()
            .map(|c| json!([c.slot, c.seq, c.dx, c.dy, c.view_tick]))
            .collect();
        state = step(&params, state, &inputs);
        out.push(json!({ "roster": [], "inputs": inputs_json, "state": state_json(&state) }));
    }
    json!({ "name": name, "params": params_json(&params), "start": start, "ticks": out })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Messages as the server's codec writes them, with the objects the page's decoder
/// must make of them (and the page's messages, with the bytes its encoder must make).
fn protocol_cases() -> Value {
    use crate::protocol::client::{ClientMsg, Input};
    use crate::protocol::server::{
        NoticeCode, Record, RoomInfo, Seat, ServerMsg, Snapshot, TagEvent, Welcome,
    };
    let params = Params::for_tick_hz(30).expect("supported rate");
    let seat = |slot: u8, name: &str, bot: bool, away: bool, score: u32, tick: u32| Seat {
        slot,
        name: name.into(),
        bot,
        away,
        score,
        tick,
    };
    let seat_json = |s: &Seat| json!({ "slot": s.slot, "name": s.name, "bot": s.bot, "away": s.away, "score": s.score, "tick": s.tick });
    let welcome = Welcome {
        room: "ひろば <b>".into(),
        you: Some(3),
        token: std::array::from_fn(|i| (i * 17) as u8),
        params,
        tick: 123_456,
        it: Some(5),
        immune_until: 123_470,
        seats: vec![
            seat(3, "やまびこ", false, false, 900, 123_456),
            seat(5, "こだま", true, false, 12, 123_456),
            seat(9, "\"&'<>", false, true, 4_000_000_000, 123_456),
        ],
    };
    let snapshot = Snapshot {
        tick: 0xfedc_ba98,
        it: None,
        immune: 44,
        records: vec![
            Record {
                slot: 0,
                away: false,
                x: 176,
                y: 4824,
                vx: -127,
                vy: 127,
                ack: 255,
            },
            Record {
                slot: 15,
                away: true,
                x: 7999,
                y: 0,
                vx: 0,
                vy: -1,
                ack: 0,
            },
        ],
    };
    let server = vec![
        (
            ServerMsg::Welcome(welcome.clone()),
            json!({
                "type": "welcome", "room": welcome.room, "you": 3, "token": welcome.token.to_vec(),
                "params": params_json(&params), "tick": 123_456, "it": 5, "immune_until": 123_470,
                "seats": welcome.seats.iter().map(seat_json).collect::<Vec<_>>(),
            }),
        ),
        (
            ServerMsg::Snapshot(snapshot.clone()),
            json!({
                "type": "snapshot", "tick": 0xfedc_ba98u32, "it": null, "immune": 44,
                "records": snapshot.records.iter().map(|r| json!({
                    "slot": r.slot, "away": r.away, "x": r.x, "y": r.y, "vx": r.vx, "vy": r.vy, "ack": r.ack,
                })).collect::<Vec<_>>(),
            }),
        ),
        (
            ServerMsg::Joined(seat(7, "新人", false, false, 0, 99)),
            json!({ "type": "joined", "seat": seat_json(&seat(7, "新人", false, false, 0, 99)) }),
        ),
        (
            ServerMsg::Left { slot: 15 },
            json!({ "type": "left", "slot": 15 }),
        ),
        (
            ServerMsg::Tagged(TagEvent {
                tick: 77,
                tagger: Some(2),
                tagged: 4,
                tagger_score: 10,
                tagged_score: 20,
            }),
            json!({ "type": "tagged", "tick": 77, "tagger": 2, "tagged": 4, "tagger_score": 10, "tagged_score": 20 }),
        ),
        (
            ServerMsg::Tagged(TagEvent {
                tick: 78,
                tagger: None,
                tagged: 0,
                tagger_score: 0,
                tagged_score: 5,
            }),
            json!({ "type": "tagged", "tick": 78, "tagger": null, "tagged": 0, "tagger_score": 0, "tagged_score": 5 }),
        ),
        (
            ServerMsg::Presence {
                slot: 1,
                away: true,
                tick: 5,
                score: 6,
            },
            json!({ "type": "presence", "slot": 1, "away": true, "tick": 5, "score": 6 }),
        ),
        (
            ServerMsg::Lobby(vec![
                RoomInfo {
                    name: "hiroba".into(),
                    players: 6,
                    bots: 5,
                    spectators: 0,
                },
                RoomInfo {
                    name: "友だち".into(),
                    players: 16,
                    bots: 0,
                    spectators: 300,
                },
            ]),
            json!({ "type": "lobby", "rooms": [
                { "name": "hiroba", "players": 6, "bots": 5, "spectators": 0 },
                { "name": "友だち", "players": 16, "bots": 0, "spectators": 300 },
            ] }),
        ),
        (
            ServerMsg::Notice {
                code: NoticeCode::RoomFull,
                text: "that room is full: 16 people".into(),
            },
            json!({ "type": "notice", "code": "room_full", "text": "that room is full: 16 people" }),
        ),
    ];
    let client = [
        (ClientMsg::Lobby, json!({ "kind": "lobby" })),
        (ClientMsg::Leave, json!({ "kind": "leave" })),
        (
            ClientMsg::Join {
                room: "ひろば".into(),
                name: "やまびこ".into(),
                spectate: false,
                token: None,
            },
            json!({ "kind": "join", "room": "ひろば", "name": "やまびこ", "spectate": false, "token": null }),
        ),
        (
            ClientMsg::Join {
                room: "r".into(),
                name: String::new(),
                spectate: true,
                token: Some([7; 16]),
            },
            json!({ "kind": "join", "room": "r", "name": "", "spectate": true, "token": vec![7u8; 16] }),
        ),
        (
            ClientMsg::Input(Input {
                seq: 0x0102_0304,
                dx: -127,
                dy: 5,
                view_tick: 0xffff_fffe,
            }),
            json!({ "kind": "input", "seq": 0x0102_0304, "dx": -127, "dy": 5, "view_tick": 0xffff_fffeu32 }),
        ),
    ];
    json!({
        "server": server.iter().map(|(m, j)| json!({ "hex": hex(&m.encode()), "msg": j })).collect::<Vec<_>>(),
        "client": client.iter().map(|(m, j)| json!({ "hex": hex(&m.encode()), "msg": j })).collect::<Vec<_>>(),
    })
}

/// All vectors, as written to `tests/vectors/sim.json`.
pub fn generate() -> Value {
    json!({
        "version": VECTORS_VERSION,
        "prediction": prediction_cases(),
        "step": [
            step_case("chase, 6 players, 30 Hz", 30, 0x1234_5678, 6, 180, false),
            step_case("chase, 10 players, 60 Hz", 60, 0x0bad_cafe, 10, 210, false),
            step_case("chase, 2 players, 20 Hz", 20, 0x0000_beef, 2, 150, false),
            step_case("crowd in a corner, 16 players, 30 Hz", 30, 0x7777_7777, 16, 40, true),
            rewind_case("lag compensation: seen 3 ticks back, tagged", 4),
            rewind_case("lag compensation: seen 4 ticks back, beyond the rewind", 5),
        ],
        "protocol": protocol_cases(),
    })
}

/// The vectors as text: one case per line, so a change shows as a readable diff.
pub fn generate_text() -> String {
    let all = generate();
    let mut out = String::from("{\n");
    out.push_str(&format!("\"version\": {VECTORS_VERSION},\n"));
    for key in ["prediction", "step"] {
        out.push_str(&format!("\"{key}\": [\n"));
        let cases = all[key].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for (j, case) in cases.iter().enumerate() {
            out.push_str(&case.to_string());
            out.push_str(if j + 1 < cases.len() { ",\n" } else { "\n" });
        }
        out.push_str("],\n");
    }
    out.push_str(&format!("\"protocol\": {}\n", all["protocol"]));
    out.push_str("}\n");
    out
}
