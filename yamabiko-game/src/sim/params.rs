//! The rules' numbers. Everything is an integer: positions in 1/[`SUBUNITS`] of an
//! arena unit, speeds in sub-units per tick, times in ticks. The per-tick values are
//! derived once from the tick rate ([`Params::for_tick_hz`]) and sent to the page in
//! the welcome message, so the page predicts with exactly the server's numbers.

use std::fmt;

/// Sub-units per arena unit: positions are integers in 1/8 of a unit.
pub const SUBUNITS: i32 = 8;
/// Seats in a room (players and bots together).
pub const MAX_PLAYERS: usize = 16;
/// Width of the arena, in arena units.
pub const ARENA_WIDTH_UNITS: i32 = 1000;
/// Height of the arena, in arena units.
pub const ARENA_HEIGHT_UNITS: i32 = 625;
/// The largest stick deflection of an input on either axis (a key held is 127).
pub const INPUT_MAX: i32 = 127;
/// The slowest tick rate: below it the fastest circle moves more than 127 sub-units
/// per tick, which the snapshot's one-byte velocity cannot carry.
pub const MIN_TICK_HZ: u32 = 20;
/// The fastest tick rate: above it acceleration rounds to whole sub-units too coarsely.
pub const MAX_TICK_HZ: u32 = 120;
/// Most collision passes per tick (they stop as soon as nothing overlaps).
pub const COLLISION_PASSES: usize = 32;

/// Top speed, arena units per second.
const SPEED_UNITS_PER_S: i64 = 280;
/// "It" runs this much faster, in percent of the top speed, so a chase can end.
const IT_SPEED_PERCENT: i64 = 112;
/// Time from standing to top speed (and back), in milliseconds.
const RAMP_MS: i64 = 150;
/// How long a new "it" cannot tag (no tag-backs), in milliseconds.
const IMMUNE_MS: i64 = 1500;
/// Lag compensation: the server rewinds the others by at most this much.
const REWIND_MS: i64 = 100;
/// Circle radius, arena units.
const RADIUS_UNITS: i32 = 24;
/// Extra reach of a tag beyond touching circles, arena units.
const TOUCH_UNITS: i32 = 4;

/// The rules at one tick rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Simulation ticks per second.
    pub tick_hz: u32,
    /// Arena width, sub-units.
    pub width: i32,
    /// Arena height, sub-units.
    pub height: i32,
    /// Circle radius, sub-units.
    pub radius: i32,
    /// Top speed, sub-units per tick.
    pub max_speed: i32,
    /// Top speed of "it", sub-units per tick.
    pub it_speed: i32,
    /// Largest change of velocity per tick on each axis, sub-units per tick.
    pub accel: i32,
    /// Reach of a tag beyond touching, sub-units.
    pub touch: i32,
    /// Ticks a new "it" cannot tag.
    pub immune_ticks: u32,
    /// Most ticks the server rewinds the others when "it" tags (lag compensation).
    pub rewind_ticks: u32,
}

/// A tick rate outside [`MIN_TICK_HZ`]..=[`MAX_TICK_HZ`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickRateError(pub u32);

impl fmt::Display for TickRateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tick rate {} Hz is outside {MIN_TICK_HZ}..={MAX_TICK_HZ} Hz",
            self.0
        )
    }
}

impl std::error::Error for TickRateError {}

/// `a / b` rounded to the nearest integer (both positive).
fn div_round(a: i64, b: i64) -> i64 {
    (2 * a + b) / (2 * b)
}

impl Params {
    /// The rules at `tick_hz` ticks per second.
    ///
    /// ```
    /// let p = yamabiko_game::sim::Params::for_tick_hz(30).unwrap();
    /// assert_eq!(p.max_speed, 75); // 280 units/s at 8 sub-units per unit, 30 Hz
    /// assert_eq!(p.rewind_ticks, 3); // 100 ms
    /// ```
    pub fn for_tick_hz(tick_hz: u32) -> Result<Params, TickRateError> {
        if !(MIN_TICK_HZ..=MAX_TICK_HZ).contains(&tick_hz) {
            return Err(TickRateError(tick_hz));
        }
        let hz = i64::from(tick_hz);
        let sub = i64::from(SUBUNITS);
        let max_speed = div_round(SPEED_UNITS_PER_S * sub, hz);
        let it_speed = div_round(SPEED_UNITS_PER_S * sub * IT_SPEED_PERCENT, 100 * hz);
        let ramp_ticks_x1000 = RAMP_MS * hz; // ramp in ticks, times 1000
        let accel = ((max_speed * 1000 + ramp_ticks_x1000 - 1) / ramp_ticks_x1000).max(1);
        Ok(Params {
            tick_hz,
            width: ARENA_WIDTH_UNITS * SUBUNITS,
            height: ARENA_HEIGHT_UNITS * SUBUNITS,
            radius: RADIUS_UNITS * SUBUNITS,
            max_speed: max_speed as i32,
            it_speed: it_speed as i32,
            accel: accel as i32,
            touch: TOUCH_UNITS * SUBUNITS,
            immune_ticks: div_round(IMMUNE_MS * hz, 1000) as u32,
            rewind_ticks: (REWIND_MS * hz / 1000) as u32,
        })
    }

    /// The top speed of a circle, depending on whether it is "it".
    pub fn speed(&self, is_it: bool) -> i32 {
        if is_it {
            self.it_speed
        } else {
            self.max_speed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_rate_fits_the_wire() {
        for hz in MIN_TICK_HZ..=MAX_TICK_HZ {
            let p = Params::for_tick_hz(hz).unwrap();
            assert!(p.it_speed <= 127, "{hz} Hz: it speed {}", p.it_speed);
            assert!(p.it_speed > p.max_speed, "{hz} Hz");
            assert!(p.accel >= 1 && p.accel <= p.max_speed, "{hz} Hz");
            assert!(p.rewind_ticks >= 2 && p.rewind_ticks * 1000 <= 100 * hz);
            assert!(p.immune_ticks >= 1 && p.immune_ticks < 255, "{hz} Hz");
            assert!(p.width <= u16::MAX as i32 && p.height <= u16::MAX as i32);
        }
        assert_eq!(Params::for_tick_hz(19), Err(TickRateError(19)));
        assert_eq!(Params::for_tick_hz(121), Err(TickRateError(121)));
    }

    #[test]
    fn thirty_hertz() {
        let p = Params::for_tick_hz(30).unwrap();
        assert_eq!(
            (p.max_speed, p.it_speed, p.accel, p.immune_ticks),
            (75, 84, 17, 45)
        );
    }
}
