//! The audit after a run: every post of the run's threads is read back through the
//! protocol (`open_thread` with `after`, page by page), from the first instance that
//! answers, and compared with what was acknowledged.
//!
//! * **found** — acknowledged posts present with the same id and number;
//! * **lost** — acknowledged posts missing (must be 0);
//! * **duplicated** — a post of the run stored more than once (must be 0);
//! * **unacknowledged** — posts of the run stored without their poster getting an
//!   ack (a crash or a lost connection between the commit and the ack): not an error,
//!   the poster re-sends them with the same client id or was told it failed;
//! * **numbering** — numbers in a thread that do not run 1, 2, 3, … (must be 0);
//! * **mismatched** — a number whose stored id is not the one viewers received.

use super::ledger::Ledger;
use super::link::dial;
use super::wire::{self, Tag};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::{sleep, timeout_at, Instant};
use yamabiko::{Dialer, Message};

/// What the audit found.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// Threads read back.
    pub threads: usize,
    /// Posts read back in those threads.
    pub stored: usize,
    /// Acknowledged posts.
    pub acked: usize,
    /// Acknowledged posts found.
    pub found: usize,
    /// Acknowledged posts missing.
    pub lost: usize,
    /// Extra copies of posts of the run.
    pub duplicated: usize,
    /// Posts of the run stored without an ack.
    pub unacknowledged: usize,
    /// Breaks in the 1, 2, 3, … numbering.
    pub numbering: usize,
    /// Numbers whose stored id differs from the one viewers received.
    pub mismatched: usize,
    /// Why the audit could not finish, if it could not.
    pub failed: Option<String>,
}

impl Audit {
    /// The audit as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "threads": self.threads,
            "stored": self.stored,
            "acked": self.acked,
            "found": self.found,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unacknowledged": self.unacknowledged,
            "numbering_errors": self.numbering,
            "mismatched": self.mismatched,
            "failed": self.failed,
        })
    }
}

/// A stored post, as read back.
struct Stored {
    id: i64,
    no: i64,
    tag: Option<Tag>,
}

/// Reads every thread of the run back and compares, trying the instances in turn
/// until `deadline`.
pub async fn run(
    urls: &[String],
    dialer: &Dialer,
    ledger: &Ledger,
    run: u32,
    deadline: Instant,
) -> Audit {
    let mut audit = Audit {
        acked: ledger.acked.lock().map(|a| a.len()).unwrap_or(0),
        ..Audit::default()
    };
    let mut stored: Vec<Vec<Stored>> = Vec::new();
    for (i, t) in ledger.threads.iter().enumerate() {
        match read_thread(urls, dialer, t.id, i, deadline).await {
            Ok(posts) => stored.push(posts),
            Err(e) => {
                audit.failed = Some(format!("reading thread {}: {e}", t.id));
                return audit;
            }
        }
    }
    audit.threads = stored.len();
    // Tag → (thread, id, no) of every stored post of the run, counting copies.
    let mut by_tag: HashMap<Tag, (usize, i64, i64)> = HashMap::new();
    for (i, posts) in stored.iter().enumerate() {
        audit.stored += posts.len();
        let mut expect = 1;
        for p in posts {
            if p.no != expect {
                audit.numbering += 1;
            }
            expect = p.no + 1;
            let viewers_saw = ledger.threads[i]
                .slots
                .with(p.no, |s| s.id.load(Ordering::Relaxed))
                .unwrap_or(0);
            if viewers_saw != 0 && viewers_saw != p.id {
                audit.mismatched += 1;
            }
            let Some(tag) = p
                .tag
                .filter(|t| t.run == run && t.poster <= wire::SETUP_POSTER_FLOOR)
            else {
                continue;
            };
            if by_tag.insert(tag, (i, p.id, p.no)).is_some() {
                audit.duplicated += 1;
            }
        }
    }
    let acked = ledger.acked.lock().map(|a| a.clone()).unwrap_or_default();
    let mut acked_tags = std::collections::HashSet::with_capacity(acked.len());
    for a in &acked {
        acked_tags.insert(a.tag);
        match by_tag.get(&a.tag) {
            Some(&(thread, id, no)) if thread == a.thread && id == a.id && no == a.no => {
                audit.found += 1
            }
            _ => audit.lost += 1,
        }
    }
    audit.unacknowledged = by_tag.keys().filter(|t| !acked_tags.contains(t)).count();
    audit
}

/// Every post of one thread, in id order, from the first instance that answers.
async fn read_thread(
    urls: &[String],
    dialer: &Dialer,
    thread_id: i64,
    salt: usize,
    deadline: Instant,
) -> Result<Vec<Stored>, String> {
    let mut last_error = String::from("no instance answered");
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let url = &urls[(salt + attempt) % urls.len()];
        attempt += 1;
        match timeout_at(deadline, read_from(url, dialer, thread_id)).await {
            Ok(Ok(posts)) => return Ok(posts),
            Ok(Err(e)) => last_error = format!("{url}: {e}"),
            Err(_) => return Err(format!("timed out ({last_error})")),
        }
        sleep(Duration::from_millis(300).min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
    Err(last_error)
}

async fn read_from(url: &str, dialer: &Dialer, thread_id: i64) -> Result<Vec<Stored>, String> {
    let mut conn = dial(dialer, url).await?;
    let mut posts: Vec<Stored> = Vec::new();
    let ask = |after: i64| Message::text(wire::open_thread(thread_id, Some(after)));
    conn.write_message(ask(0))
        .await
        .map_err(|e| e.to_string())?;
    // Bounded: a page is 500 posts; 100,000 pages is 50 million posts.
    for _ in 0..100_000 {
        let msg = conn.read_message().await.map_err(|e| e.to_string())?;
        let Message::Text(text) = msg else { continue };
        let Some(m) = wire::parse(text.as_str()) else {
            continue;
        };
        match m.kind.as_ref() {
            "thread" if m.thread.as_ref().is_some_and(|t| t.id == thread_id) => {
                for p in m.posts.unwrap_or_default() {
                    posts.push(Stored {
                        id: p.id,
                        no: p.no,
                        tag: Tag::parse_body(&p.body).map(|(t, _)| t),
                    });
                }
                if !m.has_newer {
                    return Ok(posts);
                }
                let after = posts.last().map_or(0, |p| p.id);
                conn.write_message(ask(after))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "error" => {
                let code = m.code.as_deref().unwrap_or("?").to_string();
                if code == "not_found" {
                    return Err(format!("thread {thread_id} not found"));
                }
                // Too many requests, or the database is down: ask again shortly.
                let wait = m.retry_after_ms.unwrap_or(500).min(10_000);
                sleep(Duration::from_millis(wait)).await;
                let after = posts.last().map_or(0, |p| p.id);
                conn.write_message(ask(after))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            _ => {}
        }
    }
    Err("too many pages".into())
}
