//! One viewer: a connection that opens a thread and receives its posts, checked.
//!
//! It behaves as the page does: it opens its thread, takes the `thread` reply, then
//! receives live `post`s; when its connection ends it reconnects with the page's
//! backoff (to the next instance in the list) and resyncs with `after` = the highest
//! id up to which it holds every post. What it checks, per post of its thread:
//!
//! * the next number → accepted (timed if it is a post of this run);
//! * a number it already holds → a **duplicate**;
//! * a later number → a **gap** (held until the missing ones come, which only a
//!   resync brings; whatever is still missing at the end is **lost**);
//! * a live `post` before the reply to its `open_thread` → **early** (the server must
//!   never do that: the page would resync from the wrong point if it dropped then);
//! * another id at a number than other viewers got → **mismatched**.

use super::ledger::Ledger;
use super::link::{close_code, dial, Backoff, BoardConn, STABLE_AFTER};
use super::wire::{self, PostIn, Stamp, Tag};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use yamabiko::{Dialer, Message};

/// What every viewer shares.
pub struct ViewerPlan {
    /// The instances; a viewer starts on `urls[i % n]` and moves on at each reconnect.
    pub urls: Vec<String>,
    /// Dials with the handshake timeout.
    pub dialer: Dialer,
    /// Where results go.
    pub ledger: Arc<Ledger>,
    /// Ends the viewer.
    pub stop: CancellationToken,
    /// Limits concurrent first connections while setting up.
    pub gate: Arc<tokio::sync::Semaphore>,
}

/// Why a connection's read loop ended.
enum End {
    /// The run is over.
    Stop,
    /// The storm: dropped on purpose.
    Storm,
    /// The connection ended (close code).
    Lost(u16),
}

/// A viewer's view of its thread.
struct View {
    idx: usize,
    thread: usize,
    thread_id: i64,
    /// Highest number up to which every post is held (-1: nothing yet).
    last_no: i64,
    /// The id of that post.
    last_id: i64,
    /// Posts past a gap: number → (id, when and where sent).
    held: BTreeMap<i64, (i64, Option<Stamp>)>,
    /// `open_thread` sent, its reply not yet received.
    awaiting: bool,
    /// Connected, subscribed and caught up.
    live: bool,
    /// Took part from the start.
    counted: bool,
    /// Index of the instance it is connected to.
    via: usize,
    /// Whether there are several instances (deliveries between them are timed apart).
    several: bool,
}

/// Runs viewer `idx` until `plan.stop`. `ready` is told once it is first live.
pub async fn run(
    idx: usize,
    plan: Arc<ViewerPlan>,
    mut storm: watch::Receiver<u64>,
    ready: oneshot::Sender<()>,
) {
    let ledger = plan.ledger.clone();
    let thread = ledger.marks[idx].thread;
    let mut view = View {
        idx,
        thread,
        thread_id: ledger.threads[thread].id,
        last_no: -1,
        last_id: 0,
        held: BTreeMap::new(),
        awaiting: false,
        live: false,
        counted: false,
        via: 0,
        several: plan.urls.len() > 1,
    };
    let mut ready = Some(ready);
    let mut backoff = Backoff::new();
    let mut reconnects = 0usize;
    loop {
        view.via = (idx + reconnects) % plan.urls.len();
        let url = &plan.urls[view.via];
        let conn = if ready.is_some() {
            // First connection: at most a few dials at a time while setting up.
            let _permit = plan.gate.acquire().await;
            tokio::select! {
                _ = plan.stop.cancelled() => return,
                c = dial(&plan.dialer, url) => c,
            }
        } else {
            tokio::select! {
                _ = plan.stop.cancelled() => return,
                c = dial(&plan.dialer, url) => c,
            }
        };
        match conn {
            Ok(conn) => {
                if reconnects > 0 || ready.is_none() {
                    ledger.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                let opened = Instant::now();
                let end = view
                    .session(conn, &ledger, &plan.stop, &mut storm, &mut ready)
                    .await;
                if matches!(end, End::Stop) {
                    return;
                }
                if view.live {
                    view.live = false;
                    ledger.marks[idx].live.store(false, Ordering::Relaxed);
                    if view.counted {
                        ledger.not_live.fetch_add(1, Ordering::Relaxed);
                    }
                }
                view.awaiting = false;
                if opened.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                if let End::Lost(code) = end {
                    ledger.closed(code);
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
            _ = plan.stop.cancelled() => return,
            _ = sleep(delay) => {}
        }
    }
}

impl View {
    /// One connection: open (or resync) the thread and receive until it ends.
    async fn session(
        &mut self,
        mut conn: BoardConn,
        ledger: &Ledger,
        stop: &CancellationToken,
        storm: &mut watch::Receiver<u64>,
        ready: &mut Option<oneshot::Sender<()>>,
    ) -> End {
        storm.borrow_and_update();
        if self.open(&mut conn).await.is_err() {
            return End::Lost(1006);
        }
        let mut retry_open: Option<Instant> = None;
        let mut retry_backoff = Backoff::new();
        loop {
            let retry_at = retry_open.unwrap_or_else(Instant::now);
            let msg = tokio::select! {
                biased;
                _ = stop.cancelled() => return End::Stop,
                changed = storm.changed() => {
                    if changed.is_err() {
                        // The storm's sender is gone: the run is ending.
                        return End::Stop;
                    }
                    drop(conn);
                    return End::Storm;
                }
                _ = sleep_until(retry_at), if retry_open.is_some() => {
                    retry_open = None;
                    if self.open(&mut conn).await.is_err() {
                        return End::Lost(1006);
                    }
                    continue;
                }
                m = conn.read_message() => m,
            };
            let text = match msg {
                Ok(Message::Text(t)) => t,
                Ok(_) => {
                    ledger.counters.unparsable.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return End::Lost(close_code(&e)),
            };
            let Some(m) = wire::parse(text.as_str()) else {
                ledger.counters.unparsable.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match m.kind.as_ref() {
                "post" => {
                    let Some(p) = m.post else { continue };
                    if p.thread_id != self.thread_id {
                        continue;
                    }
                    if self.awaiting {
                        ledger.counters.early.fetch_add(1, Ordering::Relaxed);
                    }
                    self.apply(&p, ledger);
                }
                "thread" => {
                    let Some(t) = &m.thread else { continue };
                    if t.id != self.thread_id {
                        continue;
                    }
                    let posts = m.posts.unwrap_or_default();
                    if self.last_no < 0 {
                        // First open: the page starts from the newest posts.
                        if let Some(last) = posts.last() {
                            self.last_no = last.no;
                            self.last_id = last.id;
                        } else {
                            self.last_no = 0;
                        }
                        ledger.marks[self.idx]
                            .last_no
                            .store(self.last_no, Ordering::Relaxed);
                    } else {
                        for p in &posts {
                            self.apply(p, ledger);
                        }
                    }
                    if m.has_newer {
                        if self.open(&mut conn).await.is_err() {
                            return End::Lost(1006);
                        }
                        continue;
                    }
                    self.awaiting = false;
                    self.go_live(ledger, ready);
                }
                "presence" => {
                    ledger.counters.presence.fetch_add(1, Ordering::Relaxed);
                }
                "error" => {
                    ledger
                        .counters
                        .viewer_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let code = m.code.as_deref().unwrap_or("?");
                    ledger.refusal(
                        &format!("viewer:{code}"),
                        m.message.as_deref().unwrap_or(""),
                    );
                    if self.awaiting {
                        // The open failed (the database is down, say): ask again
                        // later, as the page does.
                        let wait = m
                            .retry_after_ms
                            .map(std::time::Duration::from_millis)
                            .unwrap_or_else(|| retry_backoff.next_delay());
                        retry_open = Some(Instant::now() + wait);
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends `open_thread`: from the start the first time, else after the highest id
    /// up to which every post is held.
    async fn open(&mut self, conn: &mut BoardConn) -> Result<(), yamabiko::Error> {
        let after = (self.last_no >= 0).then_some(self.last_id);
        self.awaiting = true;
        conn.write_message(Message::text(wire::open_thread(self.thread_id, after)))
            .await
    }

    fn go_live(&mut self, ledger: &Ledger, ready: &mut Option<oneshot::Sender<()>>) {
        if self.live {
            return;
        }
        self.live = true;
        let mark = &ledger.marks[self.idx];
        mark.live.store(true, Ordering::Relaxed);
        if let Some(tx) = ready.take() {
            if !ledger.setup_over.load(Ordering::SeqCst) {
                self.counted = true;
                mark.counted.store(true, Ordering::SeqCst);
                ledger.threads[self.thread]
                    .viewers
                    .fetch_add(1, Ordering::SeqCst);
            }
            let _ = tx.send(());
        } else if self.counted {
            ledger.not_live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Takes one post of the thread, in order.
    fn apply(&mut self, p: &PostIn<'_>, ledger: &Ledger) {
        let c = &ledger.counters;
        if self.last_no < 0 {
            return;
        }
        if p.no <= self.last_no || self.held.contains_key(&p.no) {
            c.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sent = Tag::parse_body(&p.body).map(|(_, s)| s);
        if p.no > self.last_no + 1 {
            c.gaps.fetch_add(1, Ordering::Relaxed);
            self.held.insert(p.no, (p.id, sent));
            return;
        }
        self.accept(p.no, p.id, sent, ledger);
        while let Some((id, sent)) = self.held.remove(&(self.last_no + 1)) {
            self.accept(self.last_no + 1, id, sent, ledger);
        }
    }

    fn accept(&mut self, no: i64, id: i64, sent: Option<Stamp>, ledger: &Ledger) {
        self.last_no = no;
        self.last_id = id;
        ledger.marks[self.idx].last_no.store(no, Ordering::Relaxed);
        let c = &ledger.counters;
        let now = ledger.clock.now_ns();
        c.deliveries.fetch_add(1, Ordering::Relaxed);
        if ledger.window.contains(now) {
            c.window_deliveries.fetch_add(1, Ordering::Relaxed);
        }
        if !self.counted {
            return;
        }
        ledger.threads[self.thread].slots.with(no, |slot| {
            match slot
                .id
                .compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {}
                Err(other) if other == id => {}
                Err(_) => {
                    c.mismatched.fetch_add(1, Ordering::Relaxed);
                }
            }
            slot.count.fetch_add(1, Ordering::Relaxed);
            slot.last_ns.fetch_max(now, Ordering::Relaxed);
            if let Some(s) = sent {
                slot.sent_ns.store(s.sent_ns, Ordering::Relaxed);
            }
        });
        if let Some(s) = sent {
            if ledger.window.contains(s.sent_ns) {
                let took = now.saturating_sub(s.sent_ns);
                ledger.delivery_latency.record_ns(self.idx, took);
                if self.several && s.via as usize != self.via {
                    ledger.cross_latency.record_ns(self.idx, took);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ledger: &Ledger) -> View {
        ledger.marks[0].counted.store(true, Ordering::Relaxed);
        ledger.threads[0].viewers.store(1, Ordering::Relaxed);
        View {
            idx: 0,
            thread: 0,
            thread_id: 7,
            last_no: 1,
            last_id: 10,
            held: BTreeMap::new(),
            awaiting: false,
            live: true,
            counted: true,
            via: 0,
            several: false,
        }
    }

    fn post(no: i64, id: i64) -> PostIn<'static> {
        PostIn {
            id,
            thread_id: 7,
            no,
            body: std::borrow::Cow::Borrowed("x"),
        }
    }

    #[test]
    fn posts_in_order_once_or_counted_as_faults() {
        let ledger = Ledger::new(&[7], 1);
        let mut v = view(&ledger);
        let c = &ledger.counters;
        v.apply(&post(2, 11), &ledger);
        v.apply(&post(2, 11), &ledger); // again
        assert_eq!(c.duplicates.load(Ordering::Relaxed), 1);
        v.apply(&post(4, 13), &ledger); // 3 is missing
        assert_eq!(c.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(
            (v.last_no, v.last_id),
            (2, 11),
            "resync from before the gap"
        );
        v.apply(&post(3, 12), &ledger); // the gap fills: 3 then the held 4
        assert_eq!((v.last_no, v.last_id), (4, 13));
        assert_eq!(c.deliveries.load(Ordering::Relaxed), 3);
        assert_eq!(ledger.marks[0].last_no.load(Ordering::Relaxed), 4);
        // Another viewer sees a different post at number 4: mismatched.
        let mut w = view(&ledger);
        w.last_no = 3;
        w.apply(&post(4, 99), &ledger);
        assert_eq!(c.mismatched.load(Ordering::Relaxed), 1);
        assert_eq!(
            ledger.threads[0]
                .slots
                .with(3, |s| s.count.load(Ordering::Relaxed)),
            Some(1)
        );
    }
}
