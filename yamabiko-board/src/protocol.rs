//! The board's wire protocol: JSON text messages with a `type` tag.
//!
//! Every message the page sends is parsed and validated here before anything else
//! looks at it; a bad one becomes an [`ProtocolFault`] that the server answers with an
//! `error` message. The README's "Protocol" section documents the same messages.

use serde::{Deserialize, Serialize};

/// Longest display name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 40;
/// Longest post body, in characters.
pub const MAX_BODY_CHARS: usize = 2000;
/// Longest thread title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// Longest client-chosen id of a pending post.
pub const MAX_CLIENT_ID_CHARS: usize = 64;
/// The name shown when the poster leaves it empty.
pub const DEFAULT_NAME: &str = "名無しさん";
/// Posts sent when a thread is opened, and the default (and largest) page of older posts.
pub const PAGE_SIZE: usize = 50;
/// Largest page of posts after a given id (resync); the page says whether more follow.
pub const RESYNC_PAGE_SIZE: usize = 500;

/// The message types a client may send.
pub const CLIENT_TYPES: &[&str] = &["list_threads", "open_thread", "older", "post", "new_thread"];

/// A message from the page.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Show the thread list and receive its live updates.
    ListThreads,
    /// Show a thread and receive its live posts. With `after`, only posts with a larger
    /// id are sent (resync after a reconnect); without, the newest page.
    OpenThread {
        /// The thread.
        thread_id: i64,
        /// Last post id the page already has.
        #[serde(default)]
        after: Option<i64>,
    },
    /// A page of posts older than `before` in a thread.
    Older {
        /// The thread.
        thread_id: i64,
        /// Smallest post id the page already has.
        before: i64,
        /// Page size (at most [`PAGE_SIZE`]).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// A reply in a thread.
    Post {
        /// The thread.
        thread_id: i64,
        /// Display name; empty → [`DEFAULT_NAME`].
        #[serde(default)]
        name: String,
        /// The text.
        body: String,
        /// The page's id for this post: echoed in the `ack`, and makes a resend after a
        /// reconnect idempotent.
        client_id: String,
    },
    /// A new thread with its first post.
    NewThread {
        /// Title of the thread.
        title: String,
        /// Display name; empty → [`DEFAULT_NAME`].
        #[serde(default)]
        name: String,
        /// Text of the first post.
        body: String,
        /// As in `post`.
        client_id: String,
    },
}

/// One post as sent to pages.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PostView {
    /// Global, increasing id.
    pub id: i64,
    /// The thread it belongs to.
    pub thread_id: i64,
    /// Number within the thread, from 1.
    pub no: i64,
    /// Display name.
    pub name: String,
    /// Text, shown as text.
    pub body: String,
    /// Unix time in milliseconds.
    pub created_at: i64,
}

/// One line of the thread list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadView {
    /// Thread id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Number of posts.
    pub post_count: i64,
    /// Id of the newest post (the list is ordered by it, newest first).
    pub last_post_id: i64,
    /// Unix time in milliseconds of the newest post.
    pub last_post_at: i64,
    /// Unix time in milliseconds of creation.
    pub created_at: i64,
    /// Connections on this server currently viewing the thread.
    pub online: usize,
}

/// A message to the page.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Sent once on connect.
    Hello {
        /// Server name and version.
        server: String,
        /// Limits the page should enforce before sending.
        limits: Limits,
    },
    /// The thread list (answer to `list_threads`).
    Threads {
        /// Newest activity first.
        threads: Vec<ThreadView>,
    },
    /// A thread's summary changed (new post, new thread): move it to its place.
    ThreadUpdated {
        /// The new summary.
        thread: ThreadView,
    },
    /// A thread's posts (answer to `open_thread`).
    Thread {
        /// Summary.
        thread: ThreadView,
        /// Posts in id order.
        posts: Vec<PostView>,
        /// Whether posts older than the first one exist.
        has_older: bool,
        /// With `after`: whether more posts follow the last one (ask again).
        has_newer: bool,
    },
    /// Older posts (answer to `older`).
    OlderPosts {
        /// The thread.
        thread_id: i64,
        /// Posts in id order.
        posts: Vec<PostView>,
        /// Whether still older posts exist.
        has_older: bool,
    },
    /// A new post in the thread being viewed.
    Post {
        /// The post.
        post: PostView,
    },
    /// The page's own post is committed.
    Ack {
        /// The id the page gave it.
        client_id: String,
        /// The post as stored.
        post: PostView,
        /// For `new_thread`: the thread.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        thread: Option<ThreadView>,
    },
    /// How many connections view a thread.
    Presence {
        /// The thread.
        thread_id: i64,
        /// Connections viewing it.
        online: usize,
    },
    /// Something the page sent was refused.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation, shown by the page.
        message: String,
        /// The pending post it concerns, if any.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_id: Option<String>,
        /// For `rate_limited`: milliseconds until a post will be accepted.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        retry_after_ms: Option<u64>,
    },
}

/// Limits announced in `hello`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// [`MAX_NAME_CHARS`].
    pub name: usize,
    /// [`MAX_BODY_CHARS`].
    pub body: usize,
    /// [`MAX_TITLE_CHARS`].
    pub title: usize,
    /// Posts per window.
    pub posts: u32,
    /// Window in seconds.
    pub per_seconds: u64,
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object.
    BadJson,
    /// A binary message.
    BadMessage,
    /// `type` missing or not one of [`CLIENT_TYPES`].
    UnknownType,
    /// A field is missing, of the wrong type, too long or empty.
    Invalid,
    /// The thread does not exist.
    NotFound,
    /// Too many posts.
    RateLimited,
    /// Too many messages of any kind.
    TooManyRequests,
    /// The database failed.
    Internal,
}

/// A refused message: what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolFault {
    /// Reason.
    pub code: ErrorCode,
    /// Explanation.
    pub message: String,
    /// The pending post concerned.
    pub client_id: Option<String>,
}

impl ProtocolFault {
    /// A fault without a client id.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolFault {
            code,
            message: message.into(),
            client_id: None,
        }
    }

    /// The `error` message for it.
    pub fn to_msg(&self) -> ServerMsg {
        ServerMsg::Error {
            code: self.code,
            message: self.message.clone(),
            client_id: self.client_id.clone(),
            retry_after_ms: None,
        }
    }
}

/// Parses and validates one text message from a page. Names are normalised (trimmed;
/// empty → [`DEFAULT_NAME`]); bodies and titles keep their inner whitespace but lose
/// trailing whitespace.
pub fn parse_client(text: &str) -> Result<ClientMsg, ProtocolFault> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ProtocolFault::new(ErrorCode::BadJson, format!("bad JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ProtocolFault::new(
            ErrorCode::BadJson,
            "bad JSON: expected an object like {\"type\": \"...\"}",
        ));
    };
    let kind = match object.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(_) => {
            return Err(ProtocolFault::new(
                ErrorCode::UnknownType,
                "the \"type\" field must be a string",
            ))
        }
        None => {
            return Err(ProtocolFault::new(
                ErrorCode::UnknownType,
                "missing \"type\" field",
            ))
        }
    };
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        let mut shown: String = kind.chars().take(40).collect();
        if shown.len() < kind.len() {
            shown.push('…');
        }
        return Err(ProtocolFault::new(
            ErrorCode::UnknownType,
            format!(
                "unknown message type {shown:?} (expected one of: {})",
                CLIENT_TYPES.join(", ")
            ),
        ));
    }
    let client_id = object
        .get("client_id")
        .and_then(|v| v.as_str())
        .filter(|s| valid_client_id(s))
        .map(str::to_owned);
    let msg: ClientMsg = serde_json::from_value(value).map_err(|e| ProtocolFault {
        code: ErrorCode::Invalid,
        message: format!("invalid {kind:?} message: {e}"),
        client_id: client_id.clone(),
    })?;
    validate(msg).map_err(|message| ProtocolFault {
        code: ErrorCode::Invalid,
        message,
        client_id,
    })
}

fn valid_client_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLIENT_ID_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate(msg: ClientMsg) -> Result<ClientMsg, String> {
    match msg {
        ClientMsg::Post {
            thread_id,
            name,
            body,
            client_id,
        } => {
            check_client_id(&client_id)?;
            Ok(ClientMsg::Post {
                thread_id,
                name: check_name(&name)?,
                body: check_text("body", &body, MAX_BODY_CHARS)?,
                client_id,
            })
        }
        ClientMsg::NewThread {
            title,
            name,
            body,
            client_id,
        } => {
            check_client_id(&client_id)?;
            let title = check_text("title", &title, MAX_TITLE_CHARS)?;
            if title.contains('\n') {
                return Err("title must be a single line".into());
            }
            Ok(ClientMsg::NewThread {
                title,
                name: check_name(&name)?,
                body: check_text("body", &body, MAX_BODY_CHARS)?,
                client_id,
            })
        }
        ClientMsg::Older {
            thread_id,
            before,
            limit,
        } => match limit {
            Some(n) if n == 0 || n > PAGE_SIZE => {
                Err(format!("limit must be between 1 and {PAGE_SIZE}"))
            }
            _ => Ok(ClientMsg::Older {
                thread_id,
                before,
                limit,
            }),
        },
        other => Ok(other),
    }
}

fn check_client_id(id: &str) -> Result<(), String> {
    if valid_client_id(id) {
        Ok(())
    } else {
        Err(format!(
            "client_id must be 1 to {MAX_CLIENT_ID_CHARS} characters of A-Z, a-z, 0-9, - or _"
        ))
    }
}

fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let n = name.chars().count();
    if n > MAX_NAME_CHARS {
        return Err(format!(
            "name is too long: {n} characters, at most {MAX_NAME_CHARS}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(if name.is_empty() {
        DEFAULT_NAME.to_owned()
    } else {
        name.to_owned()
    })
}

fn check_text(field: &str, text: &str, max: usize) -> Result<String, String> {
    let text = text.trim_end();
    let text = text.trim_start_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Err(format!("{field} is empty"));
    }
    let n = text.chars().count();
    if n > max {
        return Err(format!(
            "{field} is too long: {n} characters, at most {max}"
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(text.replace("\r\n", "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse_client(text).unwrap_err().code
    }

    #[test]
    fn parses_a_post_and_defaults_the_name() {
        let m = parse_client(
            r#"{"type":"post","thread_id":3,"name":"  ","body":"hi\n","client_id":"a1"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMsg::Post {
                thread_id: 3,
                name: DEFAULT_NAME.into(),
                body: "hi".into(),
                client_id: "a1".into()
            }
        );
    }

    #[test]
    fn refuses_bad_input_with_reasons() {
        assert_eq!(code("{"), ErrorCode::BadJson);
        assert_eq!(code("[1]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"x":1}"#), ErrorCode::UnknownType);
        let long_name = "n".repeat(41);
        let e = parse_client(&format!(
            r#"{{"type":"post","thread_id":1,"name":"{long_name}","body":"b","client_id":"c"}}"#
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(e.message.contains("name is too long"), "{}", e.message);
        assert_eq!(e.client_id.as_deref(), Some("c"));
        let ok_name = "名".repeat(40);
        assert!(parse_client(&format!(
            r#"{{"type":"post","thread_id":1,"name":"{ok_name}","body":"b","client_id":"c"}}"#
        ))
        .is_ok());
        let body = "あ".repeat(2001);
        let e = parse_client(&format!(
            r#"{{"type":"post","thread_id":1,"body":"{body}","client_id":"c"}}"#
        ))
        .unwrap_err();
        assert!(e.message.contains("body is too long"), "{}", e.message);
        let e = parse_client(r#"{"type":"post","thread_id":1,"body":" \n ","client_id":"c"}"#)
            .unwrap_err();
        assert!(e.message.contains("body is empty"), "{}", e.message);
        let title = "t".repeat(101);
        let e = parse_client(&format!(
            r#"{{"type":"new_thread","title":"{title}","body":"b","client_id":"c"}}"#
        ))
        .unwrap_err();
        assert!(e.message.contains("title is too long"), "{}", e.message);
        let e = parse_client(r#"{"type":"post","thread_id":"x","body":"b","client_id":"c"}"#)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        let e = parse_client(r#"{"type":"post","thread_id":1,"body":"b","client_id":"<x>"}"#)
            .unwrap_err();
        assert!(e.message.contains("client_id"), "{}", e.message);
    }

    #[test]
    fn server_messages_are_tagged() {
        let s = serde_json::to_string(&ServerMsg::Presence {
            thread_id: 1,
            online: 2,
        })
        .unwrap();
        assert_eq!(s, r#"{"type":"presence","thread_id":1,"online":2}"#);
    }
}
