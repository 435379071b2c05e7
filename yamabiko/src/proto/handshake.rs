//! Sans-IO HTTP/1.1 opening handshake (RFC 6455 §4).
//!
//! Nothing in here touches a socket: the server side parses and validates a
//! client's upgrade request and renders the `101` (or error) response; the
//! client side renders the `GET` request and parses and validates the
//! server's answer. Every function works on byte slices and `http` types.
//!
//! [`extended_connect`] holds the same rules for WebSockets over HTTP/2 (RFC 8441).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rand::RngCore as _;
use sha1::{Digest as _, Sha1};

pub mod extended_connect;

/// RFC 6455 §1.3 GUID.
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most header lines a head may carry before it is refused as too large.
const MAX_HEADERS: usize = 64;

/// Header names the client request writes itself; extra headers with these
/// names are skipped by [`build_request`].
const RESERVED_REQUEST_HEADERS: [&str; 7] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key (sha1 + base64, §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    // §4.2.2 item 5.4: base64(SHA-1(key ++ GUID)).
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// A fresh client key: 16 random bytes (rand::rng()), base64.
pub fn generate_key() -> String {
    // §4.1: a nonce of 16 randomly selected bytes, base64-encoded.
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    BASE64.encode(nonce)
}

/// Why a handshake failed. Server-side variants map to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The bytes are not a valid HTTP/1.1 message (httparse error, bad header value ...). 400
    Malformed(String),
    /// Request head larger than the configured limit, or more headers than fit. 431
    HeadersTooLarge,
    /// Method is not GET. 405 (response carries `Allow: GET`)
    MethodNotAllowed,
    /// HTTP version below 1.1. 400 (httparse gives version 0 or 1)
    HttpVersion,
    /// No `Upgrade: websocket` token (case-insensitive, comma-separated list). 400
    NoUpgradeWebsocket,
    /// No `upgrade` token in Connection (case-insensitive, comma-separated list, e.g. "keep-alive, Upgrade"). 400
    NoConnectionUpgrade,
    /// Sec-WebSocket-Version is missing or not 13. 426 with `Sec-WebSocket-Version: 13` header
    UnsupportedVersion,
    /// Sec-WebSocket-Key missing, or not base64 of exactly 16 bytes (§4.2.1 item 5). 400
    BadKey,
    /// The origin check refused the request. 403
    OriginRejected,
    /// An HTTP/2 request for a WebSocket whose method is not CONNECT (RFC 8441 §4).
    /// 405 (response carries `Allow: CONNECT`)
    MethodNotConnect,
    /// An HTTP/2 CONNECT whose `:protocol` pseudo-header is missing or not
    /// `websocket` (RFC 8441 §4). 400
    NoProtocolWebsocket,
    // ---- client side (response validation) ----
    /// The server answered with a status other than 101.
    UnexpectedStatus(u16),
    /// 101 without `Upgrade: websocket` / `Connection: upgrade`.
    ResponseNotUpgrade,
    /// Sec-WebSocket-Accept missing or wrong.
    BadAccept,
    /// The server selected a subprotocol the client did not offer (or sent one when none was offered).
    UnrequestedSubprotocol(String),
    /// The server answered with an extension the client did not offer.
    UnrequestedExtension(String),
    /// HTTP/2 was required but the server does not offer WebSockets over it: ALPN did
    /// not select `h2`, or its SETTINGS do not enable extended CONNECT (RFC 8441 §3).
    NoExtendedConnect,
}

impl HandshakeError {
    /// HTTP status a server answers with (400, 403, 405, 426, 431); 400 for client-side variants.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadersTooLarge => 431,
            HandshakeError::MethodNotAllowed | HandshakeError::MethodNotConnect => 405,
            // §4.2.2 item 4 / §4.4: 426 Upgrade Required for an unknown version.
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::OriginRejected => 403,
            // §4.2.1: anything else the server cannot understand is a 400.
            _ => 400,
        }
    }

    /// The complete HTTP/1.1 error response a server writes: status line, `Content-Type: text/plain; charset=utf-8`, `Connection: close`, Content-Length, the extra headers (`Sec-WebSocket-Version: 13` for 426, `Allow: GET` for 405), blank line, a one-line body with the reason and "\n".
    pub fn to_http_response(&self) -> Vec<u8> {
        let status = self.status();
        // Keep the body to a single line whatever the variant carries.
        let mut body: String = self
            .to_string()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        body.push('\n');

        let mut out = format!(
            "HTTP/1.1 {status} {}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Connection: close\r\n\
             Content-Length: {}\r\n",
            reason_phrase(status),
            body.len()
        );
        match self {
            // §4.4: advertise the versions this server speaks.
            HandshakeError::UnsupportedVersion => out.push_str("Sec-WebSocket-Version: 13\r\n"),
            // RFC 9110 §15.5.6: a 405 carries Allow.
            HandshakeError::MethodNotAllowed => out.push_str("Allow: GET\r\n"),
            HandshakeError::MethodNotConnect => out.push_str("Allow: CONNECT\r\n"),
            _ => {}
        }
        out.push_str("\r\n");
        out.push_str(&body);
        out.into_bytes()
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(why) => write!(f, "malformed HTTP message: {why}"),
            HandshakeError::HeadersTooLarge => f.write_str("HTTP head too large"),
            HandshakeError::MethodNotAllowed => f.write_str("request method is not GET"),
            HandshakeError::HttpVersion => f.write_str("HTTP version must be at least HTTP/1.1"),
            HandshakeError::NoUpgradeWebsocket => {
                f.write_str("'Upgrade: websocket' header missing")
            }
            HandshakeError::NoConnectionUpgrade => {
                f.write_str("'upgrade' token not found in 'Connection' header")
            }
            HandshakeError::UnsupportedVersion => {
                f.write_str("unsupported version: 13 not found in 'Sec-WebSocket-Version' header")
            }
            HandshakeError::MethodNotConnect => f.write_str("HTTP/2 request method is not CONNECT"),
            HandshakeError::NoProtocolWebsocket => {
                f.write_str("':protocol' pseudo-header is not 'websocket'")
            }
            HandshakeError::BadKey => {
                f.write_str("'Sec-WebSocket-Key' header missing or not base64 of 16 bytes")
            }
            HandshakeError::OriginRejected => f.write_str("request origin not allowed"),
            HandshakeError::UnexpectedStatus(code) => write!(f, "unexpected status {code}"),
            HandshakeError::ResponseNotUpgrade => {
                f.write_str("response is not an upgrade to websocket")
            }
            HandshakeError::BadAccept => f.write_str("'Sec-WebSocket-Accept' missing or wrong"),
            HandshakeError::UnrequestedSubprotocol(p) => {
                write!(f, "server selected unrequested subprotocol {p:?}")
            }
            HandshakeError::UnrequestedExtension(e) => {
                write!(f, "server sent unrequested extension {e:?}")
            }
            HandshakeError::NoExtendedConnect => f.write_str(
                "the server does not offer WebSockets over HTTP/2 \
                 (no h2 in ALPN, or extended CONNECT not enabled)",
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Reason phrase for the statuses this module writes.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    }
}

/// Maps an httparse failure onto our error type.
fn parse_error(err: httparse::Error) -> HandshakeError {
    match err {
        httparse::Error::TooManyHeaders => HandshakeError::HeadersTooLarge,
        other => HandshakeError::Malformed(other.to_string()),
    }
}

/// Turns httparse's minor version into an `http::Version`.
fn http_version(minor: Option<u8>) -> Result<http::Version, HandshakeError> {
    match minor {
        Some(0) => Ok(http::Version::HTTP_10),
        Some(1) => Ok(http::Version::HTTP_11),
        _ => Err(HandshakeError::Malformed("unknown HTTP version".into())),
    }
}

/// Copies parsed header lines into a `HeaderMap`, keeping repeats.
fn convert_headers(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut map = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::Malformed(format!("invalid header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HandshakeError::Malformed(format!("invalid value for header {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Applies the head-size limit to an httparse outcome: `Some(len)` for a
/// complete head, `None` to wait for more bytes.
fn head_len(
    status: httparse::Status<usize>,
    window: usize,
    max_head_bytes: usize,
) -> Result<Option<usize>, HandshakeError> {
    match status {
        httparse::Status::Complete(n) => Ok(Some(n)),
        httparse::Status::Partial if window >= max_head_bytes => {
            Err(HandshakeError::HeadersTooLarge)
        }
        httparse::Status::Partial => Ok(None),
    }
}

/// Parses an HTTP request head from the start of `buf`. Ok(None) = need more bytes
/// (but if `buf.len() >= max_head_bytes` with no complete head → Err(HeadersTooLarge)).
/// At most 64 headers (httparse::Error::TooManyHeaders → HeadersTooLarge).
/// Returns the request (http::Request<()> with method, uri, version, headers; reject header values http won't take → Malformed) and the number of bytes the head occupied.
pub fn parse_request(
    buf: &[u8],
    max_head_bytes: usize,
) -> Result<Option<(http::Request<()>, usize)>, HandshakeError> {
    // Never look past the limit: a head that does not end inside it is too large.
    let window = buf.get(..max_head_bytes).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let status = parsed.parse(window).map_err(parse_error)?;
    let Some(len) = head_len(status, window.len(), max_head_bytes)? else {
        return Ok(None);
    };

    let (Some(method), Some(path)) = (parsed.method, parsed.path) else {
        return Err(HandshakeError::Malformed("incomplete request line".into()));
    };
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| HandshakeError::Malformed(format!("invalid method {method:?}")))?;
    let uri = http::Uri::try_from(path)
        .map_err(|_| HandshakeError::Malformed(format!("invalid request target {path:?}")))?;

    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = http_version(parsed.version)?;
    *req.headers_mut() = convert_headers(parsed.headers)?;
    Ok(Some((req, len)))
}

/// What a valid client offer contains (§4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOffer {
    /// Sec-WebSocket-Key as sent.
    pub key: String,
    /// Offered subprotocols, in the client's order (all Sec-WebSocket-Protocol headers, split on ',' and trimmed, empties dropped).
    pub protocols: Vec<String>,
    /// All Sec-WebSocket-Extensions header values joined with ", " (None when absent) — negotiated elsewhere.
    pub extensions: Option<String>,
}

/// True when `name` carries `token` in its comma-separated lists (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    header_tokens(headers, name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// The only value of `name`, trimmed; `None` if absent, repeated or not visible ASCII.
fn single_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::trim)
}

/// Whether a request asks for a WebSocket upgrade: `Upgrade` contains the token
/// `websocket` and `Connection` the token `upgrade` (case-insensitive, in
/// comma-separated lists), as gorilla's `IsWebSocketUpgrade`. For a server that serves
/// pages and sockets on one port: route on it, then let the upgrader check the rest
/// (method, version, key, origin) and answer a bad request with its HTTP error.
///
/// ```
/// let req = yamabiko::http::Request::get("/ws")
///     .header("connection", "keep-alive, Upgrade")
///     .header("upgrade", "websocket")
///     .body(())
///     .unwrap();
/// assert!(yamabiko::is_websocket_upgrade(&req));
/// let page = yamabiko::http::Request::get("/").body(()).unwrap();
/// assert!(!yamabiko::is_websocket_upgrade(&page));
/// ```
pub fn is_websocket_upgrade<B>(req: &http::Request<B>) -> bool {
    let headers = req.headers();
    has_token(headers, "upgrade", "websocket") && has_token(headers, "connection", "upgrade")
}

/// Validates method (GET), version (>= 1.1), Upgrade, Connection, Sec-WebSocket-Version (13), Sec-WebSocket-Key; checks in that order.
pub fn validate_request(req: &http::Request<()>) -> Result<ClientOffer, HandshakeError> {
    // §4.2.1 item 1: an HTTP/1.1 or higher GET request.
    if req.method() != http::Method::GET {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version() < http::Version::HTTP_11 {
        return Err(HandshakeError::HttpVersion);
    }
    let headers = req.headers();
    // §4.2.1 item 3: Upgrade contains "websocket".
    if !has_token(headers, "upgrade", "websocket") {
        return Err(HandshakeError::NoUpgradeWebsocket);
    }
    // §4.2.1 item 4: Connection contains "Upgrade".
    if !has_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    // §4.2.1 item 6: Sec-WebSocket-Version is 13 (else §4.4 / §4.2.2 item 4: 426).
    if single_value(headers, "sec-websocket-version") != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    // §4.2.1 item 5 and §11.3.1: exactly one key, base64 of a 16-byte nonce.
    let key = single_value(headers, "sec-websocket-key").ok_or(HandshakeError::BadKey)?;
    match BASE64.decode(key) {
        Ok(nonce) if nonce.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }

    let (protocols, extensions) = offered_lists(headers);
    Ok(ClientOffer {
        key: key.to_owned(),
        protocols,
        extensions,
    })
}

/// The subprotocols and the extensions a request offers (the same headers over
/// HTTP/1.1 and HTTP/2).
fn offered_lists(headers: &HeaderMap) -> (Vec<String>, Option<String>) {
    // §4.2.1 item 8: offered subprotocols, in the client's preference order.
    let protocols = header_tokens(headers, "sec-websocket-protocol")
        .into_iter()
        .map(str::to_owned)
        .collect();
    // §4.2.1 item 9: extensions are passed on untouched for negotiation.
    let ext_values: Vec<&str> = headers
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let extensions = (!ext_values.is_empty()).then(|| ext_values.join(", "));
    (protocols, extensions)
}

/// The default origin check (gorilla's checkSameOrigin): true when there is no Origin header;
/// otherwise parse Origin as a URL ("scheme://host\[:port\]") and compare its authority (host\[:port\]) with the Host header, ASCII case-insensitively. "null" or unparsable Origin → false.
pub fn is_same_origin(req: &http::Request<()>) -> bool {
    let mut origins = req.headers().get_all(header::ORIGIN).iter();
    // §4.2.1 item 7 / §10.2: no Origin means a non-browser client.
    let Some(origin) = origins.next() else {
        return true;
    };
    // Two Origin headers are ambiguous: refuse rather than guess.
    if origins.next().is_some() {
        return false;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim();
    if origin.eq_ignore_ascii_case("null") {
        return false;
    }
    let Some(authority) = origin_authority(origin) else {
        return false;
    };
    let host = match req.headers().get(header::HOST) {
        Some(h) => match h.to_str() {
            Ok(h) => h.trim(),
            Err(_) => return false,
        },
        // Absolute-form request target: the authority stands in for Host.
        None => match req.uri().authority() {
            Some(a) => a.as_str(),
            None => return false,
        },
    };
    authority.eq_ignore_ascii_case(host)
}

/// The `host\[:port\]` of an origin `scheme://host\[:port\][/...]` (RFC 6454 §6.1),
/// or `None` when the text is not shaped like that.
fn origin_authority(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
    let mut chars = scheme.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // RFC 3986 §3.2.2 host characters plus ':' for the port; an origin never
    // carries user info, so '@' makes it unparsable.
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%:[]!$&'()*+,;=".contains(&b));
    valid.then_some(authority)
}

/// Picks the subprotocol: the first of the *server's* list (preference order) that the client offered; None if none.
pub fn select_subprotocol(offered: &[String], supported: &[String]) -> Option<String> {
    // §4.2.2 item 4 (/subprotocol/): the server picks one the client sent, or none.
    supported.iter().find(|s| offered.contains(s)).cloned()
}

/// Appends every header of `map` as `Name: value\r\n`, skipping names `skip` refuses.
fn write_headers(out: &mut Vec<u8>, map: &HeaderMap, skip: impl Fn(&HeaderName) -> bool) {
    for (name, value) in map {
        if skip(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The 101 response: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: …\r\n" + Sec-WebSocket-Protocol if Some + Sec-WebSocket-Extensions if Some + every extra header + "\r\n".
pub fn build_response(
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &HeaderMap,
) -> Vec<u8> {
    // §4.2.2 items 5.1-5.4: status line, Upgrade, Connection, Sec-WebSocket-Accept.
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    // §4.2.2 item 5.5: the selected subprotocol, if any.
    if let Some(p) = protocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    // §4.2.2 item 5.6: the accepted extensions, if any.
    if let Some(e) = extensions {
        head.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    let mut out = head.into_bytes();
    write_headers(&mut out, extra, |_| false);
    out.extend_from_slice(b"\r\n");
    out
}

/// An HTTP/1.1 response — status line, headers, body — as bytes to write: for a
/// server that reads requests itself and answers those that are not upgrades (a page,
/// a redirect, a 404) on the same port, without writing HTTP by hand. A
/// `Content-Length` from the body is added when the response has none (and its status
/// may carry a body); the version is always HTTP/1.1.
///
/// ```
/// use yamabiko::http::{header, Response};
/// let page = Response::builder()
///     .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
///     .body("<h1>hello</h1>")
///     .unwrap();
/// let bytes = yamabiko::proto::handshake::encode_response(&page);
/// assert_eq!(
///     bytes,
///     b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
///       content-length: 14\r\n\r\n<h1>hello</h1>"
/// );
/// ```
pub fn encode_response<B: AsRef<[u8]>>(response: &http::Response<B>) -> Vec<u8> {
    let body = response.body().as_ref();
    let status = response.status();
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(&mut out, response.headers(), |_| false);
    // RFC 9110 §8.6: no Content-Length for 1xx and 204; 304 may keep the resource's.
    let bodiless = status.is_informational() || status == http::StatusCode::NO_CONTENT;
    if !bodiless && !response.headers().contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The client's GET request head: "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n" + Sec-WebSocket-Protocol (comma-joined) if non-empty + Sec-WebSocket-Extensions if Some + extra headers (skipping any extra header whose name is one of the above, case-insensitive) + "\r\n".
pub fn build_request(
    host: &str,
    path_and_query: &str,
    key: &str,
    protocols: &[String],
    extensions: Option<&str>,
    extra: &HeaderMap,
) -> Vec<u8> {
    // §4.1 items 1-8: GET, Host, Upgrade, Connection, key and version 13.
    let mut head = format!(
        "GET {path_and_query} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    // §4.1 item 9: offered subprotocols, most preferred first.
    if !protocols.is_empty() {
        head.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ));
    }
    // §4.1 item 10: offered extensions.
    if let Some(e) = extensions {
        head.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    let mut out = head.into_bytes();
    write_headers(&mut out, extra, |name| {
        RESERVED_REQUEST_HEADERS
            .iter()
            .any(|r| name.as_str().eq_ignore_ascii_case(r))
    });
    out.extend_from_slice(b"\r\n");
    out
}

/// Parses a response head (same rules as parse_request). Returns http::Response<()> (status, version, headers) and the head length.
pub fn parse_response(
    buf: &[u8],
    max_head_bytes: usize,
) -> Result<Option<(http::Response<()>, usize)>, HandshakeError> {
    let window = buf.get(..max_head_bytes).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let status = parsed.parse(window).map_err(parse_error)?;
    let Some(len) = head_len(status, window.len(), max_head_bytes)? else {
        return Ok(None);
    };

    let code = parsed
        .code
        .ok_or_else(|| HandshakeError::Malformed("missing status code".into()))?;
    let code = http::StatusCode::from_u16(code)
        .map_err(|_| HandshakeError::Malformed(format!("invalid status code {code}")))?;

    let mut resp = http::Response::new(());
    *resp.status_mut() = code;
    *resp.version_mut() = http_version(parsed.version)?;
    *resp.headers_mut() = convert_headers(parsed.headers)?;
    Ok(Some((resp, len)))
}

/// All values of `name` joined with ", " (lossy for non-UTF-8 bytes), for error reports.
fn joined_values(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validates a response to our request: status 101 (else UnexpectedStatus(code)), Upgrade/Connection tokens, Sec-WebSocket-Accept == accept_key(key), subprotocol ∈ offered (returns it), and any Sec-WebSocket-Extensions present when `offered_extensions` is false → UnrequestedExtension(value).
pub fn validate_response(
    resp: &http::Response<()>,
    key: &str,
    offered_protocols: &[String],
    offered_extensions: bool,
) -> Result<Option<String>, HandshakeError> {
    // §4.1 (server response) item 1: anything but 101 ends the handshake.
    let code = resp.status().as_u16();
    if code != 101 {
        return Err(HandshakeError::UnexpectedStatus(code));
    }
    let headers = resp.headers();
    // §4.1 items 2 and 3: Upgrade: websocket, Connection: Upgrade.
    if !has_token(headers, "upgrade", "websocket") || !has_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::ResponseNotUpgrade);
    }
    // §4.1 item 4: Sec-WebSocket-Accept must match our key.
    if single_value(headers, "sec-websocket-accept") != Some(accept_key(key.as_bytes()).as_str()) {
        return Err(HandshakeError::BadAccept);
    }
    check_agreement(headers, offered_protocols, offered_extensions)
}

/// Checks what a server agreed to (the same headers over HTTP/1.1 and HTTP/2): the
/// subprotocol, if any, was offered (returns it), and no extension came unasked.
fn check_agreement(
    headers: &HeaderMap,
    offered_protocols: &[String],
    offered_extensions: bool,
) -> Result<Option<String>, HandshakeError> {
    // §4.1 item 5: no extension the client did not ask for.
    if !offered_extensions && headers.contains_key("sec-websocket-extensions") {
        return Err(HandshakeError::UnrequestedExtension(joined_values(
            headers,
            "sec-websocket-extensions",
        )));
    }
    // §4.1 item 6: at most one subprotocol, and one that was offered.
    if !headers.contains_key("sec-websocket-protocol") {
        return Ok(None);
    }
    match header_tokens(headers, "sec-websocket-protocol").as_slice() {
        [one] if offered_protocols.iter().any(|p| p == one) => Ok(Some((*one).to_owned())),
        _ => Err(HandshakeError::UnrequestedSubprotocol(joined_values(
            headers,
            "sec-websocket-protocol",
        ))),
    }
}

/// Splits comma-separated header tokens across all values of `name` (trimmed, empties dropped) — shared helper.
pub fn header_tokens<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        // Values with obs-text bytes carry no token we recognise.
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const LIMIT: usize = 8192;

    /// Drops the parsed message so outcomes can be compared.
    fn len_of<T>(
        r: Result<Option<(T, usize)>, HandshakeError>,
    ) -> Result<Option<usize>, HandshakeError> {
        r.map(|o| o.map(|(_, n)| n))
    }

    fn valid_request_bytes() -> Vec<u8> {
        format!(
            "GET /chat?room=1 HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\n\
             Origin: http://server.example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Protocol: , v2\r\n\
             Sec-WebSocket-Extensions: permessage-deflate\r\n\
             Sec-WebSocket-Extensions: x-foo\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes()
    }

    /// Parses a complete request head or fails the test.
    fn request(raw: &str) -> http::Request<()> {
        match parse_request(raw.as_bytes(), LIMIT) {
            Ok(Some((req, len))) => {
                assert_eq!(len, raw.len());
                req
            }
            other => panic!("unexpected parse result {other:?}"),
        }
    }

    /// A request with the given replacement lines on top of a minimal valid one.
    fn request_with(line: &str, lines: &[&str]) -> http::Request<()> {
        let mut raw = format!("{line}\r\n");
        for l in lines {
            raw.push_str(l);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        request(&raw)
    }

    const GOOD: [&str; 5] = [
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];

    fn without(name: &str) -> Vec<&'static str> {
        GOOD.iter()
            .copied()
            .filter(|l| !l.to_ascii_lowercase().starts_with(name))
            .collect()
    }

    fn origin_request(host: &str, origin: Option<&str>) -> http::Request<()> {
        let mut lines = vec![format!("Host: {host}")];
        if let Some(o) = origin {
            lines.push(format!("Origin: {o}"));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        request_with("GET / HTTP/1.1", &refs)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn response(raw: &str) -> http::Response<()> {
        match parse_response(raw.as_bytes(), LIMIT) {
            Ok(Some((resp, len))) => {
                assert_eq!(len, raw.len());
                resp
            }
            other => panic!("unexpected parse result {other:?}"),
        }
    }

    fn good_101(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        )
    }

    #[test]
    fn rfc_example_accept_key() {
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn generated_keys_are_valid_and_fresh() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        for k in [&a, &b] {
            assert_eq!(k.len(), 24);
            assert_eq!(BASE64.decode(k).map(|n| n.len()), Ok(16));
        }
    }

    #[test]
    fn request_parsed_in_pieces() {
        let raw = valid_request_bytes();
        let mut trailing = raw.clone();
        trailing.extend_from_slice(b"\x81\x05hello");

        for cut in [0, 1, 10, raw.len() / 2, raw.len() - 1] {
            assert_eq!(
                len_of(parse_request(&raw[..cut], LIMIT)),
                Ok(None),
                "cut at {cut}"
            );
        }
        let Ok(Some((req, len))) = parse_request(&trailing, LIMIT) else {
            panic!("complete head not parsed");
        };
        assert_eq!(len, raw.len());
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().path(), "/chat");
        assert_eq!(req.uri().query(), Some("room=1"));
        assert_eq!(req.version(), http::Version::HTTP_11);
        assert_eq!(
            req.headers()
                .get_all("sec-websocket-protocol")
                .iter()
                .count(),
            2
        );

        let offer = validate_request(&req).expect("valid offer");
        assert_eq!(offer.key, KEY);
        assert_eq!(offer.protocols, strings(&["chat", "superchat", "v2"]));
        assert_eq!(
            offer.extensions.as_deref(),
            Some("permessage-deflate, x-foo")
        );
        assert!(is_same_origin(&req));
    }

    #[test]
    fn minimal_offer_has_no_protocols_or_extensions() {
        let offer = validate_request(&request_with("GET / HTTP/1.1", &GOOD)).expect("valid");
        assert!(offer.protocols.is_empty());
        assert_eq!(offer.extensions, None);
    }

    #[test]
    fn tokens_are_case_insensitive_lists() {
        let req = request_with(
            "GET / HTTP/1.1",
            &[
                "Upgrade: h2c, WebSocket",
                "Connection: keep-alive",
                "connection: UPGRADE",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ],
        );
        assert!(validate_request(&req).is_ok());
        assert_eq!(
            header_tokens(req.headers(), "connection"),
            vec!["keep-alive", "UPGRADE"]
        );
        assert!(header_tokens(req.headers(), "x-absent").is_empty());
        assert!(header_tokens(req.headers(), "bad name\n").is_empty());
    }

    #[test]
    fn method_not_allowed() {
        let err = validate_request(&request_with("POST / HTTP/1.1", &GOOD)).unwrap_err();
        assert_eq!(err, HandshakeError::MethodNotAllowed);
        assert_eq!(err.status(), 405);
        let text = String::from_utf8(err.to_http_response()).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET\r\n"));
    }

    #[test]
    fn http_10_rejected() {
        let err = validate_request(&request_with("GET / HTTP/1.0", &GOOD)).unwrap_err();
        assert_eq!(err, HandshakeError::HttpVersion);
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn missing_upgrade() {
        let err =
            validate_request(&request_with("GET / HTTP/1.1", &without("upgrade"))).unwrap_err();
        assert_eq!(err, HandshakeError::NoUpgradeWebsocket);
        assert_eq!(err.status(), 400);
        let mut lines = without("upgrade");
        lines.push("Upgrade: h2c");
        let err = validate_request(&request_with("GET / HTTP/1.1", &lines)).unwrap_err();
        assert_eq!(err, HandshakeError::NoUpgradeWebsocket);
    }

    #[test]
    fn missing_connection_upgrade() {
        let mut lines = without("connection");
        let err = validate_request(&request_with("GET / HTTP/1.1", &lines)).unwrap_err();
        assert_eq!(err, HandshakeError::NoConnectionUpgrade);
        assert_eq!(err.status(), 400);
        lines.push("Connection: keep-alive");
        let err = validate_request(&request_with("GET / HTTP/1.1", &lines)).unwrap_err();
        assert_eq!(err, HandshakeError::NoConnectionUpgrade);
    }

    #[test]
    fn unsupported_version() {
        for bad in [None, Some("8"), Some("13, 8")] {
            let mut lines = without("sec-websocket-version");
            let line = bad.map(|v| format!("Sec-WebSocket-Version: {v}"));
            if let Some(l) = &line {
                lines.push(l);
            }
            let err = validate_request(&request_with("GET / HTTP/1.1", &lines)).unwrap_err();
            assert_eq!(err, HandshakeError::UnsupportedVersion, "{bad:?}");
            assert_eq!(err.status(), 426);
            let text = String::from_utf8(err.to_http_response()).expect("utf-8");
            assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
            assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        }
    }

    #[test]
    fn bad_keys() {
        let bad = [
            None,
            Some("Sec-WebSocket-Key: "),
            Some("Sec-WebSocket-Key: not base64!"),
            // base64 of 15 and 17 bytes
            Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"),
            Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="),
            Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA"),
        ];
        for line in bad {
            let mut lines = without("sec-websocket-key");
            lines.extend(line);
            let err = validate_request(&request_with("GET / HTTP/1.1", &lines)).unwrap_err();
            assert_eq!(err, HandshakeError::BadKey, "{line:?}");
            assert_eq!(err.status(), 400);
        }
        // §11.3.1: the key must not appear twice.
        let mut lines = GOOD.to_vec();
        lines.push("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==");
        let err = validate_request(&request_with("GET / HTTP/1.1", &lines)).unwrap_err();
        assert_eq!(err, HandshakeError::BadKey);
    }

    #[test]
    fn checks_run_in_order() {
        // Everything is wrong: the method is reported first.
        let req = request_with("PUT / HTTP/1.0", &["Host: x"]);
        assert_eq!(
            validate_request(&req),
            Err(HandshakeError::MethodNotAllowed)
        );
        let req = request_with("GET / HTTP/1.0", &["Host: x"]);
        assert_eq!(validate_request(&req), Err(HandshakeError::HttpVersion));
        let req = request_with("GET / HTTP/1.1", &["Host: x"]);
        assert_eq!(
            validate_request(&req),
            Err(HandshakeError::NoUpgradeWebsocket)
        );
    }

    #[test]
    fn status_codes_and_error_responses() {
        let all = [
            (HandshakeError::Malformed("x".into()), 400),
            (HandshakeError::HeadersTooLarge, 431),
            (HandshakeError::MethodNotAllowed, 405),
            (HandshakeError::HttpVersion, 400),
            (HandshakeError::NoUpgradeWebsocket, 400),
            (HandshakeError::NoConnectionUpgrade, 400),
            (HandshakeError::UnsupportedVersion, 426),
            (HandshakeError::BadKey, 400),
            (HandshakeError::OriginRejected, 403),
            (HandshakeError::UnexpectedStatus(200), 400),
            (HandshakeError::ResponseNotUpgrade, 400),
            (HandshakeError::BadAccept, 400),
            (HandshakeError::UnrequestedSubprotocol("a".into()), 400),
            (HandshakeError::UnrequestedExtension("b".into()), 400),
        ];
        for (err, status) in all {
            assert_eq!(err.status(), status, "{err:?}");
            let msg = err.to_string();
            assert!(!msg.contains('\n') && !msg.ends_with('.'), "{msg:?}");

            let raw = err.to_http_response();
            let Ok(Some((resp, len))) = parse_response(&raw, LIMIT) else {
                panic!("error response does not parse: {err:?}");
            };
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
            assert_eq!(resp.headers()["connection"], "close");
            let body = &raw[len..];
            assert_eq!(body, format!("{msg}\n").as_bytes());
            assert_eq!(
                resp.headers()["content-length"],
                body.len().to_string().as_str()
            );
            assert_eq!(resp.headers().contains_key("allow"), status == 405);
            assert_eq!(
                resp.headers().contains_key("sec-websocket-version"),
                status == 426
            );
        }
        let forbidden = HandshakeError::OriginRejected.to_http_response();
        assert!(forbidden.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
        let too_large = HandshakeError::HeadersTooLarge.to_http_response();
        assert!(too_large.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let bad = HandshakeError::BadKey.to_http_response();
        assert!(bad.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }

    #[test]
    fn display_example() {
        assert_eq!(
            HandshakeError::NoUpgradeWebsocket.to_string(),
            "'Upgrade: websocket' header missing"
        );
    }

    #[test]
    fn oversized_head() {
        let mut raw = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
        raw.resize(200, b'a');
        assert_eq!(
            len_of(parse_request(&raw, 200)),
            Err(HandshakeError::HeadersTooLarge)
        );
        assert_eq!(len_of(parse_request(&raw[..199], 200)), Ok(None));
        // A complete head that ends past the limit is still too large.
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            len_of(parse_request(&raw, 200)),
            Err(HandshakeError::HeadersTooLarge)
        );
        assert!(matches!(parse_request(&raw, 204), Ok(Some((_, 204)))));
        assert_eq!(
            len_of(parse_response(b"HTTP/1.1 101 Switching Protocols\r\n", 10)),
            Err(HandshakeError::HeadersTooLarge)
        );
        assert_eq!(
            len_of(parse_request(b"", 0)),
            Err(HandshakeError::HeadersTooLarge)
        );
    }

    #[test]
    fn too_many_headers() {
        let mut raw = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            raw.push_str(&format!("X-H{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(
            len_of(parse_request(raw.as_bytes(), LIMIT)),
            Err(HandshakeError::HeadersTooLarge)
        );
        let resp = raw.replacen("GET / HTTP/1.1", "HTTP/1.1 101 OK", 1);
        assert_eq!(
            len_of(parse_response(resp.as_bytes(), LIMIT)),
            Err(HandshakeError::HeadersTooLarge)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let garbage: [&[u8]; 5] = [
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"HELLO\x00WORLD\r\n\r\n",
        ];
        for g in garbage {
            assert!(
                matches!(parse_request(g, LIMIT), Err(HandshakeError::Malformed(_))),
                "{g:?}"
            );
        }
        assert!(matches!(
            parse_response(b"HTTP/1.1 abc\r\n\r\n", LIMIT),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(b"\x00\x01\x02garbage\r\n\r\n", LIMIT),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn origin_checks() {
        // Absent: non-browser client, allowed.
        assert!(is_same_origin(&origin_request("example.com", None)));
        assert!(is_same_origin(&origin_request(
            "example.com:8080",
            Some("https://example.com:8080")
        )));
        assert!(!is_same_origin(&origin_request(
            "example.com:8080",
            Some("https://example.com")
        )));
        assert!(!is_same_origin(&origin_request(
            "example.com",
            Some("https://evil.example")
        )));
        assert!(is_same_origin(&origin_request(
            "Example.COM",
            Some("HTTP://example.com")
        )));
        assert!(!is_same_origin(&origin_request(
            "example.com",
            Some("null")
        )));
        assert!(!is_same_origin(&origin_request(
            "example.com",
            Some("example.com")
        )));
        assert!(!is_same_origin(&origin_request(
            "example.com",
            Some("://example.com")
        )));
        assert!(!is_same_origin(&origin_request(
            "example.com",
            Some("http://user@example.com")
        )));
        assert!(is_same_origin(&origin_request(
            "[::1]:80",
            Some("http://[::1]:80")
        )));
        assert!(is_same_origin(&origin_request(
            "example.com",
            Some("https://example.com/")
        )));
        assert!(!is_same_origin(&origin_request(
            "example.com",
            Some("1http://example.com")
        )));
        assert!(!is_same_origin(&origin_request(
            "example.com",
            Some("http://")
        )));
        // Two Origin headers are refused.
        let req = request_with(
            "GET / HTTP/1.1",
            &["Host: a", "Origin: http://a", "Origin: http://a"],
        );
        assert!(!is_same_origin(&req));
        // Absolute-form target without Host: the target's authority is used.
        let req = request_with(
            "GET http://a.example/ HTTP/1.1",
            &["Origin: http://a.example"],
        );
        assert!(is_same_origin(&req));
    }

    #[test]
    fn subprotocol_selection_follows_server_order() {
        let offered = strings(&["chat", "superchat", "json"]);
        assert_eq!(
            select_subprotocol(&offered, &strings(&["json", "chat"])).as_deref(),
            Some("json")
        );
        assert_eq!(
            select_subprotocol(&offered, &strings(&["superchat", "json"])).as_deref(),
            Some("superchat")
        );
        assert_eq!(select_subprotocol(&offered, &strings(&["mqtt"])), None);
        assert_eq!(select_subprotocol(&offered, &[]), None);
        assert_eq!(select_subprotocol(&[], &strings(&["chat"])), None);
        assert_eq!(select_subprotocol(&offered, &strings(&["CHAT"])), None);
    }

    #[test]
    fn round_trip_client_and_server() {
        let key = generate_key();
        let protocols = strings(&["chat", "superchat"]);
        let mut extra = HeaderMap::new();
        extra.insert("user-agent", HeaderValue::from_static("yamabiko-test"));
        extra.insert("x-custom", HeaderValue::from_static("1"));
        extra.insert("sec-websocket-version", HeaderValue::from_static("8"));
        extra.insert("Host", HeaderValue::from_static("evil"));

        let raw = build_request(
            "example.com:9000",
            "/ws?x=1",
            &key,
            &protocols,
            Some("permessage-deflate"),
            &extra,
        );
        let Ok(Some((req, len))) = parse_request(&raw, LIMIT) else {
            panic!("built request does not parse");
        };
        assert_eq!(len, raw.len());
        assert_eq!(req.uri(), "/ws?x=1");
        assert_eq!(req.headers()["host"], "example.com:9000");
        assert_eq!(req.headers().get_all("host").iter().count(), 1);
        assert_eq!(
            req.headers()
                .get_all("sec-websocket-version")
                .iter()
                .count(),
            1
        );
        assert_eq!(req.headers()["x-custom"], "1");
        assert_eq!(req.headers()["user-agent"], "yamabiko-test");

        let offer = validate_request(&req).expect("valid offer");
        assert_eq!(offer.key, key);
        assert_eq!(offer.protocols, protocols);
        assert_eq!(offer.extensions.as_deref(), Some("permessage-deflate"));

        let chosen = select_subprotocol(&offer.protocols, &strings(&["superchat"]));
        let mut resp_extra = HeaderMap::new();
        resp_extra.insert("server", HeaderValue::from_static("yamabiko"));
        let raw = build_response(
            &accept_key(offer.key.as_bytes()),
            chosen.as_deref(),
            Some("permessage-deflate"),
            &resp_extra,
        );
        assert!(raw.starts_with(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        ));
        assert!(raw.ends_with(b"server: yamabiko\r\n\r\n"));
        let Ok(Some((resp, len))) = parse_response(&raw, LIMIT) else {
            panic!("built response does not parse");
        };
        assert_eq!(len, raw.len());
        assert_eq!(resp.version(), http::Version::HTTP_11);
        assert_eq!(
            validate_response(&resp, &key, &protocols, true),
            Ok(Some("superchat".to_owned()))
        );

        // Plain request/response without protocols or extensions.
        let raw = build_request("h", "/", &key, &[], None, &HeaderMap::new());
        let text = String::from_utf8(raw.clone()).expect("utf-8");
        assert!(!text.contains("Sec-WebSocket-Protocol"));
        assert!(!text.contains("Sec-WebSocket-Extensions"));
        let Ok(Some((req, _))) = parse_request(&raw, LIMIT) else {
            panic!("plain request does not parse");
        };
        let offer = validate_request(&req).expect("valid");
        let raw = build_response(
            &accept_key(offer.key.as_bytes()),
            None,
            None,
            &HeaderMap::new(),
        );
        let Ok(Some((resp, _))) = parse_response(&raw, LIMIT) else {
            panic!("plain response does not parse");
        };
        assert_eq!(validate_response(&resp, &key, &[], false), Ok(None));
    }

    #[test]
    fn response_parsed_in_pieces() {
        let raw = good_101("");
        assert_eq!(
            len_of(parse_response(&raw.as_bytes()[..20], LIMIT)),
            Ok(None)
        );
        assert!(matches!(
            parse_response(raw.as_bytes(), LIMIT),
            Ok(Some((_, n))) if n == raw.len()
        ));
    }

    #[test]
    fn client_rejects_non_101() {
        let ok = response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            validate_response(&ok, KEY, &[], false),
            Err(HandshakeError::UnexpectedStatus(200))
        );
        let redirect = response("HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n");
        assert_eq!(
            validate_response(&redirect, KEY, &[], false),
            Err(HandshakeError::UnexpectedStatus(302))
        );
    }

    #[test]
    fn client_rejects_101_without_upgrade() {
        let resp = response(
            "HTTP/1.1 101 Switching Protocols\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        );
        assert_eq!(
            validate_response(&resp, KEY, &[], false),
            Err(HandshakeError::ResponseNotUpgrade)
        );
        let resp = response(
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: keep-alive\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        );
        assert_eq!(
            validate_response(&resp, KEY, &[], false),
            Err(HandshakeError::ResponseNotUpgrade)
        );
    }

    #[test]
    fn client_rejects_wrong_accept() {
        assert_eq!(
            validate_response(&response(&good_101("")), KEY, &[], false),
            Ok(None)
        );
        let other_key = "AAAAAAAAAAAAAAAAAAAAAA==";
        assert_eq!(
            validate_response(&response(&good_101("")), other_key, &[], false),
            Err(HandshakeError::BadAccept)
        );
        let missing = response(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        assert_eq!(
            validate_response(&missing, KEY, &[], false),
            Err(HandshakeError::BadAccept)
        );
        let twice = response(&good_101(
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
        ));
        assert_eq!(
            validate_response(&twice, KEY, &[], false),
            Err(HandshakeError::BadAccept)
        );
    }

    #[test]
    fn client_rejects_unrequested_subprotocol() {
        let offered = strings(&["chat"]);
        let resp = response(&good_101("Sec-WebSocket-Protocol: superchat\r\n"));
        assert_eq!(
            validate_response(&resp, KEY, &offered, false),
            Err(HandshakeError::UnrequestedSubprotocol("superchat".into()))
        );
        assert_eq!(
            validate_response(&resp, KEY, &[], false),
            Err(HandshakeError::UnrequestedSubprotocol("superchat".into()))
        );
        // More than one selected protocol is never valid.
        let resp = response(&good_101("Sec-WebSocket-Protocol: chat, superchat\r\n"));
        let both = strings(&["chat", "superchat"]);
        assert_eq!(
            validate_response(&resp, KEY, &both, false),
            Err(HandshakeError::UnrequestedSubprotocol(
                "chat, superchat".into()
            ))
        );
        let resp = response(&good_101("Sec-WebSocket-Protocol: chat\r\n"));
        assert_eq!(
            validate_response(&resp, KEY, &offered, false),
            Ok(Some("chat".into()))
        );
    }

    #[test]
    fn client_rejects_unrequested_extension() {
        let resp = response(&good_101(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
        ));
        assert_eq!(
            validate_response(&resp, KEY, &[], false),
            Err(HandshakeError::UnrequestedExtension(
                "permessage-deflate; server_no_context_takeover".into()
            ))
        );
        // When extensions were offered, negotiation happens elsewhere.
        assert_eq!(validate_response(&resp, KEY, &[], true), Ok(None));
    }
}
