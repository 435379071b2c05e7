//! The board's protocol as the load generator speaks it: messages to the server are
//! built as JSON text; messages from it are parsed into borrowed views, one struct for
//! every type (fields a type does not have stay `None`), so a viewer's hot path is one
//! small `serde_json` parse per message.
//!
//! Every post the generator writes carries, in its body, a tag naming the run, the
//! poster and the post (`{run}.{poster}.{seq}`), the time it was first sent (`@{ns}`
//! on the generator's clock) and the instance it was sent to (`/{i}`), so a viewer can
//! time a delivery — and tell one that crossed instances — without asking anybody,
//! and the final audit can find each post in the database by its tag.

use serde::Deserialize;
use std::borrow::Cow;
use std::fmt::Write;

/// A message from the server (any type).
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// `hello`, `thread`, `post`, `ack`, `presence`, `error`, …
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `post`, `ack`: the post.
    #[serde(default, borrow)]
    pub post: Option<PostIn<'a>>,
    /// `thread`: the page of posts.
    #[serde(default, borrow)]
    pub posts: Option<Vec<PostIn<'a>>>,
    /// `thread`, `ack` of `new_thread`: the thread's summary.
    #[serde(default)]
    pub thread: Option<ThreadIn>,
    /// `thread`: more posts follow the page (ask again).
    #[serde(default)]
    pub has_newer: bool,
    /// `error`: the reason.
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    /// `error`: the explanation.
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
    /// `ack`, `error`: the post it concerns.
    #[serde(default, borrow)]
    pub client_id: Option<Cow<'a, str>>,
    /// `error`: how long to wait before asking again.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// `hello`: the limits the server enforces.
    #[serde(default)]
    pub limits: Option<LimitsIn>,
}

/// A post as received.
#[derive(Debug, Deserialize)]
pub struct PostIn<'a> {
    /// Board-wide id.
    pub id: i64,
    /// Its thread.
    pub thread_id: i64,
    /// Number within the thread (1, 2, …).
    pub no: i64,
    /// Text.
    #[serde(borrow)]
    pub body: Cow<'a, str>,
}

/// A thread summary as received (only what the generator uses).
#[derive(Debug, Deserialize)]
pub struct ThreadIn {
    /// Thread id.
    pub id: i64,
}

/// The post limit announced in `hello`.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct LimitsIn {
    /// Posts allowed per window.
    pub posts: u32,
    /// The window, in seconds.
    pub per_seconds: u64,
}

/// Parses a server message; `None` if it is not one of the board's.
pub fn parse(text: &str) -> Option<Incoming<'_>> {
    serde_json::from_str(text).ok()
}

/// `open_thread`, from the start or after a post id (resync).
pub fn open_thread(thread_id: i64, after: Option<i64>) -> String {
    match after {
        Some(a) => format!(r#"{{"type":"open_thread","thread_id":{thread_id},"after":{a}}}"#),
        None => format!(r#"{{"type":"open_thread","thread_id":{thread_id}}}"#),
    }
}

/// `new_thread` with a title and a first post.
pub fn new_thread(title: &str, body: &str, client_id: &str) -> String {
    serde_json::json!({
        "type": "new_thread", "title": title, "name": "bench", "body": body,
        "client_id": client_id,
    })
    .to_string()
}

/// `post` in a thread.
pub fn post(thread_id: i64, body: &str, client_id: &str) -> String {
    serde_json::json!({
        "type": "post", "thread_id": thread_id, "name": "bench", "body": body,
        "client_id": client_id,
    })
    .to_string()
}

/// Posters numbered from here down write the threads' first posts (not counted).
pub const SETUP_POSTER: u32 = u32::MAX;
/// Posters numbered above this are setup posters.
pub const SETUP_POSTER_FLOOR: u32 = u32::MAX - 1_000_000;

/// When and where a post was first sent, as its body says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Nanoseconds on the generator's clock.
    pub sent_ns: u64,
    /// Index of the instance (URL) it was sent to.
    pub via: u32,
}

/// Which post of which run: the part of a body and of a client id that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    /// Random per run, so runs sharing a database do not mix.
    pub run: u32,
    /// The poster.
    pub poster: u32,
    /// The poster's post number.
    pub seq: u32,
}

impl Tag {
    /// The client id of this post (`A-Za-z0-9_-`, at most 64 characters).
    pub fn client_id(&self) -> String {
        format!("b{:08x}-{}-{}", self.run, self.poster, self.seq)
    }

    /// A body of `size` characters (at least the tag and the stamp) carrying the tag
    /// and when and where it was sent.
    pub fn body(&self, stamp: Stamp, size: usize) -> String {
        let mut body = String::with_capacity(size.max(48));
        let _ = write!(
            body,
            "{:08x}.{}.{}@{}/{} ",
            self.run, self.poster, self.seq, stamp.sent_ns, stamp.via
        );
        // Filler that compresses poorly would be more realistic; posts are short text.
        const FILL: &str = "yamabiko bench post: the quick brown fox jumps over the lazy dog. ";
        while body.len() < size {
            let take = (size - body.len()).min(FILL.len());
            body.push_str(&FILL[..take]);
        }
        body
    }

    /// Reads the tag and the stamp back from a body written by [`Tag::body`].
    pub fn parse_body(body: &str) -> Option<(Tag, Stamp)> {
        // The server trims trailing whitespace: the tag may end the body.
        let head = body.split(' ').next()?;
        let (tag, stamp) = head.split_once('@')?;
        let (sent, via) = stamp.split_once('/')?;
        let mut parts = tag.split('.');
        let run = u32::from_str_radix(parts.next()?, 16).ok()?;
        let poster = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        let stamp = Stamp {
            sent_ns: sent.parse().ok()?,
            via: via.parse().ok()?,
        };
        Some((Tag { run, poster, seq }, stamp))
    }

    /// Reads the tag back from a client id made by [`Tag::client_id`].
    pub fn parse_client_id(id: &str) -> Option<Tag> {
        let rest = id.strip_prefix('b')?;
        let mut parts = rest.split('-');
        let run = u32::from_str_radix(parts.next()?, 16).ok()?;
        let poster = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Tag { run, poster, seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_bodies_and_client_ids() {
        let tag = Tag {
            run: 0xdead_beef,
            poster: 17,
            seq: 4242,
        };
        let stamp = Stamp {
            sent_ns: 123_456_789,
            via: 1,
        };
        for size in [0, 10, 100, 2000] {
            let body = tag.body(stamp, size);
            assert!(body.chars().count() >= size.min(2000));
            assert!(body.chars().count() <= 2000);
            assert_eq!(Tag::parse_body(&body), Some((tag, stamp)));
            assert_eq!(Tag::parse_body(body.trim_end()), Some((tag, stamp)));
        }
        let id = tag.client_id();
        assert!(id.len() <= 64);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(Tag::parse_client_id(&id), Some(tag));
        assert_eq!(Tag::parse_body("hello world"), None);
        assert_eq!(Tag::parse_client_id("k3x9"), None);
    }

    #[test]
    fn server_messages_parse_into_one_view() {
        let m = parse(
            r#"{"type":"post","post":{"id":42,"thread_id":1,"no":7,"name":"名無しさん","body":"a\"b","created_at":1}}"#,
        )
        .unwrap();
        assert_eq!(m.kind, "post");
        let p = m.post.unwrap();
        assert_eq!((p.id, p.thread_id, p.no), (42, 1, 7));
        assert_eq!(p.body, "a\"b");
        let m = parse(
            r#"{"type":"thread","thread":{"id":1,"title":"t","post_count":3,"last_post_id":9,"last_post_at":0,"created_at":0,"online":2},"posts":[],"has_older":false,"has_newer":true}"#,
        )
        .unwrap();
        assert!(m.has_newer);
        assert_eq!(m.thread.unwrap().id, 1);
        let m =
            parse(r#"{"type":"error","code":"internal","message":"x","client_id":"c"}"#).unwrap();
        assert_eq!(m.code.as_deref(), Some("internal"));
        let m = parse(r#"{"type":"hello","server":"s","limits":{"name":40,"body":2000,"title":100,"posts":5,"per_seconds":10}}"#).unwrap();
        assert_eq!(m.limits.unwrap().posts, 5);
        assert!(parse("[1]").is_none());
    }
}
