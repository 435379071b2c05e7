//! Latest-wins state for one connection: the newest message per key, outside the
//! connection's message queue.
//!
//! Online counts are state, not events: only the newest matters. They are kept here,
//! one per thread, instead of being queued behind posts; the connection's writer sends
//! whatever is here when it next writes. A connection that cannot keep up loses
//! intermediate counts (each new one replaces the last) and never its place in line
//! or its connection — what a reconnect storm needs to settle (issue 17, defect 1).
//!
//! This is the board's seam onto the library hub's latest-wins delivery
//! (`Backpressure::latest_wins`, `publish_state` with the thread as the state key):
//! when the board's live delivery moves onto that hub, [`Latest::set`] becomes a
//! `publish_state` and the writer's [`Latest::take`] goes away.

use std::sync::Mutex;
use tokio::sync::Notify;
use yamabiko::PreparedMessage;

/// The newest message per key, waiting for the connection's writer.
#[derive(Default)]
pub struct Latest {
    slots: Mutex<Vec<(i64, PreparedMessage)>>,
    changed: Notify,
}

impl Latest {
    /// An empty set of slots.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `msg` in the slot of `key`, replacing what waited there, and wakes the
    /// writer.
    pub fn set(&self, key: i64, msg: PreparedMessage) {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = msg,
                None => slots.push((key, msg)),
            }
        }
        self.changed.notify_one();
    }

    /// Takes everything waiting, oldest key first.
    pub fn take(&self) -> Vec<PreparedMessage> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *slots)
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    /// Completes when something was set since the last wake-up (cancel-safe).
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yamabiko::Message;

    fn msg(s: &str) -> PreparedMessage {
        PreparedMessage::new(Message::text(s.to_string()))
    }

    #[tokio::test]
    async fn the_newest_per_key_waits_and_wakes_the_writer() {
        let l = Latest::new();
        l.set(1, msg("a1"));
        l.set(2, msg("b1"));
        l.set(1, msg("a2"));
        // Set before anyone waited: the wake-up is kept.
        tokio::time::timeout(std::time::Duration::from_secs(1), l.changed())
            .await
            .unwrap();
        let got: Vec<String> = l
            .take()
            .iter()
            .map(|m| String::from_utf8_lossy(m.message().as_bytes()).into_owned())
            .collect();
        assert_eq!(got, ["a2", "b1"]);
        assert!(l.take().is_empty());
    }
}
