//! The state of one room's game, and the roster changes made between ticks.

use super::params::{Params, MAX_PLAYERS};
use std::collections::VecDeque;

/// One circle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Player {
    /// Centre, sub-units from the left wall.
    pub x: i32,
    /// Centre, sub-units from the top wall.
    pub y: i32,
    /// Velocity, sub-units per tick.
    pub vx: i32,
    /// Velocity, sub-units per tick.
    pub vy: i32,
    /// Ticks spent in the game not being "it".
    pub score: u32,
    /// Sequence number of the last input applied (0: none yet).
    pub ack: u32,
    /// Disconnected and waiting for its owner to come back: frozen, cannot be "it"
    /// or be tagged, does not score, still solid.
    pub away: bool,
}

/// One input of one player: a stick direction for one tick of movement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// The seat it belongs to.
    pub slot: u8,
    /// The player's sequence number, acknowledged in snapshots.
    pub seq: u32,
    /// Stick, -127..=127 (right is positive).
    pub dx: i8,
    /// Stick, -127..=127 (down is positive).
    pub dy: i8,
    /// The tick at which the player saw the others when it sent this (for lag
    /// compensation of a tag).
    pub view_tick: u32,
}

/// "It" changed hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The tick of the change.
    pub tick: u32,
    /// Who tagged; `None` when "it" was handed over because the old one left or went
    /// away (or there was none).
    pub tagger: Option<u8>,
    /// The new "it".
    pub tagged: u8,
}

/// Where everyone was at a past tick, for lag compensation.
pub(crate) type Frame = [Option<(i32, i32)>; MAX_PLAYERS];

/// The game of one room. [`step`](super::step) turns one into the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// The number of the last tick simulated.
    pub tick: u32,
    /// Seats; `None` is empty.
    pub players: [Option<Player>; MAX_PLAYERS],
    /// The seat that is "it", if anyone is.
    pub it: Option<u8>,
    /// "It" cannot tag before this tick.
    pub immune_until: u32,
    /// The change of "it" in the last tick, if any.
    pub last_tag: Option<Tag>,
    /// Positions after the last few ticks, oldest first.
    pub(crate) history: VecDeque<(u32, Frame)>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    /// An empty room at tick 0.
    pub fn new() -> State {
        State {
            tick: 0,
            players: [None; MAX_PLAYERS],
            it: None,
            immune_until: 0,
            last_tag: None,
            history: VecDeque::new(),
        }
    }

    /// The seats taken.
    pub fn len(&self) -> usize {
        self.players.iter().filter(|p| p.is_some()).count()
    }

    /// Whether no seat is taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lowest free seat.
    pub fn free_slot(&self) -> Option<u8> {
        self.players
            .iter()
            .position(|p| p.is_none())
            .map(|i| i as u8)
    }

    /// Seats a new player at rest at `(x, y)`, with no score.
    pub fn add(&mut self, slot: u8, x: i32, y: i32) {
        if let Some(seat) = self.players.get_mut(usize::from(slot)) {
            *seat = Some(Player {
                x,
                y,
                ..Player::default()
            });
        }
    }

    /// Empties a seat (if it was "it", the next tick hands "it" on).
    pub fn remove(&mut self, slot: u8) {
        if let Some(seat) = self.players.get_mut(usize::from(slot)) {
            *seat = None;
        }
    }

    /// Marks a player away (disconnected, seat kept) or back. Coming back resets the
    /// acknowledged input, since the new connection numbers its inputs from 1.
    pub fn set_away(&mut self, slot: u8, away: bool) {
        if let Some(Some(p)) = self.players.get_mut(usize::from(slot)) {
            p.away = away;
            p.vx = 0;
            p.vy = 0;
            if !away {
                p.ack = 0;
            }
        }
    }

    /// A free spot for a new circle: the candidate (from a sequence seeded by `seed`)
    /// farthest from everyone, among a few.
    pub fn spawn_point(&self, params: &Params, seed: u64) -> (i32, i32) {
        let r = params.radius;
        let mut rng = seed | 1;
        let mut best = (params.width / 2, params.height / 2);
        let mut best_gap = i64::MIN;
        for _ in 0..24 {
            // xorshift64
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let x = 2 * r + (rng % (params.width - 4 * r) as u64) as i32;
            let y = 2 * r + ((rng >> 32) % (params.height - 4 * r) as u64) as i32;
            let gap = self
                .players
                .iter()
                .flatten()
                .map(|p| {
                    let (dx, dy) = (i64::from(p.x - x), i64::from(p.y - y));
                    dx * dx + dy * dy
                })
                .min()
                .unwrap_or(i64::MAX);
            if gap > best_gap {
                best = (x, y);
                best_gap = gap;
            }
        }
        best
    }

    /// Records the positions after `tick`, keeping `keep` ticks.
    pub(crate) fn record_history(&mut self, keep: usize) {
        let mut frame: Frame = [None; MAX_PLAYERS];
        for (f, p) in frame.iter_mut().zip(&self.players) {
            *f = p.map(|p| (p.x, p.y));
        }
        self.history.push_back((self.tick, frame));
        while self.history.len() > keep {
            self.history.pop_front();
        }
    }

    /// Where `slot` was after `tick`, if that is still remembered.
    pub(crate) fn position_at(&self, tick: u32, slot: usize) -> Option<(i32, i32)> {
        self.history
            .iter()
            .find(|(t, _)| *t == tick)
            .and_then(|(_, frame)| frame[slot])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a room's game costs in memory: the state itself (16 seats) and the
    /// positions of the last few ticks for lag compensation (4 at 30 Hz).
    #[test]
    fn a_rooms_state_is_small() {
        assert!(std::mem::size_of::<State>() <= 512);
        assert_eq!(std::mem::size_of::<Option<Player>>(), 28);
        assert_eq!(std::mem::size_of::<(u32, Frame)>(), 196);
        let params = crate::sim::Params::for_tick_hz(30).unwrap();
        assert_eq!(params.rewind_ticks + 1, 4);
    }

    #[test]
    fn spawn_points_keep_away_from_others() {
        let params = crate::sim::Params::for_tick_hz(30).unwrap();
        let mut s = State::new();
        for slot in 0..16u8 {
            let (x, y) = s.spawn_point(&params, u64::from(slot) * 31 + 7);
            assert!(x >= params.radius && x <= params.width - params.radius);
            assert!(y >= params.radius && y <= params.height - params.radius);
            for p in s.players.iter().flatten() {
                let d2 = i64::from(p.x - x).pow(2) + i64::from(p.y - y).pow(2);
                assert!(
                    d2 > i64::from(2 * params.radius).pow(2),
                    "slot {slot} spawned on someone"
                );
            }
            s.add(slot, x, y);
        }
        assert_eq!(s.len(), 16);
        assert_eq!(s.free_slot(), None);
        s.remove(3);
        assert_eq!(s.free_slot(), Some(3));
    }
}
