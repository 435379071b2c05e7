//! The room: the set of connected clients and the broadcast of every message to all
//! of them (gorilla's `Hub`), on the library's pub/sub hub ([`yamabiko::hub`]).
//!
//! Every client subscribes its connection to the room's one topic. A message is
//! framed once and queued on every subscriber's connection without waiting for any of
//! them; each connection's own read pump writes what was queued for it. A client whose
//! connection has more than `max_queued` bytes unsent — it reads slower than the room
//! talks — is closed by the hub with 1013 (try again later) on the spot, so a slow
//! client costs at most its bound and never holds the others back.
//!
//! What is left here is the chat's own bookkeeping: why clients left, for the log and
//! the tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use yamabiko::hub::{Backpressure, Subscriber, Subscription};
use yamabiko::{CloseCode, Message};

/// Why a client left the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The connection ended from the other side (close frame, end of stream, error).
    Closed,
    /// No pong (nor anything else) arrived within the pong wait of a keepalive ping.
    ReadTimeout,
    /// The hub closed the client because it fell `max_queued` bytes behind.
    Dropped,
}

/// What the room has seen, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Clients in the room now.
    pub clients: usize,
    /// Messages broadcast.
    pub broadcasts: u64,
    /// Clients the hub closed because they fell behind (the library hub's count).
    pub dropped: u64,
    /// Clients gone for each other reason, as their connections reported it.
    pub closed: u64,
    /// See [`Ending::ReadTimeout`].
    pub read_timeouts: u64,
}

/// The room; cheap to clone (the clones share it).
#[derive(Clone)]
pub struct Hub {
    hub: yamabiko::hub::Hub<()>,
    backpressure: Backpressure,
    /// Endings as the connections reported them (`clients` and `dropped` come from
    /// the library hub).
    endings: Arc<Mutex<Stats>>,
}

impl Hub {
    /// A room whose clients may each fall `max_queued` bytes behind; past that the hub
    /// closes them, giving the close frame `grace` to go out.
    pub fn new(max_queued: usize, grace: Duration) -> Hub {
        Hub {
            hub: yamabiko::hub::Hub::new(),
            backpressure: Backpressure::close(max_queued, CloseCode::TRY_AGAIN_LATER, grace),
            endings: Arc::default(),
        }
    }

    /// Enters the room until the returned subscription is dropped.
    pub fn join(&self, connection: &impl Subscriber) -> Subscription<()> {
        self.hub
            .subscribe((), connection, self.backpressure.clone())
    }

    /// Counts why a client left (its subscription is dropped separately).
    pub fn left(&self, ending: Ending) {
        let mut endings = self.endings.lock().unwrap_or_else(|e| e.into_inner());
        match ending {
            Ending::ReadTimeout => endings.read_timeouts += 1,
            Ending::Closed => endings.closed += 1,
            // Counted by the library hub.
            Ending::Dropped => {}
        }
    }

    /// Sends `message` to every client in the room, the sender included. Never waits.
    pub fn broadcast(&self, message: Message) {
        self.endings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .broadcasts += 1;
        self.hub.publish(&(), message);
    }

    /// What the room has seen so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self
            .endings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        stats.clients = self.hub.subscribers(&());
        stats.dropped = self.hub.stats().closed_slow;
        stats
    }
}
