//! A room: one task that owns the game state, ticks it at the configured rate and
//! publishes every tick's snapshot (framed once) to everyone in the room.
//!
//! Connections talk to the room through [`RoomHandle`]: joins, leaves, disconnects
//! and spectators go over a channel to the room task; inputs go straight into the
//! seat's [`Inbox`], which the room drains at each tick — one input per tick per
//! player on average, a few more to catch up after a stall (so a fast sender cannot
//! outrun the others, and an input that arrives before a tick is applied at that
//! tick). The page paces its inputs by the server's clock, so they do not queue.
//!
//! Seats: 16 per room. Bots fill a room up to [`RoomConfig::bot_fill`] circles and
//! make way for people. A person whose connection drops keeps the seat for
//! [`RoomConfig::grace`] (away: frozen, faded); a join with the seat's token within that
//! time gets it back — same id, score and position — and takes it from any older
//! connection still holding it (closed with 4003), so there is never a second avatar.

use crate::bots::{Bot, BOT_NAMES};
use crate::fanout::{Delivery, HubTopic, SubscriberId, Topic};
use crate::mailbox::{Closing, Mailbox};
use crate::protocol::client::Input;
use crate::protocol::server::{Seat as SeatInfo, ServerMsg, Snapshot, TagEvent, Welcome};
use crate::protocol::{close, Token};
use crate::sim::{step, Command, Params, State, MAX_PLAYERS};
use crate::stats::{add, Stats};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use yamabiko::{Message, PreparedMessage};

/// Inputs a seat may have waiting; beyond that the oldest is dropped.
pub const INBOX_LEN: usize = 8;
/// Inputs a player may have applied in one tick (catching up after a stall).
pub const MAX_INPUTS_PER_TICK: u32 = 4;
/// Inputs left waiting after a tick, at most: a page that sends faster than the tick
/// rate loses its oldest extra inputs rather than building a queue that delays all
/// later ones.
pub const MAX_BACKLOG: usize = 2;
/// Commands a room's channel holds.
const CHANNEL_LEN: usize = 256;

/// How rooms run.
#[derive(Clone, Debug)]
pub struct RoomConfig {
    /// The rules (and tick rate).
    pub params: Params,
    /// Whether bots fill empty seats.
    pub bots: bool,
    /// Circles a room is filled to with bots.
    pub bot_fill: usize,
    /// How long a disconnected player keeps the seat.
    pub grace: Duration,
    /// How long a room without people (players or spectators) lives on.
    pub linger: Duration,
}

/// A player's waiting inputs, filled by the connection and drained by the room.
#[derive(Debug, Default)]
pub struct Inbox {
    queue: Mutex<VecDeque<Input>>,
}

impl Inbox {
    /// Queues an input; returns false when the queue was full and its oldest input
    /// was dropped to make room.
    pub fn push(&self, input: Input) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = q.len() >= INBOX_LEN;
        if dropped {
            q.pop_front();
        }
        q.push_back(input);
        !dropped
    }

    /// Moves up to `max` inputs, oldest first, into `out` as commands of `slot`, then
    /// trims what is left to [`MAX_BACKLOG`]. Returns (moved, dropped).
    fn drain(&self, slot: u8, max: u32, out: &mut Vec<Command>) -> (u32, u64) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.len().min(max as usize);
        for input in q.drain(..n) {
            out.push(Command {
                slot,
                seq: input.seq,
                dx: input.dx,
                dy: input.dy,
                view_tick: input.view_tick,
            });
        }
        let excess = q.len().saturating_sub(MAX_BACKLOG);
        q.drain(..excess);
        (n as u32, excess as u64)
    }
}

/// What a successful join gives the connection.
#[derive(Debug)]
pub struct Joined {
    /// The seat.
    pub slot: u8,
    /// Identifies this connection's hold on the seat (a takeover makes a new one).
    pub epoch: u64,
    /// Where the connection puts the player's inputs.
    pub inbox: Arc<Inbox>,
}

/// Why a join failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// All seats are people's.
    Full,
    /// The room has just shut down; ask the lobby again.
    Gone,
}

/// Requests to a room task.
#[derive(Debug)]
pub(crate) enum RoomCmd {
    Join {
        name: String,
        token: Option<Token>,
        sub: SubscriberId,
        mailbox: Arc<Mailbox>,
        reply: oneshot::Sender<Result<Joined, JoinError>>,
    },
    Spectate {
        sub: SubscriberId,
        mailbox: Arc<Mailbox>,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    /// The player gave up the seat.
    Leave { slot: u8, epoch: u64 },
    /// The player's connection ended: keep the seat for the grace period.
    Disconnected { slot: u8, epoch: u64 },
    /// A spectator left.
    Unwatch { sub: SubscriberId },
}

/// Who is in a room, for the lobby's list (updated by the room task).
#[derive(Debug, Default)]
pub struct RoomCounts {
    /// Seats taken (bots included).
    pub players: AtomicU64,
    /// Seats taken by bots.
    pub bots: AtomicU64,
    /// People watching.
    pub spectators: AtomicU64,
}

/// A connection's way to a room.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    /// The room's name.
    pub name: Arc<str>,
    /// Unique per room task (a room of the same name made later has another).
    pub id: u64,
    tx: mpsc::Sender<RoomCmd>,
    /// Who is in it.
    pub counts: Arc<RoomCounts>,
}

impl RoomHandle {
    /// Takes a seat (or the seat of `token`, within its grace period).
    pub async fn join(
        &self,
        name: String,
        token: Option<Token>,
        sub: SubscriberId,
        mailbox: Arc<Mailbox>,
    ) -> Result<Joined, JoinError> {
        let (reply, answer) = oneshot::channel();
        let cmd = RoomCmd::Join {
            name,
            token,
            sub,
            mailbox,
            reply,
        };
        if self.tx.send(cmd).await.is_err() {
            return Err(JoinError::Gone);
        }
        answer.await.unwrap_or(Err(JoinError::Gone))
    }

    /// Watches the room.
    pub async fn spectate(
        &self,
        sub: SubscriberId,
        mailbox: Arc<Mailbox>,
    ) -> Result<(), JoinError> {
        let (reply, answer) = oneshot::channel();
        if self
            .tx
            .send(RoomCmd::Spectate {
                sub,
                mailbox,
                reply,
            })
            .await
            .is_err()
        {
            return Err(JoinError::Gone);
        }
        answer.await.unwrap_or(Err(JoinError::Gone))
    }

    /// Gives up the seat now.
    pub async fn leave(&self, slot: u8, epoch: u64) {
        let _ = self.tx.send(RoomCmd::Leave { slot, epoch }).await;
    }

    /// Reports that the player's connection ended (the seat waits for the grace
    /// period).
    pub async fn disconnected(&self, slot: u8, epoch: u64) {
        let _ = self.tx.send(RoomCmd::Disconnected { slot, epoch }).await;
    }

    /// Stops watching.
    pub async fn unwatch(&self, sub: SubscriberId) {
        let _ = self.tx.send(RoomCmd::Unwatch { sub }).await;
    }
}

/// A person's hold on a seat.
#[derive(Debug)]
struct Person {
    token: Token,
    epoch: u64,
    /// The connection holding the seat, if any (none while away).
    conn: Option<(SubscriberId, Arc<Mailbox>)>,
    inbox: Arc<Inbox>,
    /// Inputs this player may still have applied (refilled by one per tick).
    budget: u32,
    away_since: Option<Instant>,
}

#[derive(Debug)]
enum Occupant {
    Person(Person),
    Bot(Bot),
}

#[derive(Debug)]
struct Seat {
    name: String,
    occupant: Occupant,
}

static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// The room task's state. See the module documentation.
pub(crate) struct Room {
    name: Arc<str>,
    config: RoomConfig,
    state: State,
    seats: [Option<Seat>; MAX_PLAYERS],
    topic: Box<dyn Topic>,
    spectators: HashSet<SubscriberId>,
    counts: Arc<RoomCounts>,
    stats: Arc<Stats>,
    seed: u64,
    idle_since: Option<Instant>,
    commands: Vec<Command>,
    snapshot: Vec<u8>,
}

/// Starts a room task; `ended` runs when it stops (after which joins get
/// [`JoinError::Gone`]).
pub(crate) fn spawn(
    name: Arc<str>,
    id: u64,
    config: RoomConfig,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    ended: impl FnOnce() + Send + 'static,
) -> RoomHandle {
    let (tx, rx) = mpsc::channel(CHANNEL_LEN);
    let counts = Arc::new(RoomCounts::default());
    let mut room = Room {
        name: name.clone(),
        config,
        state: State::new(),
        seats: Default::default(),
        topic: Box::new(HubTopic::new(Some(stats.clone()))),
        spectators: HashSet::new(),
        counts: counts.clone(),
        stats,
        seed: rand::random(),
        idle_since: None,
        commands: Vec::with_capacity(MAX_PLAYERS * 2),
        snapshot: Vec::with_capacity(160),
    };
    room.rebalance_bots();
    room.update_counts();
    tokio::spawn(async move {
        room.run(rx, shutdown).await;
        ended();
    });
    RoomHandle {
        name,
        id,
        tx,
        counts,
    }
}

impl Room {
    async fn run(&mut self, mut rx: mpsc::Receiver<RoomCmd>, shutdown: CancellationToken) {
        let period = Duration::from_secs(1) / self.config.params.tick_hz;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tracing::debug!(room = %self.name, "room opened");
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break,
                },
                due = ticker.tick() => {
                    let start = Instant::now();
                    self.stats.tick_lateness.record(start.saturating_duration_since(due.into_std()));
                    self.tick(start);
                    self.stats.tick_duration.record(start.elapsed());
                    if self.idle_for(start) > self.config.linger {
                        break;
                    }
                }
            }
        }
        // Whoever asks from now on hears that the room is gone.
        rx.close();
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                RoomCmd::Join { reply, .. } => {
                    let _ = reply.send(Err(JoinError::Gone));
                }
                RoomCmd::Spectate { reply, .. } => {
                    let _ = reply.send(Err(JoinError::Gone));
                }
                _ => {}
            }
        }
        tracing::debug!(room = %self.name, "room closed");
    }

    /// How long the room has had no people in it (players, away or not, and
    /// spectators).
    fn idle_for(&mut self, now: Instant) -> Duration {
        let people = self.spectators.len()
            + self
                .seats
                .iter()
                .flatten()
                .filter(|s| matches!(s.occupant, Occupant::Person(_)))
                .count();
        if people > 0 {
            self.idle_since = None;
            return Duration::ZERO;
        }
        now - *self.idle_since.get_or_insert(now)
    }

    fn handle(&mut self, cmd: RoomCmd) {
        match cmd {
            RoomCmd::Join {
                name,
                token,
                sub,
                mailbox,
                reply,
            } => {
                let result = self.join(name, token, sub, mailbox);
                if let Err(Ok(joined)) = reply.send(result) {
                    // The connection gave up waiting: free the seat again.
                    self.disconnect(joined.slot, joined.epoch, Instant::now());
                }
            }
            RoomCmd::Spectate {
                sub,
                mailbox,
                reply,
            } => {
                let welcome = self.welcome(None, [0; 16]);
                let _ = mailbox.push_event(welcome);
                self.topic.subscribe(sub, mailbox);
                self.spectators.insert(sub);
                if reply.send(Ok(())).is_err() {
                    // The connection gave up waiting.
                    self.topic.unsubscribe(sub);
                    self.spectators.remove(&sub);
                }
            }
            RoomCmd::Leave { slot, epoch } => {
                if self.holds(slot, epoch) {
                    self.remove_seat(slot);
                    self.rebalance_bots();
                }
            }
            RoomCmd::Disconnected { slot, epoch } => {
                self.disconnect(slot, epoch, Instant::now());
            }
            RoomCmd::Unwatch { sub } => {
                self.topic.unsubscribe(sub);
                self.spectators.remove(&sub);
            }
        }
        self.update_counts();
    }

    /// Whether the connection of `epoch` holds seat `slot`.
    fn holds(&self, slot: u8, epoch: u64) -> bool {
        matches!(
            self.seats.get(usize::from(slot)),
            Some(Some(Seat { occupant: Occupant::Person(p), .. })) if p.epoch == epoch
        )
    }

    fn join(
        &mut self,
        name: String,
        token: Option<Token>,
        sub: SubscriberId,
        mailbox: Arc<Mailbox>,
    ) -> Result<Joined, JoinError> {
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
        let inbox = Arc::new(Inbox::default());
        // The seat of the token, if it is still here: take it back.
        let held = token.and_then(|t| {
            self.seats.iter().position(
                |s| matches!(s, Some(Seat { occupant: Occupant::Person(p), .. }) if p.token == t),
            )
        });
        if let Some(slot) = held {
            let slot = slot as u8;
            let mut was_away = false;
            let token = {
                let Some(Some(Seat {
                    occupant: Occupant::Person(p),
                    ..
                })) = self.seats.get_mut(usize::from(slot))
                else {
                    return Err(JoinError::Gone);
                };
                if let Some((old_sub, old)) = p.conn.take() {
                    old.close(Closing::Close(
                        close::TAKEN_OVER,
                        "this seat was taken over by a newer connection".into(),
                    ));
                    self.topic.unsubscribe(old_sub);
                }
                if p.away_since.take().is_some() {
                    was_away = true;
                }
                p.epoch = epoch;
                p.inbox = inbox.clone();
                p.budget = 0;
                p.conn = Some((sub, mailbox.clone()));
                p.token
            };
            self.state.set_away(slot, false);
            if was_away {
                self.publish_presence(slot, false);
            }
            tracing::info!(room = %self.name, slot, "player is back");
            let welcome = self.welcome(Some(slot), token);
            let _ = mailbox.push_event(welcome);
            self.topic.subscribe(sub, mailbox);
            return Ok(Joined { slot, epoch, inbox });
        }
        // A new seat: make way by sending a bot home if need be.
        let people = self
            .seats
            .iter()
            .flatten()
            .filter(|s| matches!(s.occupant, Occupant::Person(_)))
            .count();
        if people >= MAX_PLAYERS {
            return Err(JoinError::Full);
        }
        if self.state.free_slot().is_none() {
            if let Some(bot) = self.bot_to_remove() {
                self.remove_seat(bot);
            }
        }
        let Some(slot) = self.state.free_slot() else {
            return Err(JoinError::Full);
        };
        let token: Token = rand::random();
        self.seat(
            slot,
            name,
            Occupant::Person(Person {
                token,
                epoch,
                conn: Some((sub, mailbox.clone())),
                inbox: inbox.clone(),
                budget: 0,
                away_since: None,
            }),
        );
        self.rebalance_bots();
        tracing::info!(room = %self.name, slot, "player joined");
        let welcome = self.welcome(Some(slot), token);
        let _ = mailbox.push_event(welcome);
        self.topic.subscribe(sub, mailbox);
        Ok(Joined { slot, epoch, inbox })
    }

    /// Seats someone at a free spot and tells the room.
    fn seat(&mut self, slot: u8, name: String, occupant: Occupant) {
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let (x, y) = self.state.spawn_point(&self.config.params, self.seed);
        self.state.add(slot, x, y);
        let bot = matches!(occupant, Occupant::Bot(_));
        self.seats[usize::from(slot)] = Some(Seat {
            name: name.clone(),
            occupant,
        });
        self.publish_event(&ServerMsg::Joined(SeatInfo {
            slot,
            name,
            bot,
            away: false,
            score: 0,
            tick: self.state.tick,
        }));
    }

    fn remove_seat(&mut self, slot: u8) {
        if let Some(seat) = self.seats[usize::from(slot)].take() {
            if let Occupant::Person(Person {
                conn: Some((sub, _)),
                ..
            }) = seat.occupant
            {
                self.topic.unsubscribe(sub);
            }
            self.state.remove(slot);
            self.publish_event(&ServerMsg::Left { slot });
        }
    }

    fn disconnect(&mut self, slot: u8, epoch: u64, now: Instant) {
        if !self.holds(slot, epoch) {
            return;
        }
        if let Some(Some(Seat {
            occupant: Occupant::Person(p),
            ..
        })) = self.seats.get_mut(usize::from(slot))
        {
            if let Some((sub, _)) = p.conn.take() {
                self.topic.unsubscribe(sub);
            }
            p.away_since = Some(now);
            p.inbox = Arc::new(Inbox::default());
        }
        self.state.set_away(slot, true);
        self.publish_presence(slot, true);
        tracing::info!(room = %self.name, slot, "player away");
    }

    /// The bot to send home when a person needs the seat: not "it" if possible, the
    /// highest seat.
    fn bot_to_remove(&self) -> Option<u8> {
        let bots: Vec<u8> = (0..MAX_PLAYERS as u8)
            .rev()
            .filter(|&i| {
                matches!(
                    self.seats[usize::from(i)],
                    Some(Seat {
                        occupant: Occupant::Bot(_),
                        ..
                    })
                )
            })
            .collect();
        bots.iter()
            .copied()
            .find(|&b| self.state.it != Some(b))
            .or_else(|| bots.first().copied())
    }

    /// Adds or sends home bots so people plus bots make `bot_fill` circles.
    fn rebalance_bots(&mut self) {
        let people = self
            .seats
            .iter()
            .flatten()
            .filter(|s| matches!(s.occupant, Occupant::Person(_)))
            .count();
        let bots = self
            .seats
            .iter()
            .flatten()
            .filter(|s| matches!(s.occupant, Occupant::Bot(_)))
            .count();
        let want = if self.config.bots {
            self.config.bot_fill.min(MAX_PLAYERS).saturating_sub(people)
        } else {
            0
        };
        for _ in want..bots {
            if let Some(bot) = self.bot_to_remove() {
                self.remove_seat(bot);
            }
        }
        for _ in bots..want {
            let Some(slot) = self.state.free_slot() else {
                break;
            };
            self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.seat(
                slot,
                BOT_NAMES[usize::from(slot)].to_owned(),
                Occupant::Bot(Bot::new(self.seed)),
            );
        }
    }

    fn welcome(&self, you: Option<u8>, token: Token) -> PreparedMessage {
        let seats = self
            .seats
            .iter()
            .enumerate()
            .filter_map(|(slot, seat)| {
                let seat = seat.as_ref()?;
                let p = self.state.players[slot]?;
                Some(SeatInfo {
                    slot: slot as u8,
                    name: seat.name.clone(),
                    bot: matches!(seat.occupant, Occupant::Bot(_)),
                    away: p.away,
                    score: p.score,
                    tick: self.state.tick,
                })
            })
            .collect();
        prepare(&ServerMsg::Welcome(Welcome {
            room: self.name.to_string(),
            you,
            token,
            params: self.config.params,
            tick: self.state.tick,
            it: self.state.it,
            immune_until: self.state.immune_until,
            seats,
        }))
    }

    fn publish_event(&mut self, msg: &ServerMsg) {
        let d = self.topic.publish_event(&prepare(msg));
        add(&self.stats.events, d.delivered as u64);
        self.count_slow(d);
    }

    fn publish_presence(&mut self, slot: u8, away: bool) {
        let score = self.state.players[usize::from(slot)].map_or(0, |p| p.score);
        self.publish_event(&ServerMsg::Presence {
            slot,
            away,
            tick: self.state.tick,
            score,
        });
    }

    fn count_slow(&self, d: Delivery) {
        if d.overflowed > 0 {
            add(&self.stats.slow_closed, d.overflowed as u64);
        }
    }

    /// One tick: expire seats past their grace period, gather inputs, step, publish.
    fn tick(&mut self, now: Instant) {
        let grace = self.config.grace;
        let expired: Vec<u8> = (0..MAX_PLAYERS as u8)
            .filter(|&i| {
                matches!(
                    &self.seats[usize::from(i)],
                    Some(Seat { occupant: Occupant::Person(Person { away_since: Some(t), .. }), .. })
                        if now.saturating_duration_since(*t) >= grace
                )
            })
            .collect();
        if !expired.is_empty() {
            for slot in expired {
                tracing::info!(room = %self.name, slot, "seat expired");
                self.remove_seat(slot);
            }
            self.rebalance_bots();
            self.update_counts();
        }

        let mut commands = std::mem::take(&mut self.commands);
        commands.clear();
        let mut dropped = 0;
        for (slot, seat) in self.seats.iter_mut().enumerate() {
            let Some(seat) = seat else { continue };
            match &mut seat.occupant {
                Occupant::Person(p) => {
                    p.budget = (p.budget + 1).min(MAX_INPUTS_PER_TICK);
                    let (applied, trimmed) = p.inbox.drain(slot as u8, p.budget, &mut commands);
                    p.budget -= applied;
                    dropped += trimmed;
                }
                Occupant::Bot(bot) => {
                    commands.push(bot.think(slot as u8, &self.state, &self.config.params));
                }
            }
        }
        if dropped > 0 {
            add(&self.stats.inputs_dropped, dropped);
        }
        let state = std::mem::take(&mut self.state);
        self.state = step(&self.config.params, state, &commands);
        self.commands = commands;

        if let Some(tag) = self.state.last_tag {
            let score = |s: Option<u8>| {
                s.and_then(|s| self.state.players[usize::from(s)])
                    .map_or(0, |p| p.score)
            };
            let event = ServerMsg::Tagged(TagEvent {
                tick: tag.tick,
                tagger: tag.tagger,
                tagged: tag.tagged,
                tagger_score: score(tag.tagger),
                tagged_score: score(Some(tag.tagged)),
            });
            self.publish_event(&event);
        }

        self.snapshot.clear();
        Snapshot::encode_state(&self.state, &mut self.snapshot);
        let msg = PreparedMessage::new(Message::binary(self.snapshot.clone()));
        let d = self.topic.publish_latest(&msg);
        add(&self.stats.ticks, 1);
        add(&self.stats.player_ticks, self.state.len() as u64);
        add(&self.stats.snapshots, d.delivered as u64);
        add(&self.stats.snapshots_replaced, d.replaced as u64);
    }

    fn update_counts(&self) {
        let players = self.seats.iter().flatten().count() as u64;
        let bots = self
            .seats
            .iter()
            .flatten()
            .filter(|s| matches!(s.occupant, Occupant::Bot(_)))
            .count() as u64;
        self.counts.players.store(players, Ordering::Relaxed);
        self.counts.bots.store(bots, Ordering::Relaxed);
        self.counts
            .spectators
            .store(self.spectators.len() as u64, Ordering::Relaxed);
    }
}

/// Frames a message once, for every connection it goes to.
pub fn prepare(msg: &ServerMsg) -> PreparedMessage {
    PreparedMessage::new(Message::binary(msg.encode()))
}
