//! Sans-IO WebSocket handshake over HTTP/2: the extended CONNECT of RFC 8441.
//!
//! Over HTTP/2 a WebSocket is one stream of a connection, opened with a request
//! instead of an upgrade (RFC 8441 §4, §5):
//!
//! ```text
//! client → :method CONNECT  :protocol websocket  :scheme https  :path /chat
//!          :authority example.com  sec-websocket-version 13
//!          [sec-websocket-protocol]  [sec-websocket-extensions]  [origin]
//! server → :status 200  [sec-websocket-protocol]  [sec-websocket-extensions]
//! ```
//!
//! then WebSocket frames as the DATA of that stream, in both directions. What differs
//! from HTTP/1.1: no `Upgrade`/`Connection` headers, no `Sec-WebSocket-Key` and no
//! `Sec-WebSocket-Accept` (§5: the stream itself proves the server understood), any
//! `2xx` instead of `101`, and the end of the stream (END_STREAM, or RST_STREAM for an
//! abrupt end) stands for the end of the TCP connection. Subprotocols, extensions and
//! the origin check use the same headers as over HTTP/1.1. A client may only send
//! this request once the server's SETTINGS enabled `SETTINGS_ENABLE_CONNECT_PROTOCOL`
//! (§3); that is the driver's business, as is the `:protocol` pseudo-header, which
//! HTTP libraries carry outside the header map (here it is a plain argument).

use super::{check_agreement, offered_lists, single_value, HandshakeError};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The `:protocol` of a WebSocket (RFC 8441 §4; the HTTP/1.1 upgrade token).
pub const PROTOCOL: &str = "websocket";

/// Header names an extended CONNECT request writes itself; extra headers with these
/// names are skipped by [`build_connect_request`].
const RESERVED_REQUEST_HEADERS: [&str; 4] = [
    "host",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// What a valid extended CONNECT offers (there is no key over HTTP/2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOffer {
    /// Offered subprotocols, in the client's order.
    pub protocols: Vec<String>,
    /// All `Sec-WebSocket-Extensions` values joined with ", " (None when absent).
    pub extensions: Option<String>,
}

/// Header fields HTTP/2 forbids (RFC 9113 §8.2.2): they describe an HTTP/1.1
/// connection, and a peer must treat a message carrying them as malformed.
fn is_connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::UPGRADE
        || name == header::TRANSFER_ENCODING
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Validates an HTTP/2 request for a WebSocket, with the `:protocol` pseudo-header
/// the HTTP/2 library received (`None` when there was none). Checks, in order: the
/// method is CONNECT (else [`HandshakeError::MethodNotConnect`], 405), `:protocol` is
/// `websocket` ([`HandshakeError::NoProtocolWebsocket`], 400), `:scheme` and `:path`
/// are present ([`HandshakeError::Malformed`], 400), `Sec-WebSocket-Version` is 13
/// ([`HandshakeError::UnsupportedVersion`], 426).
pub fn validate_connect_request(
    req: &http::Request<()>,
    protocol: Option<&str>,
) -> Result<ConnectOffer, HandshakeError> {
    // RFC 8441 §4: the extended CONNECT method.
    if req.method() != http::Method::CONNECT {
        return Err(HandshakeError::MethodNotConnect);
    }
    // RFC 8441 §4 and §5: `:protocol` names the upgrade token, "websocket" (a token:
    // compared case-insensitively, as the Upgrade header is).
    if !protocol.is_some_and(|p| p.trim().eq_ignore_ascii_case(PROTOCOL)) {
        return Err(HandshakeError::NoProtocolWebsocket);
    }
    // RFC 8441 §4: on a request with `:protocol`, `:scheme` and `:path` are required.
    if req.uri().scheme().is_none() || req.uri().path().is_empty() {
        return Err(HandshakeError::Malformed(
            "extended CONNECT without :scheme or :path".into(),
        ));
    }
    // RFC 8441 §5, RFC 6455 §4.2.1 item 6: version 13, else 426 (§4.4).
    if single_value(req.headers(), "sec-websocket-version") != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    // RFC 8441 §5: Sec-WebSocket-Key and Sec-WebSocket-Accept are not used; a key
    // sent anyway is ignored.
    let (protocols, extensions) = offered_lists(req.headers());
    Ok(ConnectOffer {
        protocols,
        extensions,
    })
}

/// The answer that opens the WebSocket: `200` with the chosen subprotocol and
/// extensions, plus every extra header that HTTP/2 allows (RFC 9113 §8.2.2
/// connection-specific fields are dropped). The stream stays open: no body, no
/// END_STREAM.
pub fn build_connect_response(
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &HeaderMap,
) -> http::Response<()> {
    let mut resp = http::Response::new(());
    *resp.version_mut() = http::Version::HTTP_2;
    let headers = resp.headers_mut();
    for (name, value) in extra {
        if !is_connection_specific(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    // RFC 8441 §5 with RFC 6455 §4.2.2 items 5.5 and 5.6.
    if let Some(value) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert("sec-websocket-protocol", value);
    }
    if let Some(value) = extensions.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert("sec-websocket-extensions", value);
    }
    resp
}

/// The answer that refuses an HTTP/2 request for a WebSocket, for that stream only:
/// the error's status (400, 403, 405, 426), `content-type`, `sec-websocket-version:
/// 13` for 426, `allow` for 405, and a one-line body with the reason. Unlike
/// [`HandshakeError::to_http_response`] it carries no `connection: close` (HTTP/2
/// forbids it; the other streams of the connection go on).
pub fn build_error_response(e: &HandshakeError) -> http::Response<String> {
    let mut body: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    body.push('\n');
    let mut resp = http::Response::new(body);
    *resp.version_mut() = http::Version::HTTP_2;
    *resp.status_mut() =
        http::StatusCode::from_u16(e.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match e {
        // RFC 6455 §4.4: the versions this server speaks.
        HandshakeError::UnsupportedVersion => {
            headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        }
        // RFC 9110 §15.5.6: a 405 carries Allow.
        HandshakeError::MethodNotConnect => {
            headers.insert(header::ALLOW, HeaderValue::from_static("CONNECT"));
        }
        HandshakeError::MethodNotAllowed => {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        _ => {}
    }
    resp
}

/// The client's extended CONNECT for `wss://authority/path` (`tls`) or
/// `ws://authority/path`: method CONNECT, `:scheme` https or http (RFC 8441 §5),
/// `:authority`, `:path`, `sec-websocket-version: 13`, the offered subprotocols
/// (comma-joined) and extensions, and the extra headers except those this function
/// writes and those HTTP/2 forbids. The driver adds `:protocol websocket`.
pub fn build_connect_request(
    authority: &str,
    tls: bool,
    path_and_query: &str,
    protocols: &[String],
    extensions: Option<&str>,
    extra: &HeaderMap,
) -> Result<http::Request<()>, HandshakeError> {
    let scheme = if tls { "https" } else { "http" };
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| HandshakeError::Malformed(format!("request target: {e}")))?;
    let mut req = http::Request::new(());
    *req.method_mut() = http::Method::CONNECT;
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_2;
    let headers = req.headers_mut();
    for (name, value) in extra {
        let reserved = RESERVED_REQUEST_HEADERS
            .iter()
            .any(|r| name.as_str().eq_ignore_ascii_case(r));
        if !reserved && !is_connection_specific(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
    if !protocols.is_empty() {
        let joined = HeaderValue::from_str(&protocols.join(", "))
            .map_err(|_| HandshakeError::Malformed("invalid subprotocol name".into()))?;
        headers.insert("sec-websocket-protocol", joined);
    }
    if let Some(e) = extensions {
        let value = HeaderValue::from_str(e)
            .map_err(|_| HandshakeError::Malformed("invalid extension offer".into()))?;
        headers.insert("sec-websocket-extensions", value);
    }
    Ok(req)
}

/// Validates the server's answer to an extended CONNECT: any `2xx` status (else
/// [`HandshakeError::UnexpectedStatus`]), a subprotocol that was offered (returned),
/// no extension unless some were offered.
pub fn validate_connect_response(
    resp: &http::Response<()>,
    offered_protocols: &[String],
    offered_extensions: bool,
) -> Result<Option<String>, HandshakeError> {
    // RFC 8441 §5 / RFC 9110 §9.3.6: a 2xx answer to CONNECT opens the tunnel.
    if !resp.status().is_success() {
        return Err(HandshakeError::UnexpectedStatus(resp.status().as_u16()));
    }
    check_agreement(resp.headers(), offered_protocols, offered_extensions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(lines: &[(&str, &str)]) -> http::Request<()> {
        let mut req = http::Request::new(());
        *req.method_mut() = http::Method::CONNECT;
        *req.version_mut() = http::Version::HTTP_2;
        *req.uri_mut() = http::Uri::from_static("https://example.com/chat?room=1");
        for (name, value) in lines {
            req.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        req
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn valid_request_offers_protocols_and_extensions() {
        let req = connect(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-protocol", "v2"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("origin", "https://example.com"),
        ]);
        let offer = validate_connect_request(&req, Some("websocket")).unwrap();
        assert_eq!(offer.protocols, strings(&["chat", "superchat", "v2"]));
        assert_eq!(offer.extensions.as_deref(), Some("permessage-deflate"));
        // The protocol token is case-insensitive.
        assert!(validate_connect_request(&req, Some("WebSocket")).is_ok());
        // The default origin check reads :authority when there is no Host header.
        assert!(super::super::is_same_origin(&req));
    }

    #[test]
    fn each_check_has_its_error_and_status() {
        let good = [("sec-websocket-version", "13")];
        let mut get = connect(&good);
        *get.method_mut() = http::Method::GET;
        let e = validate_connect_request(&get, Some("websocket")).unwrap_err();
        assert_eq!(e, HandshakeError::MethodNotConnect);
        assert_eq!(e.status(), 405);

        for protocol in [None, Some("connect-udp"), Some("")] {
            let e = validate_connect_request(&connect(&good), protocol).unwrap_err();
            assert_eq!(e, HandshakeError::NoProtocolWebsocket);
            assert_eq!(e.status(), 400);
        }

        let mut no_scheme = connect(&good);
        *no_scheme.uri_mut() = http::Uri::from_static("/chat");
        assert!(matches!(
            validate_connect_request(&no_scheme, Some("websocket")),
            Err(HandshakeError::Malformed(_))
        ));

        for version in [&[][..], &[("sec-websocket-version", "8")][..]] {
            let e = validate_connect_request(&connect(version), Some("websocket")).unwrap_err();
            assert_eq!(e, HandshakeError::UnsupportedVersion);
            assert_eq!(e.status(), 426);
        }
        // A key is not part of the HTTP/2 handshake; one sent anyway does no harm.
        let with_key = connect(&[("sec-websocket-version", "13"), ("sec-websocket-key", "x")]);
        assert!(validate_connect_request(&with_key, Some("websocket")).is_ok());
    }

    #[test]
    fn error_responses_fit_http2() {
        let r = build_error_response(&HandshakeError::UnsupportedVersion);
        assert_eq!(r.status(), 426);
        assert_eq!(r.headers()["sec-websocket-version"], "13");
        assert!(r.headers().get(header::CONNECTION).is_none());
        let r = build_error_response(&HandshakeError::MethodNotConnect);
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[header::ALLOW], "CONNECT");
        let r = build_error_response(&HandshakeError::OriginRejected);
        assert_eq!(r.status(), 403);
        assert_eq!(r.body(), "request origin not allowed\n");
        let r = build_error_response(&HandshakeError::NoProtocolWebsocket);
        assert_eq!(r.status(), 400);
    }

    #[test]
    fn response_carries_agreement_and_no_connection_headers() {
        let mut extra = HeaderMap::new();
        extra.insert(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        extra.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let r = build_connect_response(Some("chat"), Some("permessage-deflate"), &extra);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["sec-websocket-protocol"], "chat");
        assert_eq!(
            r.headers()["sec-websocket-extensions"],
            "permessage-deflate"
        );
        assert_eq!(r.headers()[header::SET_COOKIE], "a=1");
        assert!(r.headers().get(header::CONNECTION).is_none());
        assert!(r.headers().get("sec-websocket-accept").is_none());
    }

    #[test]
    fn client_request_and_server_checks_agree() {
        let mut extra = HeaderMap::new();
        extra.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://example.com"),
        );
        extra.insert(header::HOST, HeaderValue::from_static("evil.example"));
        extra.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        extra.insert("sec-websocket-version", HeaderValue::from_static("8"));
        let offered = strings(&["chat", "v2"]);
        let req = build_connect_request(
            "example.com",
            true,
            "/chat?room=1",
            &offered,
            Some("permessage-deflate"),
            &extra,
        )
        .unwrap();
        assert_eq!(req.method(), http::Method::CONNECT);
        assert_eq!(req.uri(), "https://example.com/chat?room=1");
        assert_eq!(req.headers()["sec-websocket-version"], "13");
        assert_eq!(
            req.headers()
                .get_all("sec-websocket-version")
                .iter()
                .count(),
            1
        );
        assert!(req.headers().get(header::HOST).is_none());
        assert!(req.headers().get(header::UPGRADE).is_none());
        let offer = validate_connect_request(&req, Some(PROTOCOL)).unwrap();
        assert_eq!(offer.protocols, offered);
        assert!(super::super::is_same_origin(&req));

        let plain =
            build_connect_request("127.0.0.1:9001", false, "/", &[], None, &HeaderMap::new())
                .unwrap();
        assert_eq!(plain.uri(), "http://127.0.0.1:9001/");
        assert!(plain.headers().get("sec-websocket-protocol").is_none());

        let resp = build_connect_response(Some("v2"), None, &HeaderMap::new());
        assert_eq!(
            validate_connect_response(&resp, &offered, false),
            Ok(Some("v2".to_owned()))
        );
    }

    #[test]
    fn client_rejects_refusals_and_unasked_agreements() {
        let mut refused = http::Response::new(());
        *refused.status_mut() = http::StatusCode::FORBIDDEN;
        assert_eq!(
            validate_connect_response(&refused, &[], false),
            Err(HandshakeError::UnexpectedStatus(403))
        );
        let resp = build_connect_response(Some("chat"), None, &HeaderMap::new());
        assert!(matches!(
            validate_connect_response(&resp, &[], false),
            Err(HandshakeError::UnrequestedSubprotocol(_))
        ));
        let resp = build_connect_response(None, Some("permessage-deflate"), &HeaderMap::new());
        assert!(matches!(
            validate_connect_response(&resp, &[], false),
            Err(HandshakeError::UnrequestedExtension(_))
        ));
        assert_eq!(validate_connect_response(&resp, &[], true), Ok(None));
    }
}
