//! 鬼ごっこ (tag): a realtime multiplayer browser game on yamabiko's public API.
#![warn(missing_docs)]

pub mod fanout;
pub mod mailbox;
pub mod protocol;
pub mod sim;
