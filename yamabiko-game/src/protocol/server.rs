//! Messages from the server to the page.
//!
//! The snapshot is the hot one: the same bytes for every player and spectator of a
//! room (each player's record carries its own last acknowledged input), 8 bytes per
//! circle plus 8, so 16 circles take 136 bytes (140 on the wire with the frame header).

use super::codec::{DecodeError, Put, Reader};
use super::{Token, MAX_NAME_CHARS, MAX_ROOM_CHARS, TOKEN_LEN, VERSION};
use crate::sim::{Params, State, MAX_PLAYERS};

/// Type byte of [`ServerMsg::Welcome`].
pub const WELCOME: u8 = 0x81;
/// Type byte of [`ServerMsg::Snapshot`].
pub const SNAPSHOT: u8 = 0x82;
/// Type byte of [`ServerMsg::Joined`].
pub const JOINED: u8 = 0x83;
/// Type byte of [`ServerMsg::Left`].
pub const LEFT: u8 = 0x84;
/// Type byte of [`ServerMsg::Tagged`].
pub const TAGGED: u8 = 0x85;
/// Type byte of [`ServerMsg::Presence`].
pub const PRESENCE: u8 = 0x86;
/// Type byte of [`ServerMsg::Lobby`].
pub const LOBBY: u8 = 0x87;
/// Type byte of [`ServerMsg::Notice`].
pub const NOTICE: u8 = 0x88;

/// Snapshot record flag: the player is away (disconnected, within the grace period).
pub const RECORD_AWAY: u8 = 0x10;
/// Bytes of a snapshot before its records.
pub const SNAPSHOT_HEADER: usize = 8;
/// Bytes of one snapshot record.
pub const SNAPSHOT_RECORD: usize = 8;

/// Seat flag: a bot.
const SEAT_BOT: u8 = 0x01;
/// Seat flag: away.
const SEAT_AWAY: u8 = 0x02;

/// Who sits in a seat, and their score at a tick (scores then grow by one per tick
/// for everyone who is neither "it" nor away, so the page computes them from here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seat {
    /// Seat number, 0–15: the player's id in the room.
    pub slot: u8,
    /// The name, as chosen (shown as text, never markup).
    pub name: String,
    /// A bot of the server's.
    pub bot: bool,
    /// Away: disconnected, the seat kept for the grace period.
    pub away: bool,
    /// Score in ticks at `tick`.
    pub score: u32,
    /// The tick `score` was taken at.
    pub tick: u32,
}

/// The first message after a join: who I am and everything to start drawing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The room's name.
    pub room: String,
    /// My seat, or `None` when watching.
    pub you: Option<u8>,
    /// Present it in a later join (within the grace period) to get this seat back;
    /// all zero for spectators.
    pub token: Token,
    /// The rules.
    pub params: Params,
    /// The current tick.
    pub tick: u32,
    /// Who is "it".
    pub it: Option<u8>,
    /// "It" cannot tag before this tick.
    pub immune_until: u32,
    /// Everyone seated, scores taken at `tick`.
    pub seats: Vec<Seat>,
}

/// One circle in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Seat number.
    pub slot: u8,
    /// Away (frozen, drawn faded).
    pub away: bool,
    /// Centre, sub-units.
    pub x: u16,
    /// Centre, sub-units.
    pub y: u16,
    /// Velocity, sub-units per tick.
    pub vx: i8,
    /// Velocity, sub-units per tick.
    pub vy: i8,
    /// Low 8 bits of the sequence number of this player's last applied input.
    pub ack: u8,
}

/// Where everyone is after a tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The tick.
    pub tick: u32,
    /// Who is "it".
    pub it: Option<u8>,
    /// Ticks left before "it" may tag (0: it may).
    pub immune: u8,
    /// The circles, by seat.
    pub records: Vec<Record>,
}

/// "It" changed hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagEvent {
    /// The tick.
    pub tick: u32,
    /// Who tagged (`None`: handed over because the old "it" left or went away).
    pub tagger: Option<u8>,
    /// The new "it".
    pub tagged: u8,
    /// The tagger's score at `tick` (0 when there is no tagger).
    pub tagger_score: u32,
    /// The new "it"'s score at `tick`.
    pub tagged_score: u32,
}

/// A room in the lobby's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    /// Its name.
    pub name: String,
    /// Seats taken (bots included).
    pub players: u8,
    /// How many of those are bots.
    pub bots: u8,
    /// People watching.
    pub spectators: u16,
}

/// Why a join was refused (the connection stays open, in the lobby).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NoticeCode {
    /// All 16 seats are taken by people.
    RoomFull = 1,
    /// The server has as many rooms as it allows.
    TooManyRooms = 2,
    /// The room name is empty.
    BadRoomName = 3,
    /// The server is at its connection limit for players.
    ServerBusy = 4,
}

impl NoticeCode {
    fn from_u8(v: u8) -> Result<NoticeCode, DecodeError> {
        Ok(match v {
            1 => NoticeCode::RoomFull,
            2 => NoticeCode::TooManyRooms,
            3 => NoticeCode::BadRoomName,
            4 => NoticeCode::ServerBusy,
            v => {
                return Err(DecodeError::BadValue {
                    field: "notice code",
                    value: u32::from(v),
                })
            }
        })
    }
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMsg {
    /// The answer to a join.
    Welcome(Welcome),
    /// The state after a tick (latest wins: a page may miss some).
    Snapshot(Snapshot),
    /// Someone took a seat.
    Joined(Seat),
    /// A seat was emptied.
    Left {
        /// The seat.
        slot: u8,
    },
    /// "It" changed hands.
    Tagged(TagEvent),
    /// A player went away or came back.
    Presence {
        /// The seat.
        slot: u8,
        /// Away now.
        away: bool,
        /// The tick.
        tick: u32,
        /// The player's score at `tick`.
        score: u32,
    },
    /// The rooms (sent on request and every second while in the lobby).
    Lobby(Vec<RoomInfo>),
    /// A join was refused.
    Notice {
        /// Why.
        code: NoticeCode,
        /// In words, for the page to show.
        text: String,
    },
}

/// Most rooms a lobby message lists.
pub const MAX_LOBBY_ROOMS: usize = 64;

impl ServerMsg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            ServerMsg::Welcome(w) => {
                out.put_u8(WELCOME);
                out.put_u8(VERSION);
                out.put_seat(w.you);
                out.extend_from_slice(&w.token);
                put_params(&mut out, &w.params);
                out.put_u32(w.tick);
                out.put_seat(w.it);
                out.put_u32(w.immune_until);
                out.put_text(&w.room);
                out.put_u8(w.seats.len() as u8);
                for seat in &w.seats {
                    put_seat_info(&mut out, seat);
                }
            }
            ServerMsg::Snapshot(s) => {
                out.put_u8(SNAPSHOT);
                out.put_u32(s.tick);
                out.put_seat(s.it);
                out.put_u8(s.immune);
                out.put_u8(s.records.len() as u8);
                for r in &s.records {
                    out.put_u8(r.slot | if r.away { RECORD_AWAY } else { 0 });
                    out.put_u16(r.x);
                    out.put_u16(r.y);
                    out.push(r.vx as u8);
                    out.push(r.vy as u8);
                    out.put_u8(r.ack);
                }
            }
            ServerMsg::Joined(seat) => {
                out.put_u8(JOINED);
                put_seat_info(&mut out, seat);
            }
            ServerMsg::Left { slot } => {
                out.put_u8(LEFT);
                out.put_u8(*slot);
            }
            ServerMsg::Tagged(t) => {
                out.put_u8(TAGGED);
                out.put_u32(t.tick);
                out.put_seat(t.tagger);
                out.put_u8(t.tagged);
                out.put_u32(t.tagger_score);
                out.put_u32(t.tagged_score);
            }
            ServerMsg::Presence {
                slot,
                away,
                tick,
                score,
            } => {
                out.put_u8(PRESENCE);
                out.put_u8(*slot);
                out.put_u8(u8::from(*away));
                out.put_u32(*tick);
                out.put_u32(*score);
            }
            ServerMsg::Lobby(rooms) => {
                out.put_u8(LOBBY);
                let rooms = &rooms[..rooms.len().min(MAX_LOBBY_ROOMS)];
                out.put_u8(rooms.len() as u8);
                for room in rooms {
                    out.put_text(&room.name);
                    out.put_u8(room.players);
                    out.put_u8(room.bots);
                    out.put_u16(room.spectators);
                }
            }
            ServerMsg::Notice { code, text } => {
                out.put_u8(NOTICE);
                out.put_u8(*code as u8);
                out.put_text(text);
            }
        }
        out
    }

    /// Decodes one message (the bench's and the tests' side); any malformed input is
    /// a [`DecodeError`], never a panic.
    pub fn decode(bytes: &[u8]) -> Result<ServerMsg, DecodeError> {
        let (&kind, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        let msg = match kind {
            WELCOME => {
                let mut r = Reader::new(rest, "welcome");
                let version = r.u8()?;
                if version != VERSION {
                    return Err(DecodeError::UnsupportedVersion(version));
                }
                let you = r.seat("you")?;
                let token = r.array::<TOKEN_LEN>()?;
                let params = get_params(&mut r)?;
                let tick = r.u32()?;
                let it = r.seat("it")?;
                let immune_until = r.u32()?;
                let room = r.text("room name", MAX_ROOM_CHARS)?;
                let n = r.u8()?;
                if usize::from(n) > MAX_PLAYERS {
                    return Err(DecodeError::BadValue {
                        field: "seat count",
                        value: u32::from(n),
                    });
                }
                let mut seats = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    seats.push(get_seat_info(&mut r)?);
                }
                r.finish()?;
                ServerMsg::Welcome(Welcome {
                    room,
                    you,
                    token,
                    params,
                    tick,
                    it,
                    immune_until,
                    seats,
                })
            }
            SNAPSHOT => return Snapshot::decode(rest).map(ServerMsg::Snapshot),
            JOINED => {
                let mut r = Reader::new(rest, "joined");
                let seat = get_seat_info(&mut r)?;
                r.finish()?;
                ServerMsg::Joined(seat)
            }
            LEFT => {
                let mut r = Reader::new(rest, "left");
                let slot = get_slot(&mut r, "seat")?;
                r.finish()?;
                ServerMsg::Left { slot }
            }
            TAGGED => {
                let mut r = Reader::new(rest, "tagged");
                let tick = r.u32()?;
                let tagger = r.seat("tagger")?;
                let tagged = get_slot(&mut r, "tagged")?;
                let tagger_score = r.u32()?;
                let tagged_score = r.u32()?;
                r.finish()?;
                ServerMsg::Tagged(TagEvent {
                    tick,
                    tagger,
                    tagged,
                    tagger_score,
                    tagged_score,
                })
            }
            PRESENCE => {
                let mut r = Reader::new(rest, "presence");
                let slot = get_slot(&mut r, "seat")?;
                let away = match r.u8()? {
                    0 => false,
                    1 => true,
                    v => {
                        return Err(DecodeError::BadValue {
                            field: "away",
                            value: u32::from(v),
                        })
                    }
                };
                let tick = r.u32()?;
                let score = r.u32()?;
                r.finish()?;
                ServerMsg::Presence {
                    slot,
                    away,
                    tick,
                    score,
                }
            }
            LOBBY => {
                let mut r = Reader::new(rest, "lobby");
                let n = r.u8()?;
                let mut rooms = Vec::with_capacity(usize::from(n).min(MAX_LOBBY_ROOMS));
                for _ in 0..n {
                    rooms.push(RoomInfo {
                        name: r.text("room name", MAX_ROOM_CHARS)?,
                        players: r.u8()?,
                        bots: r.u8()?,
                        spectators: r.u16()?,
                    });
                }
                r.finish()?;
                ServerMsg::Lobby(rooms)
            }
            NOTICE => {
                let mut r = Reader::new(rest, "notice");
                let code = NoticeCode::from_u8(r.u8()?)?;
                let text = r.text("notice", 255)?;
                r.finish()?;
                ServerMsg::Notice { code, text }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        Ok(msg)
    }
}

impl Snapshot {
    /// The snapshot of `state`.
    pub fn of(state: &State) -> Snapshot {
        let records = state
            .players
            .iter()
            .enumerate()
            .filter_map(|(slot, p)| {
                let p = p.as_ref()?;
                Some(Record {
                    slot: slot as u8,
                    away: p.away,
                    x: p.x.clamp(0, i32::from(u16::MAX)) as u16,
                    y: p.y.clamp(0, i32::from(u16::MAX)) as u16,
                    vx: p.vx.clamp(-127, 127) as i8,
                    vy: p.vy.clamp(-127, 127) as i8,
                    ack: p.ack as u8,
                })
            })
            .collect();
        Snapshot {
            tick: state.tick,
            it: state.it,
            immune: state.immune_until.saturating_sub(state.tick).min(255) as u8,
            records,
        }
    }

    /// Encodes the snapshot of `state` straight into `out` (the server's hot path:
    /// no intermediate records).
    pub fn encode_state(state: &State, out: &mut Vec<u8>) {
        out.put_u8(SNAPSHOT);
        out.put_u32(state.tick);
        out.put_seat(state.it);
        out.put_u8(state.immune_until.saturating_sub(state.tick).min(255) as u8);
        let count_at = out.len();
        out.put_u8(0);
        let mut count = 0u8;
        for (slot, p) in state.players.iter().enumerate() {
            let Some(p) = p else { continue };
            count += 1;
            out.put_u8(slot as u8 | if p.away { RECORD_AWAY } else { 0 });
            out.put_u16(p.x.clamp(0, i32::from(u16::MAX)) as u16);
            out.put_u16(p.y.clamp(0, i32::from(u16::MAX)) as u16);
            out.push(p.vx.clamp(-127, 127) as i8 as u8);
            out.push(p.vy.clamp(-127, 127) as i8 as u8);
            out.put_u8(p.ack as u8);
        }
        out[count_at] = count;
    }

    /// Decodes a snapshot's fields (after the type byte).
    fn decode(rest: &[u8]) -> Result<Snapshot, DecodeError> {
        let mut r = Reader::new(rest, "snapshot");
        let tick = r.u32()?;
        let it = r.seat("it")?;
        let immune = r.u8()?;
        let n = r.u8()?;
        if usize::from(n) > MAX_PLAYERS {
            return Err(DecodeError::BadValue {
                field: "record count",
                value: u32::from(n),
            });
        }
        let mut records = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let tag = r.u8()?;
            if tag & !(RECORD_AWAY | 0x0f) != 0 {
                return Err(DecodeError::BadValue {
                    field: "record flags",
                    value: u32::from(tag),
                });
            }
            records.push(Record {
                slot: tag & 0x0f,
                away: tag & RECORD_AWAY != 0,
                x: r.u16()?,
                y: r.u16()?,
                vx: r.i8()?,
                vy: r.i8()?,
                ack: r.u8()?,
            });
        }
        r.finish()?;
        Ok(Snapshot {
            tick,
            it,
            immune,
            records,
        })
    }
}

fn get_slot(r: &mut Reader<'_>, field: &'static str) -> Result<u8, DecodeError> {
    r.seat(field)?
        .ok_or(DecodeError::BadValue { field, value: 255 })
}

fn put_seat_info(out: &mut Vec<u8>, seat: &Seat) {
    out.put_u8(seat.slot);
    let mut flags = 0;
    if seat.bot {
        flags |= SEAT_BOT;
    }
    if seat.away {
        flags |= SEAT_AWAY;
    }
    out.put_u8(flags);
    out.put_u32(seat.score);
    out.put_u32(seat.tick);
    out.put_text(&seat.name);
}

fn get_seat_info(r: &mut Reader<'_>) -> Result<Seat, DecodeError> {
    let slot = get_slot(r, "seat")?;
    let flags = r.u8()?;
    if flags & !(SEAT_BOT | SEAT_AWAY) != 0 {
        return Err(DecodeError::BadValue {
            field: "seat flags",
            value: u32::from(flags),
        });
    }
    let score = r.u32()?;
    let tick = r.u32()?;
    let name = r.text("player name", MAX_NAME_CHARS)?;
    Ok(Seat {
        slot,
        name,
        bot: flags & SEAT_BOT != 0,
        away: flags & SEAT_AWAY != 0,
        score,
        tick,
    })
}

/// The rules as the welcome carries them: 14 bytes.
fn put_params(out: &mut Vec<u8>, p: &Params) {
    out.put_u16(p.tick_hz as u16);
    out.put_u16(p.width as u16);
    out.put_u16(p.height as u16);
    out.put_u16(p.radius as u16);
    out.put_u8(p.max_speed as u8);
    out.put_u8(p.it_speed as u8);
    out.put_u8(p.accel as u8);
    out.put_u8(p.touch as u8);
    out.put_u16(p.immune_ticks as u16);
    out.put_u8(p.rewind_ticks as u8);
}

fn get_params(r: &mut Reader<'_>) -> Result<Params, DecodeError> {
    Ok(Params {
        tick_hz: u32::from(r.u16()?),
        width: i32::from(r.u16()?),
        height: i32::from(r.u16()?),
        radius: i32::from(r.u16()?),
        max_speed: i32::from(r.u8()?),
        it_speed: i32::from(r.u8()?),
        accel: i32::from(r.u8()?),
        touch: i32::from(r.u8()?),
        immune_ticks: u32::from(r.u16()?),
        rewind_ticks: u32::from(r.u8()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{step, Command};
    use proptest::prelude::*;

    fn arb_name(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                proptest::char::range('a', 'z'),
                proptest::char::range('ア', 'ン'),
                Just('"'),
                Just('&'),
            ],
            0..=max,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn arb_seat() -> impl Strategy<Value = Seat> {
        (
            0u8..16,
            arb_name(MAX_NAME_CHARS),
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(slot, name, bot, away, score, tick)| Seat {
                slot,
                name,
                bot,
                away,
                score,
                tick,
            })
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            0u8..16,
            any::<bool>(),
            any::<u16>(),
            any::<u16>(),
            any::<i8>(),
            any::<i8>(),
            any::<u8>(),
        )
            .prop_map(|(slot, away, x, y, vx, vy, ack)| Record {
                slot,
                away,
                x,
                y,
                vx,
                vy,
                ack,
            })
    }

    fn arb_msg() -> impl Strategy<Value = ServerMsg> {
        let seat_opt = proptest::option::of(0u8..16);
        prop_oneof![
            (
                arb_name(MAX_ROOM_CHARS),
                seat_opt.clone(),
                any::<[u8; 16]>(),
                20u32..=120,
                any::<u32>(),
                seat_opt.clone(),
                any::<u32>(),
                proptest::collection::vec(arb_seat(), 0..=16)
            )
                .prop_map(|(room, you, token, hz, tick, it, immune_until, seats)| {
                    ServerMsg::Welcome(Welcome {
                        room,
                        you,
                        token,
                        params: Params::for_tick_hz(hz).unwrap(),
                        tick,
                        it,
                        immune_until,
                        seats,
                    })
                }),
            (
                any::<u32>(),
                seat_opt.clone(),
                any::<u8>(),
                proptest::collection::vec(arb_record(), 0..=16)
            )
                .prop_map(|(tick, it, immune, records)| ServerMsg::Snapshot(
                    Snapshot {
                        tick,
                        it,
                        immune,
                        records
                    }
                )),
            arb_seat().prop_map(ServerMsg::Joined),
            (0u8..16).prop_map(|slot| ServerMsg::Left { slot }),
            (any::<u32>(), seat_opt, 0u8..16, any::<u32>(), any::<u32>()).prop_map(
                |(tick, tagger, tagged, tagger_score, tagged_score)| {
                    ServerMsg::Tagged(TagEvent {
                        tick,
                        tagger,
                        tagged,
                        tagger_score,
                        tagged_score,
                    })
                }
            ),
            (0u8..16, any::<bool>(), any::<u32>(), any::<u32>()).prop_map(
                |(slot, away, tick, score)| ServerMsg::Presence {
                    slot,
                    away,
                    tick,
                    score
                }
            ),
            proptest::collection::vec(
                (
                    arb_name(MAX_ROOM_CHARS),
                    any::<u8>(),
                    any::<u8>(),
                    any::<u16>()
                )
                    .prop_map(|(name, players, bots, spectators)| RoomInfo {
                        name,
                        players,
                        bots,
                        spectators
                    }),
                0..=MAX_LOBBY_ROOMS
            )
            .prop_map(ServerMsg::Lobby),
            (
                prop_oneof![
                    Just(NoticeCode::RoomFull),
                    Just(NoticeCode::TooManyRooms),
                    Just(NoticeCode::BadRoomName),
                    Just(NoticeCode::ServerBusy)
                ],
                arb_name(60)
            )
                .prop_map(|(code, text)| ServerMsg::Notice { code, text }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(msg in arb_msg()) {
            let bytes = msg.encode();
            prop_assert_eq!(ServerMsg::decode(&bytes), Ok(msg));
        }

        #[test]
        fn every_truncation_is_an_error(msg in arb_msg()) {
            let bytes = msg.encode();
            for cut in 0..bytes.len() {
                prop_assert!(ServerMsg::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes;
            longer.push(0);
            prop_assert!(ServerMsg::decode(&longer).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ServerMsg::decode(&bytes);
        }
    }

    #[test]
    fn a_snapshot_of_sixteen_is_136_bytes_and_matches_the_records() {
        let params = Params::for_tick_hz(30).unwrap();
        let mut state = State::new();
        for slot in 0..16u8 {
            let (x, y) = state.spawn_point(&params, u64::from(slot) + 1);
            state.add(slot, x, y);
        }
        state.set_away(4, true);
        let inputs: Vec<Command> = (0..16u8)
            .map(|slot| Command {
                slot,
                seq: 300 + u32::from(slot),
                dx: -100,
                dy: 50,
                view_tick: 0,
            })
            .collect();
        for _ in 0..5 {
            state = step(&params, state, &inputs);
        }
        let mut fast = Vec::new();
        Snapshot::encode_state(&state, &mut fast);
        assert_eq!(fast.len(), SNAPSHOT_HEADER + 16 * SNAPSHOT_RECORD);
        assert_eq!(fast.len(), 136);
        let slow = ServerMsg::Snapshot(Snapshot::of(&state)).encode();
        assert_eq!(fast, slow);
        let ServerMsg::Snapshot(decoded) = ServerMsg::decode(&fast).unwrap() else {
            panic!("not a snapshot")
        };
        assert_eq!(decoded.records.len(), 16);
        assert!(decoded.records[4].away);
        assert_eq!(decoded.records[3].ack, (303u32 & 0xff) as u8);
        assert_eq!(decoded.tick, 5);
    }
}
