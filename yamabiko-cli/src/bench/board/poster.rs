//! One poster: a connection that posts, at the run's pace, within the server's
//! per-connection post limit, and waits for each post's answer.
//!
//! * **Pace.** At a total rate, posters take numbered tickets (ticket *k* is due at
//!   start + k / rate) and send each when it is due; saturating, they send whenever a
//!   permit of the bounded in-flight total is free.
//! * **The post limit** (`hello`'s `posts` per `per_seconds`, 5 per 10 s) is kept with
//!   one slot per allowed post: a slot is taken by a send and comes back a window (and
//!   a little) after the post's answer — the server counted the post no later than it
//!   answered, so the next post through that slot is outside its window.
//! * **Reconnects** are the page's: a post without an answer when the connection ends
//!   is re-sent with the same `client_id` on the next connection (the server stores a
//!   client id once), to the next instance in the list.
//! * **Answers.** An `ack` is recorded with its id and number; an `error` naming the
//!   post is a refusal (by code); no answer within the post timeout is a hung post.

use super::ledger::{Acked, Ledger};
use super::link::{close_code, dial, Backoff, BoardConn, STABLE_AFTER};
use super::wire::{self, Tag};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use yamabiko::{Dialer, Message};

/// Extra wait past the server's window before a slot is used again.
const WINDOW_MARGIN: Duration = Duration::from_millis(100);

/// How posts are paced.
pub enum Pace {
    /// A total rate: ticket `k` is due `k × interval` after `start_ns`.
    Rate {
        /// Nanoseconds between tickets.
        interval_ns: u64,
        /// Next ticket.
        next: AtomicU64,
        /// When ticket 0 is due (on the ledger's clock), set before posting starts.
        start_ns: AtomicU64,
    },
    /// As fast as answers come back, at most this many posts in flight in all.
    Saturate(Arc<Semaphore>),
    /// No posts.
    Idle,
}

/// What every poster shares.
pub struct PosterPlan {
    /// The instances; poster `i` starts on `urls[i % n]` and moves on at each reconnect.
    pub urls: Vec<String>,
    /// Dials with the handshake timeout.
    pub dialer: Dialer,
    /// Where results go.
    pub ledger: Arc<Ledger>,
    /// Random per run (in tags and client ids).
    pub run: u32,
    /// Characters per post body.
    pub body_size: usize,
    /// A post unanswered this long is hung.
    pub post_timeout: Duration,
    /// The pace.
    pub pace: Pace,
    /// Round-robin over the run's threads.
    pub next_thread: AtomicUsize,
    /// Fired when posting starts.
    pub go: CancellationToken,
    /// Fired when posting stops (answers are still awaited).
    pub stop_posting: CancellationToken,
    /// Ends the poster.
    pub stop: CancellationToken,
    /// Limits concurrent first connections while setting up.
    pub gate: Arc<Semaphore>,
}

/// A post sent and not yet answered.
struct Pending {
    tag: Tag,
    thread: usize,
    text: String,
    sent_ns: u64,
    sent_at: Instant,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Why a session ended.
enum End {
    /// Nothing left to do.
    Done,
    /// The connection ended (close code).
    Lost(u16),
}

struct Poster {
    idx: usize,
    plan: Arc<PosterPlan>,
    pending: Vec<Pending>,
    seq: u32,
}

/// Runs poster `idx` until posting stopped and every post is answered (or hung), or
/// `plan.stop`. `ready` is told once it is first connected.
pub async fn run(idx: usize, plan: Arc<PosterPlan>, ready: oneshot::Sender<()>) {
    let mut poster = Poster {
        idx,
        plan: plan.clone(),
        pending: Vec::new(),
        seq: 0,
    };
    let ledger = plan.ledger.clone();
    let mut ready = Some(ready);
    let mut backoff = Backoff::new();
    let mut reconnects = 0usize;
    loop {
        if plan.stop.is_cancelled()
            || (plan.stop_posting.is_cancelled() && poster.pending.is_empty())
        {
            break;
        }
        poster.expire();
        let via = (idx + reconnects) % plan.urls.len();
        let url = &plan.urls[via];
        let dialed = {
            let _permit = match ready.is_some() {
                true => Some(plan.gate.acquire().await),
                false => None,
            };
            tokio::select! {
                _ = plan.stop.cancelled() => break,
                c = dial(&plan.dialer, url) => c,
            }
        };
        match dialed {
            Ok(conn) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                } else {
                    ledger.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                let opened = Instant::now();
                let end = poster.session(conn, via).await;
                if opened.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                match end {
                    End::Done => break,
                    End::Lost(code) => ledger.closed(code),
                }
            }
            Err(_) => {
                ledger
                    .counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        reconnects += 1;
        let delay = backoff.next_delay();
        tokio::select! {
            _ = plan.stop.cancelled() => break,
            _ = sleep(delay) => {}
        }
    }
    // Whatever is still unanswered never got an answer.
    ledger
        .counters
        .hung
        .fetch_add(poster.pending.len() as u64, Ordering::Relaxed);
    drop(ready);
}

impl Poster {
    /// Counts posts unanswered past the timeout as hung and forgets them.
    fn expire(&mut self) -> usize {
        let timeout = self.plan.post_timeout;
        let before = self.pending.len();
        self.pending.retain(|p| p.sent_at.elapsed() < timeout);
        let gone = before - self.pending.len();
        self.plan
            .ledger
            .counters
            .hung
            .fetch_add(gone as u64, Ordering::Relaxed);
        gone
    }

    /// One connection: learn the limit, re-send what is unanswered, then post and
    /// take answers until the connection ends or there is nothing left to do.
    async fn session(&mut self, mut conn: BoardConn, via: usize) -> End {
        let plan = self.plan.clone();
        let ledger = &plan.ledger;
        let (mut limit, mut window) = (5usize, Duration::from_secs(10));
        match timeout(Duration::from_secs(10), conn.read_message()).await {
            Ok(Ok(Message::Text(t))) => {
                if let Some(l) = wire::parse(t.as_str()).and_then(|m| m.limits) {
                    limit = (l.posts as usize).max(1);
                    window = Duration::from_secs(l.per_seconds);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return End::Lost(close_code(&e)),
            Err(_) => return End::Lost(1006),
        }
        let now = Instant::now();
        let mut slots: VecDeque<Instant> = (0..limit).map(|_| now).collect();
        for p in &self.pending {
            slots.pop_front();
            ledger.counters.resent.fetch_add(1, Ordering::Relaxed);
            conn.queue_message(Message::text(p.text.clone())).ok();
        }
        if !self.pending.is_empty() && conn.flush().await.is_err() {
            return End::Lost(1006);
        }
        let mut ticket: Option<(Instant, Instant)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let posting = plan.go.is_cancelled() && !plan.stop_posting.is_cancelled();
            if plan.stop_posting.is_cancelled() {
                ticket = None;
                if self.pending.is_empty() {
                    return End::Done;
                }
            }
            let now = Instant::now();
            let free_at = slots.front().copied();
            let slot_free = free_at.is_some_and(|t| t <= now);
            if posting && slot_free && ticket.is_none() {
                ticket = self.claim(now);
            }
            let wait_slot = posting && free_at.is_some_and(|t| t > now);
            let saturating = matches!(plan.pace, Pace::Saturate(_)) && posting && slot_free;
            let permit_source = match &plan.pace {
                Pace::Saturate(s) => Some(s.clone()),
                _ => None,
            };
            tokio::select! {
                biased;
                _ = plan.stop.cancelled() => return End::Done,
                m = conn.read_message() => {
                    let text = match m {
                        Ok(Message::Text(t)) => t,
                        Ok(_) => continue,
                        Err(e) => return End::Lost(close_code(&e)),
                    };
                    self.answer(text.as_str(), &mut slots, window);
                }
                _ = sleep_until(ticket.map_or(now, |t| t.0)), if ticket.is_some() => {
                    let (due, _) = ticket.take().unwrap_or((now, now));
                    if Instant::now().saturating_duration_since(due) > Duration::from_millis(250) {
                        ledger.counters.late.fetch_add(1, Ordering::Relaxed);
                    }
                    slots.pop_front();
                    if self.send_new(&mut conn, via, None).await.is_err() {
                        return End::Lost(1006);
                    }
                }
                permit = async {
                    match permit_source {
                        Some(s) => s.acquire_owned().await.ok(),
                        None => std::future::pending().await,
                    }
                }, if saturating => {
                    let Some(permit) = permit else { continue };
                    slots.pop_front();
                    if self.send_new(&mut conn, via, Some(permit)).await.is_err() {
                        return End::Lost(1006);
                    }
                }
                _ = sleep_until(free_at.unwrap_or(now)), if wait_slot => {}
                _ = plan.go.cancelled(), if !plan.go.is_cancelled() => {}
                _ = plan.stop_posting.cancelled(), if !plan.stop_posting.is_cancelled() => {}
                _ = tick.tick() => {
                    for _ in 0..self.expire() {
                        slots.push_back(Instant::now() + window + WINDOW_MARGIN);
                    }
                }
            }
        }
    }

    /// The next ticket of a paced run: (due, claimed at).
    fn claim(&self, now: Instant) -> Option<(Instant, Instant)> {
        let Pace::Rate {
            interval_ns,
            next,
            start_ns,
        } = &self.plan.pace
        else {
            return None;
        };
        let k = next.fetch_add(1, Ordering::Relaxed);
        let due_ns = start_ns
            .load(Ordering::Relaxed)
            .saturating_add(k.saturating_mul(*interval_ns));
        let now_ns = self.plan.ledger.clock.now_ns();
        let due = now + Duration::from_nanos(due_ns.saturating_sub(now_ns));
        Some((due, now))
    }

    /// Sends a new post to the next thread.
    async fn send_new(
        &mut self,
        conn: &mut BoardConn,
        via: usize,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), yamabiko::Error> {
        let plan = &self.plan;
        let ledger = &plan.ledger;
        let thread = plan.next_thread.fetch_add(1, Ordering::Relaxed) % ledger.threads.len();
        let tag = Tag {
            run: plan.run,
            poster: self.idx as u32,
            seq: self.seq,
        };
        self.seq += 1;
        let sent_ns = ledger.clock.now_ns();
        let text = wire::post(
            ledger.threads[thread].id,
            &tag.body(
                wire::Stamp {
                    sent_ns,
                    via: via as u32,
                },
                plan.body_size,
            ),
            &tag.client_id(),
        );
        ledger.counters.posts_sent.fetch_add(1, Ordering::Relaxed);
        let result = conn.write_message(Message::text(text.clone())).await;
        // Unanswered either way: re-sent after a reconnect if the write failed.
        self.pending.push(Pending {
            tag,
            thread,
            text,
            sent_ns,
            sent_at: Instant::now(),
            _permit: permit,
        });
        result
    }

    /// Handles an answer: an ack or a refusal of one of the pending posts.
    fn answer(&mut self, text: &str, slots: &mut VecDeque<Instant>, window: Duration) {
        let plan = &self.plan;
        let ledger = &plan.ledger;
        let c = &ledger.counters;
        let Some(m) = wire::parse(text) else {
            c.unparsable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let tag = m.client_id.as_deref().and_then(Tag::parse_client_id);
        let found = tag.and_then(|t| self.pending.iter().position(|p| p.tag == t));
        match m.kind.as_ref() {
            "ack" => {
                let Some(post) = m.post else { return };
                let now = Instant::now();
                if let Some(i) = found {
                    let p = self.pending.swap_remove(i);
                    slots.push_back(now + window + WINDOW_MARGIN);
                    c.acked.fetch_add(1, Ordering::Relaxed);
                    if ledger.window.contains(p.sent_ns) {
                        ledger
                            .ack_latency
                            .record_ns(self.idx, (now - p.sent_at).as_nanos() as u64);
                    }
                    ledger.ack(Acked {
                        thread: p.thread,
                        id: post.id,
                        no: post.no,
                        tag: p.tag,
                        sent_ns: p.sent_ns,
                    });
                } else if let Some(tag) = tag.filter(|t| t.run == plan.run) {
                    // An answer after the post was counted hung: acknowledged all the
                    // same, so the audit must find it.
                    c.acked.fetch_add(1, Ordering::Relaxed);
                    if let Some(thread) = ledger.threads.iter().position(|t| t.id == post.thread_id)
                    {
                        let sent_ns = Tag::parse_body(&post.body).map_or(0, |(_, s)| s.sent_ns);
                        ledger.ack(Acked {
                            thread,
                            id: post.id,
                            no: post.no,
                            tag,
                            sent_ns,
                        });
                    }
                }
            }
            "error" => {
                let code = m.code.as_deref().unwrap_or("?");
                match code {
                    "rate_limited" => c.rate_limited.fetch_add(1, Ordering::Relaxed),
                    "too_many_requests" => c.too_many_requests.fetch_add(1, Ordering::Relaxed),
                    _ => c.refused.fetch_add(1, Ordering::Relaxed),
                };
                ledger.refusal(code, m.message.as_deref().unwrap_or(""));
                if let Some(i) = found {
                    let p = self.pending.swap_remove(i);
                    slots.push_back(Instant::now() + window + WINDOW_MARGIN);
                    let took = ledger.clock.now_ns().saturating_sub(p.sent_ns);
                    c.refusal_max_ns.fetch_max(took, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}
