//! The game's rules: a deterministic simulation on integers.
//!
//! [`step`] is a pure function from one [`State`] and the tick's [`Command`]s to the
//! next state; the server calls it once per tick per room, and the page runs the same
//! arithmetic (`web/sim.js`) to predict its own circle. [`vectors`] writes the cases
//! both are tested against.

mod params;
mod state;
mod step;
pub mod vectors;

pub use params::{
    Params, TickRateError, ARENA_HEIGHT_UNITS, ARENA_WIDTH_UNITS, COLLISION_PASSES, INPUT_MAX,
    MAX_PLAYERS, MAX_TICK_HZ, MIN_TICK_HZ, SUBUNITS,
};
pub use state::{Command, Player, State, Tag};
pub use step::{isqrt, move_player, step};
