//! The server side of the HTTP/2 handshake (RFC 8441): the same [`Upgrader`] policy
//! (origin check, subprotocols, compression, extra headers) applied to an extended
//! CONNECT.

use super::Upgrader;
use crate::proto::deflate::DeflateParams;
use crate::proto::handshake::extended_connect;
use crate::proto::handshake::HandshakeError;

/// The outcome of checking an HTTP/2 extended CONNECT: the `200` response that opens
/// the WebSocket, and what was agreed.
#[derive(Debug, Clone)]
pub struct NegotiatedConnect {
    /// The `200` response head (subprotocol, extensions, the upgrader's extra
    /// headers); send it without ending the stream.
    pub response: http::Response<()>,
    /// The subprotocol chosen, if any.
    pub subprotocol: Option<String>,
    /// permessage-deflate parameters, when compression was agreed.
    pub deflate: Option<DeflateParams>,
}

impl Upgrader {
    /// Checks an HTTP/2 request for a WebSocket (RFC 8441 §4, §5) and builds the `200`
    /// response, with `protocol` the request's `:protocol` pseudo-header (which HTTP/2
    /// libraries carry outside the headers: hyper's `hyper::ext::Protocol`, h2's
    /// `h2::ext::Protocol`). The building block for HTTP/2 servers that send the
    /// response themselves; [`upgrade_hyper`](Upgrader::upgrade_hyper) calls it for
    /// HTTP/2 requests.
    ///
    /// The origin check sees the request as the HTTP/2 library gave it: there is
    /// usually no `Host` header, the authority is `request.uri().authority()` (the
    /// default check falls back to it). A refusal is a [`HandshakeError`] whose
    /// [`status`](HandshakeError::status) goes on that stream only
    /// ([`extended_connect::build_error_response`] builds it).
    ///
    /// ```
    /// let upgrader = yamabiko::Upgrader::new().subprotocols(["chat"]);
    /// let request = http::Request::builder()
    ///     .method(http::Method::CONNECT)
    ///     .version(http::Version::HTTP_2)
    ///     .uri("https://example.com/ws")
    ///     .header("sec-websocket-version", "13")
    ///     .header("sec-websocket-protocol", "chat")
    ///     .body(())
    ///     .unwrap();
    /// let agreed = upgrader
    ///     .negotiate_extended_connect(&request, Some("websocket"))
    ///     .unwrap();
    /// assert_eq!(agreed.response.status(), 200);
    /// assert_eq!(agreed.subprotocol.as_deref(), Some("chat"));
    /// ```
    pub fn negotiate_extended_connect(
        &self,
        request: &http::Request<()>,
        protocol: Option<&str>,
    ) -> Result<NegotiatedConnect, HandshakeError> {
        let offer = extended_connect::validate_connect_request(request, protocol)?;
        let (subprotocol, deflate) = self.agree(request, &offer.protocols, &offer.extensions)?;
        let response = extended_connect::build_connect_response(
            subprotocol.as_deref(),
            deflate.as_ref().map(|(_, header)| header.as_str()),
            &self.response_headers,
        );
        Ok(NegotiatedConnect {
            response,
            subprotocol,
            deflate: deflate.map(|(params, _)| params),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::handshake::HandshakeError;
    use crate::Upgrader;

    fn connect(origin: Option<&str>, extensions: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder()
            .method(http::Method::CONNECT)
            .version(http::Version::HTTP_2)
            .uri("https://board.example:8443/ws")
            .header("sec-websocket-version", "13");
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        if let Some(e) = extensions {
            b = b.header("sec-websocket-extensions", e);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn same_origin_policy_over_http2() {
        let u = Upgrader::new();
        let same = connect(Some("https://board.example:8443"), None);
        assert!(u
            .negotiate_extended_connect(&same, Some("websocket"))
            .is_ok());
        let other = connect(Some("https://evil.example"), None);
        assert_eq!(
            u.negotiate_extended_connect(&other, Some("websocket"))
                .unwrap_err(),
            HandshakeError::OriginRejected
        );
        let custom = Upgrader::new().check_origin(|_| true);
        assert!(custom
            .negotiate_extended_connect(&other, Some("websocket"))
            .is_ok());
    }

    #[test]
    fn compression_negotiated_from_the_same_header() {
        let offer = connect(None, Some("permessage-deflate; client_max_window_bits"));
        let on = Upgrader::new().enable_compression(true);
        let agreed = on
            .negotiate_extended_connect(&offer, Some("websocket"))
            .unwrap();
        assert!(agreed.deflate.is_some());
        let header = agreed.response.headers()["sec-websocket-extensions"]
            .to_str()
            .unwrap();
        assert!(header.starts_with("permessage-deflate"));
        let off = Upgrader::new();
        let agreed = off
            .negotiate_extended_connect(&offer, Some("websocket"))
            .unwrap();
        assert!(agreed.deflate.is_none());
        assert!(agreed
            .response
            .headers()
            .get("sec-websocket-extensions")
            .is_none());
    }
}
