//! The hub: the set of connected clients, and the broadcast of every message to all of
//! them (gorilla's `Hub`).
//!
//! One task owns the set; clients talk to it through a bounded command channel. A
//! message is framed once ([`PreparedMessage`]) and offered to every client's outbox
//! with `try_send`, so the hub never waits for anyone: a client whose outbox is full —
//! it reads slower than the room talks — is dropped there and then (its outbox closes,
//! its writer says goodbye and hangs up). A slow client therefore costs at most its
//! outbox (`queue_len` messages of at most `max_message_size` bytes, the frames shared
//! with every other outbox) and never holds the others back.
//!
//! Nothing here knows about sockets: the hub moves prepared messages between channels,
//! which is what a library pub/sub hub would take over.

use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use yamabiko::{Message, PreparedMessage};

/// Why a client left the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The connection ended from the other side (close frame, end of stream, error).
    Closed,
    /// No pong (nor anything else) arrived within the pong wait.
    ReadTimeout,
    /// A write did not complete by the write deadline: the peer stopped reading.
    WriteTimeout,
    /// The hub dropped the client because its outbox was full.
    Dropped,
}

/// What the hub has seen, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Clients in the room now.
    pub clients: usize,
    /// Messages broadcast.
    pub broadcasts: u64,
    /// Clients dropped because their outbox was full.
    pub dropped: u64,
    /// Clients gone for each other reason, as their connections reported it.
    pub closed: u64,
    /// See [`Ending::ReadTimeout`].
    pub read_timeouts: u64,
    /// See [`Ending::WriteTimeout`].
    pub write_timeouts: u64,
}

/// The client's side of the hub: where it receives the room's messages.
pub type Outbox = mpsc::Receiver<PreparedMessage>;

enum Command {
    Join {
        outbox: mpsc::Sender<PreparedMessage>,
        id: oneshot::Sender<u64>,
    },
    Leave {
        id: u64,
        ending: Ending,
    },
    Broadcast(Message),
    Stats(oneshot::Sender<Stats>),
}

/// A handle on the hub task; cheap to clone. The task ends when every handle is gone.
#[derive(Clone)]
pub struct Hub {
    commands: mpsc::Sender<Command>,
    queue_len: usize,
}

impl Hub {
    /// Starts the hub task. Each client's outbox holds up to `queue_len` messages.
    pub fn start(queue_len: usize) -> Hub {
        // Readers wait when the hub is behind: TCP pushes back on the senders.
        let (commands, rx) = mpsc::channel(1024);
        tokio::spawn(run(rx));
        Hub {
            commands,
            queue_len,
        }
    }

    /// Enters the room: returns the client's id and its outbox.
    pub async fn join(&self) -> Option<(u64, Outbox)> {
        let (outbox, inbox) = mpsc::channel(self.queue_len.max(1));
        let (id, rx) = oneshot::channel();
        self.commands
            .send(Command::Join { outbox, id })
            .await
            .ok()?;
        Some((rx.await.ok()?, inbox))
    }

    /// Leaves the room, saying why.
    pub async fn leave(&self, id: u64, ending: Ending) {
        let _ = self.commands.send(Command::Leave { id, ending }).await;
    }

    /// Sends `message` to every client in the room, the sender included.
    pub async fn broadcast(&self, message: Message) {
        let _ = self.commands.send(Command::Broadcast(message)).await;
    }

    /// What the hub has seen so far.
    pub async fn stats(&self) -> Stats {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stats(tx)).await.is_err() {
            return Stats::default();
        }
        rx.await.unwrap_or_default()
    }
}

async fn run(mut commands: mpsc::Receiver<Command>) {
    let mut clients: HashMap<u64, mpsc::Sender<PreparedMessage>> = HashMap::new();
    let mut next_id = 0u64;
    let mut stats = Stats::default();
    while let Some(command) = commands.recv().await {
        match command {
            Command::Join { outbox, id } => {
                next_id += 1;
                clients.insert(next_id, outbox);
                let _ = id.send(next_id);
            }
            Command::Leave { id, ending } => {
                // A client the hub dropped was counted then.
                if clients.remove(&id).is_some() {
                    match ending {
                        Ending::ReadTimeout => stats.read_timeouts += 1,
                        Ending::WriteTimeout => stats.write_timeouts += 1,
                        Ending::Closed | Ending::Dropped => stats.closed += 1,
                    }
                }
            }
            Command::Broadcast(message) => {
                stats.broadcasts += 1;
                // Framed once; every outbox holds the same frame.
                let prepared = PreparedMessage::new(message);
                clients.retain(|id, outbox| match outbox.try_send(prepared.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        eprintln!("chat: client {id} is too slow, dropping it");
                        stats.dropped += 1;
                        false // dropping the sender closes the outbox
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
            }
            Command::Stats(reply) => {
                stats.clients = clients.len();
                let _ = reply.send(stats.clone());
            }
        }
    }
}
