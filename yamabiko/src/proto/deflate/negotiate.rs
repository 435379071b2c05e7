//! Negotiating permessage-deflate in the opening handshake (RFC 7692 §5, §7.1).
//!
//! The `Sec-WebSocket-Extensions` header follows RFC 6455 §9.1:
//!
//! ```text
//! extension-list = 1#extension
//! extension      = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A server reads the client's offers with [`negotiate_server`] and answers with the
//! header value it returns; a client sends [`client_offer`] and checks the answer with
//! [`negotiate_client`]. Both produce the agreed [`DeflateParams`], from which the
//! [`Compressor`](super::Compressor) and [`Decompressor`](super::Decompressor) of
//! either role are built.

use std::fmt;

/// The extension token of RFC 7692.
pub const EXTENSION_NAME: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The smallest LZ77 window RFC 7692 allows (2^8 = 256 bytes).
pub const MIN_WINDOW_BITS: u8 = 8;
/// The largest LZ77 window RFC 7692 allows (2^15 = 32 KiB), and the default.
pub const MAX_WINDOW_BITS: u8 = 15;

/// Local permessage-deflate preferences, the same type for a server and a client.
///
/// * A **server** uses it to answer offers: it never lets its own compressor use more
///   than `server_max_window_bits`, asks the client for at most
///   `client_max_window_bits` (declining offers from clients that cannot be asked,
///   when that is below 15), and announces the no-context-takeover flags that are set.
/// * A **client** puts the same wishes in its offer, and rejects a response that does
///   not honour them.
///
/// Window bits outside `8..=15` are clamped into that range and a level above 9 is
/// treated as 9.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// zlib compression level, 0 (stored, no compression) to 9 (smallest output,
    /// slowest). The default, 1, is gorilla/websocket's default too: WebSocket
    /// messages are usually small and latency-sensitive, and level 1 already removes
    /// most of the redundancy of JSON-like text at several times the speed of level 6
    /// (see `benches/deflate.rs`).
    pub level: u32,
    /// The largest LZ77 window (as a power of two) the server may compress with.
    /// A smaller window saves the server's compressor and the client's decompressor
    /// memory, at some cost in ratio. Default 15.
    pub server_max_window_bits: u8,
    /// The largest LZ77 window the client may compress with. Default 15.
    pub client_max_window_bits: u8,
    /// Ask that the server resets its compressor after every message (no sliding
    /// window kept between messages). Default `false`: context takeover makes
    /// repeated messages much smaller, at the cost of keeping the window per
    /// connection.
    pub server_no_context_takeover: bool,
    /// Ask that the client resets its compressor after every message. Default `false`.
    pub client_no_context_takeover: bool,
    /// Messages shorter than this many bytes are sent uncompressed (RSV1 clear): they
    /// gain little and cost a deflate call each. Default 64 bytes. Not negotiated; it
    /// is for the sender's write path.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 1,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            threshold: 64,
        }
    }
}

impl DeflateConfig {
    fn server_bits(&self) -> u8 {
        clamp_bits(self.server_max_window_bits)
    }

    fn client_bits(&self) -> u8 {
        clamp_bits(self.client_max_window_bits)
    }
}

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// The parameters both ends agreed on: what each side's compressor may do.
///
/// `server_*` fields describe the data the server sends (and the client inflates);
/// `client_*` fields the data the client sends. [`Default`] is the agreement reached
/// by a bare `permessage-deflate` offer and response: 15-bit windows, context
/// takeover in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server's compressor uses a window of at most 2^n bytes (8..=15).
    pub server_max_window_bits: u8,
    /// The client's compressor uses a window of at most 2^n bytes (8..=15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// Why an extension header was rejected.
///
/// For a client every variant means the handshake response is unacceptable and the
/// connection must be failed (RFC 7692 §5, RFC 6455 §4.1). For a server only
/// [`ExtensionError::Malformed`] is ever returned; problems with a single offer make
/// [`negotiate_server`] decline that offer instead.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The header does not follow the RFC 6455 §9.1 grammar.
    Malformed(&'static str),
    /// The response accepts an extension that was not offered.
    UnsolicitedExtension(String),
    /// The response accepts permessage-deflate more than once.
    DuplicateExtension,
    /// A parameter RFC 7692 does not define (for this direction).
    UnknownParameter(String),
    /// The same parameter twice in one offer or response.
    DuplicateParameter(String),
    /// A parameter with a missing, superfluous or out-of-range value.
    InvalidValue {
        /// The parameter's name.
        param: String,
        /// Its value, if it had one.
        value: Option<String>,
    },
    /// The response lacks a parameter the offer required it to contain.
    MissingParameter(&'static str),
    /// The response allows a larger window than the offer asked for.
    WindowTooLarge {
        /// The parameter's name.
        param: &'static str,
        /// The largest value the offer allowed.
        offered: u8,
        /// The value in the response.
        got: u8,
    },
    /// The offer asks for something this implementation is configured not to allow.
    Unsupported(&'static str),
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionError::Malformed(why) => {
                write!(f, "malformed Sec-WebSocket-Extensions header: {why}")
            }
            ExtensionError::UnsolicitedExtension(name) => {
                write!(
                    f,
                    "server accepted extension {name:?}, which was not offered"
                )
            }
            ExtensionError::DuplicateExtension => {
                write!(f, "server accepted permessage-deflate more than once")
            }
            ExtensionError::UnknownParameter(p) => {
                write!(f, "unknown permessage-deflate parameter {p:?}")
            }
            ExtensionError::DuplicateParameter(p) => {
                write!(f, "duplicate permessage-deflate parameter {p:?}")
            }
            ExtensionError::InvalidValue {
                param,
                value: Some(v),
            } => {
                write!(
                    f,
                    "invalid value {v:?} for permessage-deflate parameter {param}"
                )
            }
            ExtensionError::InvalidValue { param, value: None } => {
                write!(f, "permessage-deflate parameter {param} needs a value")
            }
            ExtensionError::MissingParameter(p) => {
                write!(
                    f,
                    "response lacks the requested permessage-deflate parameter {p}"
                )
            }
            ExtensionError::WindowTooLarge {
                param,
                offered,
                got,
            } => {
                write!(
                    f,
                    "response sets {param}={got}, larger than the offered {offered}"
                )
            }
            ExtensionError::Unsupported(why) => {
                write!(f, "unsupported permessage-deflate configuration: {why}")
            }
        }
    }
}

impl std::error::Error for ExtensionError {}

// ---------------------------------------------------------------------------------
// Header grammar (RFC 6455 §9.1, RFC 7230 §3.2.6)
// ---------------------------------------------------------------------------------

/// One element of an extension list: a name and its parameters, in order.
#[derive(Debug, PartialEq, Eq)]
struct Extension {
    name: String,
    params: Vec<(String, Option<String>)>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<String, ExtensionError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(ExtensionError::Malformed("expected a token"));
        }
        // tchar is ASCII, so this cannot fail; stay panic-free regardless.
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// A quoted-string, the opening quote at `pos`; returns the unescaped content.
    fn quoted(&mut self) -> Result<String, ExtensionError> {
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ExtensionError::Malformed("unterminated quoted-string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&value).into_owned());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || (b' '..=0x7e).contains(&b) || b >= 0x80 => {
                            value.push(b);
                            self.pos += 1;
                        }
                        _ => return Err(ExtensionError::Malformed("bad quoted-pair")),
                    }
                }
                Some(b) if b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80 => {
                    value.push(b);
                    self.pos += 1;
                }
                Some(_) => return Err(ExtensionError::Malformed("control character in quotes")),
            }
        }
    }
}

/// Parses a whole `Sec-WebSocket-Extensions` value. Empty list elements (`a, , b`)
/// are allowed, as RFC 7230 §7 asks of recipients. Several header lines must be
/// joined with `,` before calling.
fn parse_extensions(header: &str) -> Result<Vec<Extension>, ExtensionError> {
    let mut c = Cursor {
        s: header.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        c.skip_ows();
        match c.peek() {
            None => return Ok(out),
            Some(b',') => {
                c.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = c.token()?;
        let mut params = Vec::new();
        loop {
            c.skip_ows();
            match c.peek() {
                None => break,
                Some(b',') => {
                    c.pos += 1;
                    break;
                }
                Some(b';') => {
                    c.pos += 1;
                    c.skip_ows();
                    let pname = c.token()?;
                    c.skip_ows();
                    let value = if c.peek() == Some(b'=') {
                        c.pos += 1;
                        c.skip_ows();
                        Some(if c.peek() == Some(b'"') {
                            c.quoted()?
                        } else {
                            c.token()?
                        })
                    } else {
                        None
                    };
                    params.push((pname, value));
                }
                Some(_) => {
                    return Err(ExtensionError::Malformed(
                        "expected ';' or ',' after an extension or parameter",
                    ))
                }
            }
        }
        out.push(Extension { name, params });
    }
}

/// A window-bits value: `1*DIGIT` without leading zeros, 8..=15 (RFC 7692 §7.1.2).
/// Quoted values have been unquoted already (RFC 6455 §9.1 allows either form).
fn parse_bits(param: &str, value: Option<&str>) -> Result<u8, ExtensionError> {
    let invalid = || ExtensionError::InvalidValue {
        param: param.to_owned(),
        value: value.map(str::to_owned),
    };
    let v = value.ok_or_else(invalid)?;
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0') {
        return Err(invalid());
    }
    let bits: u8 = v.parse().map_err(|_| invalid())?;
    if (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits) {
        Ok(bits)
    } else {
        Err(invalid())
    }
}

/// The parameters of one permessage-deflate element, syntax-checked: no unknown or
/// duplicate names, values where (and only where) RFC 7692 allows them.
#[derive(Debug, Default, PartialEq, Eq)]
struct RawParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (only legal in an offer).
    client_max_window_bits: Option<Option<u8>>,
}

fn check_params(
    params: &[(String, Option<String>)],
    is_offer: bool,
) -> Result<RawParams, ExtensionError> {
    let mut raw = RawParams::default();
    let mut seen = [false; 4];
    for (name, value) in params {
        let idx = [
            SERVER_NO_CONTEXT_TAKEOVER,
            CLIENT_NO_CONTEXT_TAKEOVER,
            SERVER_MAX_WINDOW_BITS,
            CLIENT_MAX_WINDOW_BITS,
        ]
        .iter()
        .position(|known| known.eq_ignore_ascii_case(name))
        .ok_or_else(|| ExtensionError::UnknownParameter(name.clone()))?;
        if std::mem::replace(&mut seen[idx], true) {
            return Err(ExtensionError::DuplicateParameter(name.clone()));
        }
        let no_value = || match value {
            None => Ok(true),
            Some(v) => Err(ExtensionError::InvalidValue {
                param: name.clone(),
                value: Some(v.clone()),
            }),
        };
        match idx {
            0 => raw.server_no_context_takeover = no_value()?,
            1 => raw.client_no_context_takeover = no_value()?,
            2 => raw.server_max_window_bits = Some(parse_bits(name, value.as_deref())?),
            _ => {
                raw.client_max_window_bits = Some(match value {
                    None if is_offer => None,
                    v => Some(parse_bits(name, v.as_deref())?),
                })
            }
        }
    }
    Ok(raw)
}

// ---------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------

/// Answers a client's `Sec-WebSocket-Extensions` offer (RFC 7692 §5, §7.1) as a server.
///
/// Returns the agreed parameters and the value of the `Sec-WebSocket-Extensions`
/// response header, or `Ok(None)` if no permessage-deflate offer is acceptable (the
/// connection then goes on uncompressed, and the response carries no extension).
/// Offers are taken in the client's order of preference; the first acceptable one
/// wins. An offer is declined (and the next one tried) when it has an unknown or
/// duplicate parameter or an invalid value (§7: "A server MUST decline …"), or when
/// `cfg.client_max_window_bits` is below 15 but the offer lacks
/// `client_max_window_bits`, so the client could not be told to use a smaller window.
/// Other extensions in the header are ignored.
///
/// `Err` is returned only when the header as a whole does not parse
/// ([`ExtensionError::Malformed`]); the caller may refuse the handshake (400) or,
/// more leniently, proceed without compression.
///
/// The answer:
/// * `server_no_context_takeover` when the client asked for it or
///   `cfg.server_no_context_takeover` is set;
/// * `client_no_context_takeover` when the client announced it (echoing the hint
///   lets the server reset its decompressor) or `cfg.client_no_context_takeover` is
///   set;
/// * `server_max_window_bits=N` with N the smaller of the client's request and
///   `cfg.server_max_window_bits`, whenever the client asked or N < 15;
/// * `client_max_window_bits=N` with N the smaller of the client's hint and
///   `cfg.client_max_window_bits`, when the client offered the parameter and N < 15.
///
/// `server_max_window_bits=8` is accepted although zlib cannot compress with a
/// 256-byte window: the [`Compressor`](super::Compressor) then uses a 512-byte zlib
/// window, whose matches reach at most 512 − 262 = 250 bytes back (zlib never looks
/// further than the window minus `MIN_LOOKAHEAD`), which is within the 256 bytes the
/// client keeps. The unit tests check this bound with an independent decoder.
pub fn negotiate_server(
    offer_header: &str,
    cfg: &DeflateConfig,
) -> Result<Option<(DeflateParams, String)>, ExtensionError> {
    for ext in parse_extensions(offer_header)? {
        if !ext.name.eq_ignore_ascii_case(EXTENSION_NAME) {
            continue;
        }
        match accept_offer(&ext.params, cfg) {
            Ok(accepted) => return Ok(Some(accepted)),
            Err(reason) => {
                tracing::debug!(%reason, "declining a permessage-deflate offer");
            }
        }
    }
    Ok(None)
}

fn accept_offer(
    params: &[(String, Option<String>)],
    cfg: &DeflateConfig,
) -> Result<(DeflateParams, String), ExtensionError> {
    let raw = check_params(params, true)?;

    let server_no_context_takeover =
        raw.server_no_context_takeover || cfg.server_no_context_takeover;
    let client_no_context_takeover =
        raw.client_no_context_takeover || cfg.client_no_context_takeover;

    let server_bits = match raw.server_max_window_bits {
        Some(requested) => requested.min(cfg.server_bits()),
        None => cfg.server_bits(),
    };
    let client_bits = match raw.client_max_window_bits {
        // §7.1.2.2: without the parameter in the offer, the response must not carry
        // it, so the client may use a 15-bit window.
        None if cfg.client_bits() < MAX_WINDOW_BITS => {
            return Err(ExtensionError::Unsupported(
                "the client cannot be asked for a smaller window",
            ))
        }
        None => MAX_WINDOW_BITS,
        Some(None) => cfg.client_bits(),
        Some(Some(hint)) => hint.min(cfg.client_bits()),
    };

    let mut response = String::from(EXTENSION_NAME);
    if server_no_context_takeover {
        response.push_str("; ");
        response.push_str(SERVER_NO_CONTEXT_TAKEOVER);
    }
    if client_no_context_takeover {
        response.push_str("; ");
        response.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
    }
    if raw.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS {
        response.push_str(&format!("; {SERVER_MAX_WINDOW_BITS}={server_bits}"));
    }
    if raw.client_max_window_bits.is_some() && client_bits < MAX_WINDOW_BITS {
        response.push_str(&format!("; {CLIENT_MAX_WINDOW_BITS}={client_bits}"));
    }

    let params = DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    Ok((params, response))
}

// ---------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------

/// The `Sec-WebSocket-Extensions` value a client sends to offer permessage-deflate.
///
/// Always carries `client_max_window_bits` (with `=N` when
/// `cfg.client_max_window_bits` is below 15, as a hint) to tell the server it may
/// choose our window; `server_max_window_bits=N` when `cfg.server_max_window_bits` is
/// below 15; and each no-context-takeover flag that is set. One offer only: a server
/// that cannot accept it runs the connection uncompressed.
pub fn client_offer(cfg: &DeflateConfig) -> String {
    let mut offer = String::from(EXTENSION_NAME);
    if cfg.server_no_context_takeover {
        offer.push_str("; ");
        offer.push_str(SERVER_NO_CONTEXT_TAKEOVER);
    }
    if cfg.client_no_context_takeover {
        offer.push_str("; ");
        offer.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
    }
    if cfg.server_bits() < MAX_WINDOW_BITS {
        offer.push_str(&format!("; {SERVER_MAX_WINDOW_BITS}={}", cfg.server_bits()));
    }
    offer.push_str("; ");
    offer.push_str(CLIENT_MAX_WINDOW_BITS);
    if cfg.client_bits() < MAX_WINDOW_BITS {
        offer.push_str(&format!("={}", cfg.client_bits()));
    }
    offer
}

/// Checks a server's `Sec-WebSocket-Extensions` response to [`client_offer`]`(cfg)`
/// (RFC 7692 §5, §7.1). `Ok(None)`: the header is empty (pass `""` when it is
/// absent; join several header lines with `,`), the server declined and the
/// connection runs uncompressed. Only for a client that offered compression: one
/// that did not must treat any extension in the response as an error.
///
/// Any `Err` means the client must fail the connection: the response names an
/// extension that was not offered, accepts permessage-deflate twice, has unknown or
/// duplicate parameters or invalid values (a `client_max_window_bits` without value
/// included), omits `server_no_context_takeover` or `server_max_window_bits` that the
/// offer required, or allows a larger window than offered.
///
/// The agreed `client_*` fields describe what our compressor will do: it resets per
/// message when either side asked for it, and uses the smaller of the server's
/// `client_max_window_bits` (15 when absent) and `cfg.client_max_window_bits`.
pub fn negotiate_client(
    response_header: &str,
    cfg: &DeflateConfig,
) -> Result<Option<DeflateParams>, ExtensionError> {
    let mut agreed = None;
    for ext in parse_extensions(response_header)? {
        if !ext.name.eq_ignore_ascii_case(EXTENSION_NAME) {
            return Err(ExtensionError::UnsolicitedExtension(ext.name));
        }
        if agreed.is_some() {
            return Err(ExtensionError::DuplicateExtension);
        }
        agreed = Some(check_response(&ext.params, cfg)?);
    }
    Ok(agreed)
}

fn check_response(
    params: &[(String, Option<String>)],
    cfg: &DeflateConfig,
) -> Result<DeflateParams, ExtensionError> {
    let raw = check_params(params, false)?;

    // §7.1.1.1: a server accepting server_no_context_takeover must echo it.
    if cfg.server_no_context_takeover && !raw.server_no_context_takeover {
        return Err(ExtensionError::MissingParameter(SERVER_NO_CONTEXT_TAKEOVER));
    }
    // §7.1.2.1: a server accepting server_max_window_bits echoes it, same or smaller.
    let server_bits = match raw.server_max_window_bits {
        Some(got) if cfg.server_bits() < MAX_WINDOW_BITS && got > cfg.server_bits() => {
            return Err(ExtensionError::WindowTooLarge {
                param: SERVER_MAX_WINDOW_BITS,
                offered: cfg.server_bits(),
                got,
            })
        }
        Some(got) => got,
        None if cfg.server_bits() < MAX_WINDOW_BITS => {
            return Err(ExtensionError::MissingParameter(SERVER_MAX_WINDOW_BITS))
        }
        None => MAX_WINDOW_BITS,
    };
    // §7.1.2.2: we always offer client_max_window_bits; a value in the offer is a
    // limit the response may only lower.
    let client_bits = match raw.client_max_window_bits.flatten() {
        Some(got) if got > cfg.client_bits() && cfg.client_bits() < MAX_WINDOW_BITS => {
            return Err(ExtensionError::WindowTooLarge {
                param: CLIENT_MAX_WINDOW_BITS,
                offered: cfg.client_bits(),
                got,
            })
        }
        Some(got) => got.min(cfg.client_bits()),
        None => cfg.client_bits(),
    };

    Ok(DeflateParams {
        server_no_context_takeover: raw.server_no_context_takeover,
        client_no_context_takeover: raw.client_no_context_takeover
            || cfg.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeflateConfig {
        DeflateConfig::default()
    }

    fn server(offer: &str) -> Option<(DeflateParams, String)> {
        negotiate_server(offer, &cfg()).expect("header parses")
    }

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    // ----- grammar -----

    #[test]
    fn parses_lists_params_and_quotes() {
        let exts = parse_extensions(
            " foo , permessage-deflate;a; b = 9 ;c=\"1\\0\"\t,, bar;x=\"a,b;c\" ,",
        )
        .unwrap();
        assert_eq!(exts.len(), 3);
        assert_eq!(exts[0].name, "foo");
        assert!(exts[0].params.is_empty());
        assert_eq!(
            exts[1].params,
            vec![
                ("a".into(), None),
                ("b".into(), Some("9".into())),
                ("c".into(), Some("10".into())),
            ]
        );
        assert_eq!(exts[2].params, vec![("x".into(), Some("a,b;c".into()))]);
        assert!(parse_extensions("").unwrap().is_empty());
        assert!(parse_extensions("  ,  ").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_grammar() {
        for bad in [
            "permessage-deflate; x=\"unterminated",
            "permessage-deflate; =1",
            "permessage-deflate x",
            "permessage-deflate; a=",
            "permessage-deflate; a=b c",
            "permessage-deflate;",
            "per(message)",
            "permessage-deflate; x=\"a\u{1}\"",
        ] {
            assert!(
                matches!(parse_extensions(bad), Err(ExtensionError::Malformed(_))),
                "{bad:?} should not parse"
            );
            assert!(negotiate_server(bad, &cfg()).is_err());
            assert!(negotiate_client(bad, &cfg()).is_err());
        }
    }

    #[test]
    fn window_bits_values() {
        for (v, want) in [
            ("8", Some(8)),
            ("9", Some(9)),
            ("15", Some(15)),
            ("7", None),
            ("16", None),
            ("0", None),
            ("08", None),
            ("abc", None),
            ("", None),
            ("+9", None),
            ("1a", None),
            ("255", None),
            ("999999999999", None),
        ] {
            assert_eq!(parse_bits("p", Some(v)).ok(), want, "value {v:?}");
        }
        assert!(parse_bits("p", None).is_err());
    }

    // ----- server -----

    #[test]
    fn server_bare_offer() {
        let (p, resp) = server("permessage-deflate").unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(resp, "permessage-deflate");
    }

    #[test]
    fn server_ignores_other_extensions_and_none_means_none() {
        assert_eq!(server(""), None);
        assert_eq!(server("x-webkit-deflate-frame, foo; bar=1"), None);
        let (p, resp) = server("x-webkit-deflate-frame, permessage-deflate").unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(resp, "permessage-deflate");
        // Extension names compare case-insensitively.
        assert!(server("PerMessage-Deflate").is_some());
    }

    #[test]
    fn server_declines_first_accepts_second() {
        for first in [
            "permessage-deflate; foo", // unknown
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover", // duplicate
            "permessage-deflate; server_max_window_bits=7", // bad value
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=\"abc\"",
            "permessage-deflate; server_max_window_bits", // value required
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=\"16\"",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover=1", // no value allowed
            "permessage-deflate; client_no_context_takeover=\"\"",
        ] {
            let header = format!("{first}, permessage-deflate; client_max_window_bits");
            let (p, resp) = server(&header).unwrap_or_else(|| panic!("{first}"));
            assert_eq!(p, DeflateParams::default(), "{first}");
            assert_eq!(resp, "permessage-deflate", "{first}");
            // Alone, the offer is declined.
            assert_eq!(server(first), None, "{first}");
        }
    }

    #[test]
    fn server_takes_first_acceptable_offer_in_order() {
        let (p, resp) =
            server("permessage-deflate; server_max_window_bits=10, permessage-deflate").unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(resp, "permessage-deflate; server_max_window_bits=10");
    }

    #[test]
    fn server_quoted_values_are_accepted() {
        let (p, resp) = server(
            "permessage-deflate; server_max_window_bits=\"12\"; client_max_window_bits=\"9\"",
        )
        .unwrap();
        assert_eq!(p, params(false, false, 12, 9));
        assert_eq!(
            resp,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9"
        );
    }

    #[test]
    fn server_no_context_takeover_requested() {
        let (p, resp) = server("permessage-deflate; server_no_context_takeover").unwrap();
        assert_eq!(p, params(true, false, 15, 15));
        assert_eq!(resp, "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn server_client_no_context_takeover_hint_is_echoed() {
        let (p, resp) = server("permessage-deflate; client_no_context_takeover").unwrap();
        assert_eq!(p, params(false, true, 15, 15));
        assert_eq!(resp, "permessage-deflate; client_no_context_takeover");
    }

    #[test]
    fn server_config_no_context_takeover_is_announced() {
        let c = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..cfg()
        };
        let (p, resp) = negotiate_server("permessage-deflate", &c).unwrap().unwrap();
        assert_eq!(p, params(true, true, 15, 15));
        assert_eq!(
            resp,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn server_max_window_bits_requested_is_honoured() {
        for bits in 8..=15u8 {
            let (p, resp) = server(&format!(
                "permessage-deflate; server_max_window_bits={bits}"
            ))
            .unwrap();
            assert_eq!(p.server_max_window_bits, bits);
            assert_eq!(
                resp,
                format!("permessage-deflate; server_max_window_bits={bits}")
            );
        }
        // Our own limit is smaller: use it, still ≤ the request.
        let c = DeflateConfig {
            server_max_window_bits: 10,
            ..cfg()
        };
        let (p, resp) = negotiate_server("permessage-deflate; server_max_window_bits=12", &c)
            .unwrap()
            .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(resp, "permessage-deflate; server_max_window_bits=10");
        // Not requested: announced anyway when below 15 (§7.1.2.1 allows it).
        let (p, resp) = negotiate_server("permessage-deflate", &c).unwrap().unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(resp, "permessage-deflate; server_max_window_bits=10");
    }

    #[test]
    fn server_client_max_window_bits_with_and_without_value() {
        // Without value and no wish of ours: may be omitted; client uses 15.
        let (p, resp) = server("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert_eq!(resp, "permessage-deflate");
        // With a value: the hint is adopted and confirmed.
        let (p, resp) = server("permessage-deflate; client_max_window_bits=10").unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(resp, "permessage-deflate; client_max_window_bits=10");
        // Our wish is smaller: we choose it.
        let c = DeflateConfig {
            client_max_window_bits: 9,
            ..cfg()
        };
        for offer in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=12",
        ] {
            let (p, resp) = negotiate_server(offer, &c).unwrap().unwrap();
            assert_eq!(p.client_max_window_bits, 9);
            assert_eq!(resp, "permessage-deflate; client_max_window_bits=9");
        }
        // The client's hint is smaller than our wish: keep the hint.
        let (p, _) = negotiate_server("permessage-deflate; client_max_window_bits=8", &c)
            .unwrap()
            .unwrap();
        assert_eq!(p.client_max_window_bits, 8);
        // Our wish cannot be expressed: decline, but accept a later offer that can.
        assert_eq!(negotiate_server("permessage-deflate", &c).unwrap(), None);
        let (p, _) = negotiate_server(
            "permessage-deflate, permessage-deflate; client_max_window_bits",
            &c,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.client_max_window_bits, 9);
    }

    #[test]
    fn server_chrome_and_firefox_offers() {
        let (p, resp) = server("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            (p, resp.as_str()),
            (DeflateParams::default(), "permessage-deflate")
        );
        let (p, _) = server("permessage-deflate").unwrap();
        assert_eq!(p, DeflateParams::default());
    }

    #[test]
    fn server_everything_at_once() {
        let (p, resp) = server(
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=8",
        )
        .unwrap();
        assert_eq!(p, params(true, true, 8, 8));
        assert_eq!(
            resp,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=8"
        );
        // The response is a valid answer for a client that made this offer.
        let client_cfg = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 8,
            client_max_window_bits: 8,
            ..cfg()
        };
        assert_eq!(negotiate_client(&resp, &client_cfg).unwrap(), Some(p));
    }

    #[test]
    fn config_values_are_clamped() {
        let c = DeflateConfig {
            server_max_window_bits: 3,
            client_max_window_bits: 200,
            ..cfg()
        };
        let (p, _) = negotiate_server("permessage-deflate; client_max_window_bits", &c)
            .unwrap()
            .unwrap();
        assert_eq!(p.server_max_window_bits, 8);
        assert_eq!(p.client_max_window_bits, 15);
        assert_eq!(
            client_offer(&c),
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits"
        );
    }

    // ----- client -----

    #[test]
    fn client_offers() {
        assert_eq!(
            client_offer(&cfg()),
            "permessage-deflate; client_max_window_bits"
        );
        let c = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 11,
            ..cfg()
        };
        assert_eq!(
            client_offer(&c),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=11"
        );
        // What we offer, our own server accepts as asked.
        let (p, _) = negotiate_server(&client_offer(&c), &cfg())
            .unwrap()
            .unwrap();
        assert_eq!(p, params(true, true, 10, 11));
    }

    #[test]
    fn client_accepts_valid_responses() {
        let c = cfg();
        assert_eq!(negotiate_client("", &c).unwrap(), None);
        assert_eq!(negotiate_client("  ", &c).unwrap(), None);
        assert_eq!(
            negotiate_client("permessage-deflate", &c).unwrap(),
            Some(DeflateParams::default())
        );
        // The server may restrict itself and us, and turn off context takeover.
        assert_eq!(
            negotiate_client(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=\"8\"",
                &c
            )
            .unwrap(),
            Some(params(true, true, 9, 8))
        );
        // Requested limits honoured (equal or smaller).
        let c = DeflateConfig {
            server_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            client_no_context_takeover: true,
            ..cfg()
        };
        assert_eq!(
            negotiate_client(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
                &c
            )
            .unwrap(),
            // Our compressor applies our own wishes even if not confirmed.
            Some(params(true, true, 10, 12))
        );
        assert_eq!(
            negotiate_client(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=8; \
                 client_max_window_bits=9",
                &c
            )
            .unwrap(),
            Some(params(true, true, 8, 9))
        );
    }

    #[test]
    fn client_rejects_invalid_responses() {
        let c = DeflateConfig {
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            server_no_context_takeover: true,
            ..cfg()
        };
        let ok = "permessage-deflate; server_no_context_takeover; server_max_window_bits=10";
        assert!(negotiate_client(ok, &c).is_ok());
        let cases: &[(&str, ExtensionError)] = &[
            ("foo", ExtensionError::UnsolicitedExtension("foo".into())),
            (
                &format!("{ok}, foo"),
                ExtensionError::UnsolicitedExtension("foo".into()),
            ),
            (&format!("{ok}, {ok}"), ExtensionError::DuplicateExtension),
            (
                &format!("{ok}; bar"),
                ExtensionError::UnknownParameter("bar".into()),
            ),
            (
                &format!("{ok}; server_no_context_takeover"),
                ExtensionError::DuplicateParameter("server_no_context_takeover".into()),
            ),
            (
                &format!("{ok}; client_max_window_bits"),
                ExtensionError::InvalidValue {
                    param: "client_max_window_bits".into(),
                    value: None,
                },
            ),
            (
                &format!("{ok}; client_max_window_bits=16"),
                ExtensionError::InvalidValue {
                    param: "client_max_window_bits".into(),
                    value: Some("16".into()),
                },
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=7",
                ExtensionError::InvalidValue {
                    param: "server_max_window_bits".into(),
                    value: Some("7".into()),
                },
            ),
            (
                "permessage-deflate; server_no_context_takeover=yes; server_max_window_bits=9",
                ExtensionError::InvalidValue {
                    param: "server_no_context_takeover".into(),
                    value: Some("yes".into()),
                },
            ),
            (
                "permessage-deflate; server_max_window_bits=10",
                ExtensionError::MissingParameter("server_no_context_takeover"),
            ),
            (
                "permessage-deflate; server_no_context_takeover",
                ExtensionError::MissingParameter("server_max_window_bits"),
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                ExtensionError::WindowTooLarge {
                    param: "server_max_window_bits",
                    offered: 10,
                    got: 11,
                },
            ),
            (
                &format!("{ok}; client_max_window_bits=13"),
                ExtensionError::WindowTooLarge {
                    param: "client_max_window_bits",
                    offered: 12,
                    got: 13,
                },
            ),
        ];
        for (resp, want) in cases {
            assert_eq!(negotiate_client(resp, &c).as_ref(), Err(want), "{resp}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn client_without_limits_accepts_any_server_window() {
        for bits in 8..=15u8 {
            let resp = format!("permessage-deflate; server_max_window_bits={bits}");
            let p = negotiate_client(&resp, &cfg()).unwrap().unwrap();
            assert_eq!(p.server_max_window_bits, bits);
        }
    }
}
