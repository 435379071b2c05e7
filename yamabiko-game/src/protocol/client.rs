//! Messages from the page to the server.

use super::codec::{DecodeError, Put, Reader};
use super::{Token, MAX_NAME_CHARS, MAX_ROOM_CHARS, VERSION};

/// Type byte of [`ClientMsg::Lobby`].
pub const LOBBY: u8 = 0x01;
/// Type byte of [`ClientMsg::Join`].
pub const JOIN: u8 = 0x02;
/// Type byte of [`ClientMsg::Leave`].
pub const LEAVE: u8 = 0x03;
/// Type byte of [`ClientMsg::Input`].
pub const INPUT: u8 = 0x04;

/// Join flag: watch instead of play.
const JOIN_SPECTATE: u8 = 0x01;
/// Join flag: a reconnection token follows.
const JOIN_TOKEN: u8 = 0x02;

/// One tick of a player's stick, numbered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// The page's sequence number, from 1, one more for every input.
    pub seq: u32,
    /// Stick, -127..=127, right positive.
    pub dx: i8,
    /// Stick, -127..=127, down positive.
    pub dy: i8,
    /// The tick of the others the page was showing (for lag compensation).
    pub view_tick: u32,
}

/// A message from the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMsg {
    /// Show me the list of rooms (and keep it current until I join).
    Lobby,
    /// Take a seat in `room` (made if it does not exist), or watch it.
    Join {
        /// Room name, 1–24 characters.
        room: String,
        /// Player name, up to 16 characters (empty: the server picks one).
        name: String,
        /// Watch instead of play.
        spectate: bool,
        /// The token of a seat held before (within the grace period: same seat).
        token: Option<Token>,
    },
    /// Give up the seat (or stop watching) and go back to the lobby.
    Leave,
    /// Movement for one tick.
    Input(Input),
}

impl ClientMsg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        match self {
            ClientMsg::Lobby => {
                out.put_u8(LOBBY);
                out.put_u8(VERSION);
            }
            ClientMsg::Join {
                room,
                name,
                spectate,
                token,
            } => {
                out.put_u8(JOIN);
                out.put_u8(VERSION);
                let mut flags = 0;
                if *spectate {
                    flags |= JOIN_SPECTATE;
                }
                if token.is_some() {
                    flags |= JOIN_TOKEN;
                }
                out.put_u8(flags);
                out.put_text(room);
                out.put_text(name);
                if let Some(token) = token {
                    out.extend_from_slice(token);
                }
            }
            ClientMsg::Leave => out.put_u8(LEAVE),
            ClientMsg::Input(input) => encode_input(input, &mut out),
        }
        out
    }

    /// Decodes one message; any malformed input is a [`DecodeError`], never a panic.
    pub fn decode(bytes: &[u8]) -> Result<ClientMsg, DecodeError> {
        let (&kind, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        match kind {
            LOBBY => {
                let mut r = Reader::new(rest, "lobby");
                check_version(r.u8()?)?;
                r.finish()?;
                Ok(ClientMsg::Lobby)
            }
            JOIN => {
                let mut r = Reader::new(rest, "join");
                check_version(r.u8()?)?;
                let flags = r.u8()?;
                if flags & !(JOIN_SPECTATE | JOIN_TOKEN) != 0 {
                    return Err(DecodeError::BadValue {
                        field: "join flags",
                        value: u32::from(flags),
                    });
                }
                let room = r.text("room name", MAX_ROOM_CHARS)?;
                let name = r.text("player name", MAX_NAME_CHARS)?;
                let token = if flags & JOIN_TOKEN != 0 {
                    Some(r.array::<{ super::TOKEN_LEN }>()?)
                } else {
                    None
                };
                r.finish()?;
                Ok(ClientMsg::Join {
                    room,
                    name,
                    spectate: flags & JOIN_SPECTATE != 0,
                    token,
                })
            }
            LEAVE => {
                Reader::new(rest, "leave").finish()?;
                Ok(ClientMsg::Leave)
            }
            INPUT => {
                let mut r = Reader::new(rest, "input");
                let input = Input {
                    seq: r.u32()?,
                    dx: r.i8()?,
                    dy: r.i8()?,
                    view_tick: r.u32()?,
                };
                r.finish()?;
                Ok(ClientMsg::Input(input))
            }
            other => Err(DecodeError::UnknownType(other)),
        }
    }
}

/// Encodes an input (11 bytes) without allocating beyond `out`.
pub fn encode_input(input: &Input, out: &mut Vec<u8>) {
    out.put_u8(INPUT);
    out.put_u32(input.seq);
    out.push(input.dx as u8);
    out.push(input.dy as u8);
    out.put_u32(input.view_tick);
}

fn check_version(v: u8) -> Result<(), DecodeError> {
    if v == VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion(v))
    }
}

#[cfg(test)]
mod tests {
    use super::super::close;
    use super::*;
    use proptest::prelude::*;

    fn arb_text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                proptest::char::range('a', 'z'),
                proptest::char::range('ぁ', 'ん'),
                Just('<'),
                Just(' '),
                Just('😀'),
            ],
            0..=max,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn arb_msg() -> impl Strategy<Value = ClientMsg> {
        prop_oneof![
            Just(ClientMsg::Lobby),
            Just(ClientMsg::Leave),
            (
                arb_text(MAX_ROOM_CHARS),
                arb_text(MAX_NAME_CHARS),
                any::<bool>(),
                proptest::option::of(any::<[u8; 16]>())
            )
                .prop_map(|(room, name, spectate, token)| ClientMsg::Join {
                    room,
                    name,
                    spectate,
                    token
                }),
            (any::<u32>(), any::<i8>(), any::<i8>(), any::<u32>()).prop_map(
                |(seq, dx, dy, view_tick)| ClientMsg::Input(Input {
                    seq,
                    dx,
                    dy,
                    view_tick
                })
            ),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(msg in arb_msg()) {
            let bytes = msg.encode();
            prop_assert_eq!(ClientMsg::decode(&bytes), Ok(msg));
        }

        #[test]
        fn every_truncation_and_extension_is_an_error(msg in arb_msg(), extra in 1usize..4) {
            let bytes = msg.encode();
            for cut in 0..bytes.len() {
                let err = ClientMsg::decode(&bytes[..cut]).unwrap_err();
                prop_assert!(err.close_code() == close::BAD_MESSAGE, "{err}");
            }
            let mut longer = bytes.clone();
            longer.extend(std::iter::repeat_n(0u8, extra));
            let err = ClientMsg::decode(&longer).unwrap_err();
            prop_assert_eq!(err.close_code(), close::BAD_MESSAGE);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Err(e) = ClientMsg::decode(&bytes) {
                let code = e.close_code();
                prop_assert!([close::BAD_MESSAGE, close::INVALID_TEXT, close::UNSUPPORTED_VERSION].contains(&code));
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn input_is_eleven_bytes() {
        let bytes = ClientMsg::Input(Input {
            seq: 0x0102_0304,
            dx: -1,
            dy: 127,
            view_tick: 7,
        })
        .encode();
        assert_eq!(bytes, [4, 4, 3, 2, 1, 0xff, 0x7f, 7, 0, 0, 0]);
    }

    #[test]
    fn malformed_messages_get_their_error_and_close_code() {
        let join = |flags: u8, room: &[u8], name: &[u8]| {
            let mut v = vec![JOIN, VERSION, flags, room.len() as u8];
            v.extend_from_slice(room);
            v.push(name.len() as u8);
            v.extend_from_slice(name);
            v
        };
        let cases: Vec<(Vec<u8>, DecodeError, u16)> = vec![
            (vec![], DecodeError::Empty, close::BAD_MESSAGE),
            (
                vec![0x7f],
                DecodeError::UnknownType(0x7f),
                close::BAD_MESSAGE,
            ),
            (
                vec![LOBBY, 9],
                DecodeError::UnsupportedVersion(9),
                close::UNSUPPORTED_VERSION,
            ),
            (
                vec![INPUT, 1, 0, 0],
                DecodeError::Truncated { message: "input" },
                close::BAD_MESSAGE,
            ),
            (
                vec![LEAVE, 0],
                DecodeError::TrailingBytes {
                    message: "leave",
                    extra: 1,
                },
                close::BAD_MESSAGE,
            ),
            (
                join(0, b"room", b"\xff\xfe"),
                DecodeError::BadUtf8 {
                    field: "player name",
                },
                close::INVALID_TEXT,
            ),
            (
                join(0, b"room", "あ".repeat(17).as_bytes()),
                DecodeError::TooLong {
                    field: "player name",
                    max_chars: 16,
                },
                close::BAD_MESSAGE,
            ),
            (
                join(0, b"ro\nom", b"x"),
                DecodeError::ControlCharacter { field: "room name" },
                close::BAD_MESSAGE,
            ),
            (
                join(0x80, b"room", b"x"),
                DecodeError::BadValue {
                    field: "join flags",
                    value: 0x80,
                },
                close::BAD_MESSAGE,
            ),
            (
                join(JOIN_TOKEN, b"room", b"x"),
                DecodeError::Truncated { message: "join" },
                close::BAD_MESSAGE,
            ),
        ];
        for (bytes, want, code) in cases {
            let got = ClientMsg::decode(&bytes).unwrap_err();
            assert_eq!(got, want, "{bytes:?}");
            assert_eq!(got.close_code(), code, "{got}");
        }
    }
}
