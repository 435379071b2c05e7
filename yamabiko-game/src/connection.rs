//! One page's WebSocket: a reader that decodes and acts on its messages, and a writer
//! that drains its [`Mailbox`].
//!
//! * The **reader** checks every message (a malformed one closes the connection with
//!   the code of its [`DecodeError`](crate::protocol::DecodeError); a text message with
//!   1003; far too many with 4004), moves the page between the lobby and a room, and
//!   puts inputs straight into the seat's inbox.
//! * The **writer** waits on the mailbox and writes whatever is there (events, then
//!   the latest snapshot) in one flush, under a write deadline: a page that cannot
//!   take its messages within [`Timing::write_timeout`] is closed with 1008, and its
//!   room never waits for it. A room's own snapshots and events come through the
//!   room's pub/sub hub ([`HubTopic`](crate::fanout::HubTopic)), written by the room or
//!   the reader; every write timeout the writer flushes under the deadline, so a page
//!   that stops taking those is closed the same way. It also pings, so idle pages are
//!   noticed.
//!
//! Compression is off on this socket (snapshots are small and differ every tick), and
//! Nagle is off on the TCP connection (the accept loop sets `TCP_NODELAY`).

use crate::lobby::Lobby;
use crate::mailbox::{Closing, Mailbox};
use crate::protocol::client::{ClientMsg, Input};
use crate::protocol::server::{NoticeCode, ServerMsg};
use crate::protocol::{close, MAX_CLIENT_MESSAGE};
use crate::room::{prepare, JoinError, RoomHandle};
use crate::stats::{add, Stats};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use yamabiko::{Control, Error, Message, ReadHalf, WriteHalf};

/// Keep-alive and write timing of every connection.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often the server pings.
    pub ping_interval: Duration,
    /// A page silent this long (no message, no pong) is dropped.
    pub idle_timeout: Duration,
    /// A write taking longer marks the page too slow (close 1008).
    pub write_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(3),
        }
    }
}

/// What every connection shares.
pub(crate) struct Context {
    pub lobby: Arc<Lobby>,
    pub stats: Arc<Stats>,
    pub timing: Timing,
    pub tick_hz: u32,
    pub shutdown: CancellationToken,
    pub send_buffer: usize,
}

/// Where a page is.
enum Place {
    Nowhere,
    Lobby,
    Playing {
        room: RoomHandle,
        slot: u8,
        epoch: u64,
        inbox: Arc<crate::room::Inbox>,
    },
    Watching {
        room: RoomHandle,
    },
}

/// Runs one page's connection until it ends.
pub(crate) async fn run(ctx: Arc<Context>, conn: yamabiko::Conn<TcpStream>, id: u64) {
    add(&ctx.stats.connections, 1);
    let (mut read, write) = conn.split();
    let timing = ctx.timing;
    read.set_read_limit(MAX_CLIENT_MESSAGE);
    read.set_read_deadline(Some(Instant::now() + timing.idle_timeout));
    read.set_pong_handler(move |hc, _| {
        hc.set_read_deadline(Some(Instant::now() + timing.idle_timeout));
        Ok(())
    });
    let mailbox = Arc::new(Mailbox::for_connection(write.control_handle()));
    let writer = tokio::spawn(write_pump(write, mailbox.clone(), ctx.clone()));
    let mut session = Session {
        ctx: ctx.clone(),
        id,
        mailbox: mailbox.clone(),
        place: Place::Nowhere,
        window_start: Instant::now(),
        window_count: 0,
    };
    session.read_pump(&mut read).await;
    session.leave_place(false).await;
    if !mailbox.is_closed() {
        mailbox.close(Closing::Drop);
    }
    let _ = writer.await;
    ctx.stats
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

struct Session {
    ctx: Arc<Context>,
    id: u64,
    mailbox: Arc<Mailbox>,
    place: Place,
    window_start: Instant,
    window_count: u32,
}

impl Session {
    fn close(&self, code: u16, reason: impl Into<String>) {
        let mut reason = reason.into();
        // A close reason is at most 123 bytes.
        while reason.len() > 123 {
            reason.pop();
        }
        tracing::debug!(conn = self.id, code, %reason, "closing");
        self.mailbox.close(Closing::Close(code, reason));
    }

    fn bad(&self, code: u16, reason: impl Into<String>) {
        add(&self.ctx.stats.bad_messages, 1);
        self.close(code, reason);
    }

    async fn read_pump(&mut self, read: &mut ReadHalf<TcpStream>) {
        let idle = self.ctx.timing.idle_timeout;
        // Made once, not per message: registering with the cancellation tokens costs.
        let mailbox = self.mailbox.clone();
        let ctx = self.ctx.clone();
        let stop = async {
            tokio::select! {
                _ = mailbox.closed() => false,
                _ = ctx.shutdown.cancelled() => true,
            }
        };
        tokio::pin!(stop);
        // The read deadline is pushed out at most every few seconds, not per message.
        let mut deadline = Instant::now() + idle;
        loop {
            let result = tokio::select! {
                biased;
                shutting_down = &mut stop => {
                    if shutting_down {
                        self.close(close::GOING_AWAY, "the server is shutting down");
                    }
                    return;
                }
                r = read.read_message() => r,
            };
            match result {
                Ok(Message::Binary(bytes)) => {
                    let now = Instant::now();
                    if deadline < now + idle - idle / 8 {
                        deadline = now + idle;
                        read.set_read_deadline(Some(deadline));
                    }
                    if !self.rate_ok(now) {
                        self.bad(close::TOO_MANY_MESSAGES, "too many messages");
                        return;
                    }
                    match ClientMsg::decode(&bytes) {
                        Ok(msg) => self.handle(msg).await,
                        Err(e) => {
                            self.bad(e.close_code(), e.to_string());
                            return;
                        }
                    }
                }
                Ok(Message::Text(_)) => {
                    self.bad(
                        close::TEXT_NOT_ACCEPTED,
                        "text messages are not part of the protocol: it is binary",
                    );
                    return;
                }
                Err(Error::Timeout) => {
                    tracing::debug!(conn = self.id, "idle, dropping");
                    self.mailbox.close(Closing::Drop);
                    return;
                }
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "connection ended");
                    self.mailbox.close(Closing::Drop);
                    return;
                }
            }
            if self.mailbox.is_closed() {
                return;
            }
        }
    }

    /// At most four times the tick rate (plus some slack) messages per second.
    fn rate_ok(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.window_count = 0;
        }
        self.window_count += 1;
        self.window_count <= 4 * self.ctx.tick_hz + 20
    }

    fn notice(&self, code: NoticeCode, text: &str) {
        let _ = self.mailbox.push_event(prepare(&ServerMsg::Notice {
            code,
            text: text.to_owned(),
        }));
    }

    async fn handle(&mut self, msg: ClientMsg) {
        match msg {
            ClientMsg::Lobby => match self.place {
                Place::Nowhere => {
                    self.ctx.lobby.subscribe(self.id, self.mailbox.clone());
                    self.place = Place::Lobby;
                }
                Place::Lobby => {}
                _ => self.bad(close::OUT_OF_ORDER, "lobby while in a room: leave first"),
            },
            ClientMsg::Join {
                room,
                name,
                spectate,
                token,
            } => {
                if matches!(self.place, Place::Playing { .. } | Place::Watching { .. }) {
                    return self.bad(close::OUT_OF_ORDER, "join while in a room: leave first");
                }
                self.join(room, name, spectate, token).await;
            }
            ClientMsg::Leave => self.leave_place(true).await,
            ClientMsg::Input(input) => self.input(input),
        }
    }

    fn input(&self, input: Input) {
        match &self.place {
            Place::Playing { inbox, .. } => {
                add(&self.ctx.stats.inputs, 1);
                if !inbox.push(input) {
                    add(&self.ctx.stats.inputs_dropped, 1);
                }
            }
            _ => self.bad(close::OUT_OF_ORDER, "input without a seat"),
        }
    }

    async fn join(
        &mut self,
        room: String,
        name: String,
        spectate: bool,
        token: Option<crate::protocol::Token>,
    ) {
        let room_name = room.trim();
        if room_name.is_empty() {
            return self.notice(NoticeCode::BadRoomName, "the room needs a name");
        }
        let name = match name.trim() {
            "" => "名無しさん".to_owned(),
            n => n.to_owned(),
        };
        // A room may shut down between finding it and joining: ask again.
        for _ in 0..3 {
            let room = match self.ctx.lobby.room(room_name) {
                Ok(r) => r,
                Err(code) => {
                    return self.notice(code, "the server has too many rooms; join one of them")
                }
            };
            if spectate {
                match room.spectate(self.id, self.mailbox.clone()).await {
                    Ok(()) => {
                        self.leave_lobby();
                        self.place = Place::Watching { room };
                        return;
                    }
                    Err(JoinError::Gone) => continue,
                    Err(JoinError::Full) => return,
                }
            }
            match room
                .join(name.clone(), token, self.id, self.mailbox.clone())
                .await
            {
                Ok(joined) => {
                    self.leave_lobby();
                    self.place = Place::Playing {
                        room,
                        slot: joined.slot,
                        epoch: joined.epoch,
                        inbox: joined.inbox,
                    };
                    return;
                }
                Err(JoinError::Gone) => continue,
                Err(JoinError::Full) => {
                    return self.notice(NoticeCode::RoomFull, "that room is full: 16 people")
                }
            }
        }
        self.notice(
            NoticeCode::ServerBusy,
            "the room could not be joined; try again",
        );
    }

    fn leave_lobby(&mut self) {
        if matches!(self.place, Place::Lobby) {
            self.ctx.lobby.unsubscribe(self.id);
            self.place = Place::Nowhere;
        }
    }

    /// Leaves the lobby or room; `now` gives the seat up at once, otherwise it waits
    /// for the grace period.
    async fn leave_place(&mut self, now: bool) {
        match std::mem::replace(&mut self.place, Place::Nowhere) {
            Place::Nowhere => {}
            Place::Lobby => self.ctx.lobby.unsubscribe(self.id),
            Place::Playing {
                room, slot, epoch, ..
            } => {
                if now {
                    room.leave(slot, epoch).await;
                } else {
                    room.disconnected(slot, epoch).await;
                }
            }
            Place::Watching { room } => room.unwatch(self.id).await,
        }
    }
}

/// Writes what the mailbox holds, pings, watches the write deadline, and sends the
/// close frame at the end. (A room's snapshots and events are written by the room's
/// hub and the connection's reader, not here; the deadline watch covers them too.)
async fn write_pump(mut write: WriteHalf<TcpStream>, mailbox: Arc<Mailbox>, ctx: Arc<Context>) {
    let timing = ctx.timing;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + timing.ping_interval,
        timing.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Every write timeout, a flush under the deadline: a page whose queue (hub
    // deliveries included) cannot be written out within it is too slow. One timer per
    // connection every few seconds, instead of a deadline per write.
    let mut watch = tokio::time::interval_at(
        tokio::time::Instant::now() + timing.write_timeout,
        timing.write_timeout,
    );
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let closed = mailbox.closed();
    tokio::pin!(closed);
    // The write deadline is moved at most every half timeout, not per write: a write
    // that sticks fails after between half and all of the timeout.
    let mut deadline = Instant::now();
    loop {
        let (mut bytes, mut frames) = (0u64, 0u64);
        let mut queued = Ok(());
        let taken = tokio::select! {
            biased;
            // Queued on the connection with the mailbox locked (see `HubTopic`).
            taken = mailbox.take_with(|msg| {
                let len = msg.message().len() as u64;
                bytes += len + if len < 126 { 2 } else { 4 };
                frames += 1;
                queued = write.queue_prepared(&msg);
                queued.is_ok()
            }) => taken,
            _ = ping.tick() => {
                let deadline = Instant::now() + timing.write_timeout;
                if let Err(e) = write.write_control(Control::ping(&b"game"[..]), Some(deadline)).await {
                    tracing::debug!(error = %e, "ping failed");
                    mailbox.close(Closing::Drop);
                }
                continue;
            }
            _ = watch.tick() => Ok(()),
        };
        match taken {
            Ok(()) => {}
            Err(Closing::Drop) => return,
            Err(Closing::Close(code, reason)) => {
                let deadline = Instant::now() + Duration::from_secs(1);
                let _ = write
                    .write_control(Control::close(code, reason), Some(deadline))
                    .await;
                return;
            }
        }
        if queued.is_err() {
            mailbox.close(Closing::Drop);
            return;
        }
        let now = Instant::now();
        if deadline < now + timing.write_timeout / 2 {
            deadline = now + timing.write_timeout;
            write.set_write_deadline(Some(deadline));
        }
        let flushed = tokio::select! {
            r = write.flush() => r,
            // Closed meanwhile (taken over, shutting down): stop writing to it.
            _ = &mut closed => return,
        };
        match flushed {
            Ok(()) => {
                add(&ctx.stats.bytes_out, bytes);
                add(&ctx.stats.frames_out, frames);
            }
            Err(Error::Timeout) => {
                tracing::info!("write deadline passed, page too slow (close 1008)");
                add(&ctx.stats.slow_closed, 1);
                mailbox.close(Closing::Close(close::TOO_SLOW, "too slow".into()));
                // The socket is stuck; the close frame gets a short chance behind
                // what is already queued.
                let deadline = Instant::now() + Duration::from_millis(500);
                let _ = write
                    .write_control(Control::close(close::TOO_SLOW, "too slow"), Some(deadline))
                    .await;
                return;
            }
            Err(Error::TooSlow(_)) => {
                // The room's hub closed it (its events piled up; the room counted it).
                mailbox.close(Closing::Drop);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "write failed");
                mailbox.close(Closing::Drop);
                return;
            }
        }
    }
}
