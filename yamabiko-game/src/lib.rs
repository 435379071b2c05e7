//! 鬼ごっこ (tag): a realtime multiplayer browser game on yamabiko's public API —
//! `yamabiko game`.
//!
//! Circles chase each other in an arena; whoever is "it" (鬼) passes it on by touching
//! someone, and the score is the time spent not being it. The server is the authority:
//! each room runs a fixed-tick, deterministic simulation ([`sim::step`], integers
//! only) fed by the players' numbered inputs, and sends every tick's state to all of
//! the room's pages as one binary snapshot, framed once ([`room`], [`fanout`]). The
//! page predicts its own circle with the same arithmetic and draws the others a little
//! in the past, between snapshots (`web/netcode.js`).
//!
//! The parts, one concept each:
//! * [`sim`]: the rules and `step`; [`sim::vectors`] writes the shared test vectors;
//! * [`protocol`]: the binary messages and their codec;
//! * [`room`]: one room's task (seats, bots, reconnection, the tick);
//! * [`lobby`]: rooms by name and the list shown in the lobby;
//! * [`bots`]: the bots' minds;
//! * [`mailbox`]: a connection's own outbox (latest state wins, events bounded);
//! * [`fanout`]: the room's publishing interface ([`fanout::Topic`]), over the library's
//!   pub/sub hub ([`fanout::HubTopic`]);
//! * [`connection`]: one page's reader and writer;
//! * [`server`]: HTTP, `/stats` and `/ws` on one port; [`assets`]: the embedded page;
//! * [`stats`]: counters and histograms; [`mod@bench`]: the load generator.
#![warn(missing_docs)]

pub mod assets;
pub mod bench;
pub mod bots;
pub mod connection;
pub mod fanout;
pub mod lobby;
pub mod mailbox;
pub mod protocol;
pub mod room;
pub mod server;
pub mod sim;
pub mod stats;

pub use connection::Timing;
pub use server::{serve, GameConfig};
