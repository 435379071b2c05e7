//! The lobby: the rooms by name (made on first join, gone a while after the last
//! person leaves) and the list of them that pages in the lobby see, published as a
//! latest-wins message whenever it changes.

use crate::fanout::{LocalTopic, SubscriberId, Topic};
use crate::mailbox::Mailbox;
use crate::protocol::server::{NoticeCode, RoomInfo, ServerMsg, MAX_LOBBY_ROOMS};
use crate::room::{self, prepare, RoomConfig, RoomHandle};
use crate::stats::{Census, Stats};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the lobby list is checked for changes.
const LIST_PERIOD: Duration = Duration::from_millis(500);

/// See the module documentation.
pub struct Lobby {
    rooms: Mutex<HashMap<Arc<str>, RoomHandle>>,
    topic: Mutex<LocalTopic>,
    last_list: Mutex<Vec<u8>>,
    next_id: AtomicU64,
    config: RoomConfig,
    max_rooms: usize,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
}

impl Lobby {
    /// A lobby whose rooms run with `config`, at most `max_rooms` at once; its list
    /// publisher runs until `shutdown`.
    pub fn new(
        config: RoomConfig,
        max_rooms: usize,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> Arc<Lobby> {
        let lobby = Arc::new(Lobby {
            rooms: Mutex::default(),
            topic: Mutex::default(),
            last_list: Mutex::default(),
            next_id: AtomicU64::new(1),
            config,
            max_rooms,
            stats,
            shutdown,
        });
        tokio::spawn(publish_list(Arc::downgrade(&lobby)));
        lobby
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<Arc<str>, RoomHandle>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn topic(&self) -> MutexGuard<'_, LocalTopic> {
        self.topic.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room called `name`, made if need be.
    pub fn room(self: &Arc<Self>, name: &str) -> Result<RoomHandle, NoticeCode> {
        let mut rooms = self.rooms();
        if let Some(room) = rooms.get(name) {
            return Ok(room.clone());
        }
        if rooms.len() >= self.max_rooms {
            return Err(NoticeCode::TooManyRooms);
        }
        let name: Arc<str> = Arc::from(name);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let weak = Arc::downgrade(self);
        let key = name.clone();
        let handle = room::spawn(
            name.clone(),
            id,
            self.config.clone(),
            self.stats.clone(),
            self.shutdown.child_token(),
            move || {
                if let Some(lobby) = weak.upgrade() {
                    let mut rooms = lobby.rooms();
                    if rooms.get(&key).is_some_and(|r| r.id == id) {
                        rooms.remove(&key);
                    }
                }
            },
        );
        rooms.insert(name, handle.clone());
        Ok(handle)
    }

    /// The rooms, busiest first (people before bots), at most
    /// [`MAX_LOBBY_ROOMS`].
    pub fn list(&self) -> Vec<RoomInfo> {
        let mut list: Vec<RoomInfo> = self
            .rooms()
            .values()
            .map(|r| RoomInfo {
                name: r.name.to_string(),
                players: r.counts.players.load(Ordering::Relaxed).min(255) as u8,
                bots: r.counts.bots.load(Ordering::Relaxed).min(255) as u8,
                spectators: r.counts.spectators.load(Ordering::Relaxed).min(65_535) as u16,
            })
            .collect();
        list.sort_by(|a, b| {
            let people = |r: &RoomInfo| r.players - r.bots.min(r.players);
            people(b)
                .cmp(&people(a))
                .then(b.spectators.cmp(&a.spectators))
                .then(a.name.cmp(&b.name))
        });
        list.truncate(MAX_LOBBY_ROOMS);
        list
    }

    /// Rooms, seats and watchers, for `/stats`.
    pub fn census(&self) -> Census {
        let rooms = self.rooms();
        let mut c = Census {
            rooms: rooms.len() as u64,
            ..Census::default()
        };
        for r in rooms.values() {
            c.players += r.counts.players.load(Ordering::Relaxed);
            c.bots += r.counts.bots.load(Ordering::Relaxed);
            c.spectators += r.counts.spectators.load(Ordering::Relaxed);
        }
        c
    }

    /// Shows the list to a page in the lobby, now and whenever it changes.
    pub fn subscribe(&self, id: SubscriberId, mailbox: Arc<Mailbox>) {
        mailbox.put_latest(prepare(&ServerMsg::Lobby(self.list())));
        self.topic().subscribe(id, mailbox);
    }

    /// Stops showing the list to a page.
    pub fn unsubscribe(&self, id: SubscriberId) {
        self.topic().unsubscribe(id);
    }
}

/// Publishes the list whenever it changed, until the lobby is gone or shut down.
async fn publish_list(lobby: Weak<Lobby>) {
    let mut ticker = tokio::time::interval(LIST_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = match lobby.upgrade() {
        Some(l) => l.shutdown.clone(),
        None => return,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(lobby) = lobby.upgrade() else { return };
        let msg = ServerMsg::Lobby(lobby.list()).encode();
        let changed = {
            let mut last = lobby.last_list.lock().unwrap_or_else(|e| e.into_inner());
            let changed = *last != msg;
            if changed {
                *last = msg.clone();
            }
            changed
        };
        if changed {
            let prepared = yamabiko::PreparedMessage::new(yamabiko::Message::binary(msg));
            lobby.topic().publish_latest(&prepared);
        }
    }
}
