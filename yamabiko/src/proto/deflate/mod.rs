//! permessage-deflate (RFC 7692), sans-IO: negotiation in the handshake and the
//! per-message codec.
//!
//! * [`negotiate_server`] / [`client_offer`] + [`negotiate_client`] turn
//!   `Sec-WebSocket-Extensions` headers and local [`DeflateConfig`] preferences into
//!   the agreed [`DeflateParams`].
//! * [`Compressor`] (what we send) and [`Decompressor`] (what we receive) are built
//!   from those parameters and our [`Role`](crate::proto::Role); a server compresses
//!   under the `server_*` parameters and inflates under the `client_*` ones, a client
//!   the other way round.
//!
//! Context takeover (keeping the LZ77 window from one message to the next) is
//! supported in both directions, as are windows of 8 to 15 bits. Decompression is
//! bounded: a message never inflates past the caller's limit, however small the
//! compressed input (DEFLATE expands at most about 1032:1, so a 1 GiB bomb is about
//! 1 MiB on the wire; it is stopped at the limit, holding no more than the limit).
//!
//! ```
//! use yamabiko::bytes::BytesMut;
//! use yamabiko::proto::Role;
//! use yamabiko::proto::deflate::{
//!     client_offer, negotiate_client, negotiate_server, Compressor, DeflateConfig,
//!     Decompressor,
//! };
//!
//! let cfg = DeflateConfig::default();
//! let offer = client_offer(&cfg);
//! let (server_params, response) = negotiate_server(&offer, &cfg).unwrap().unwrap();
//! let client_params = negotiate_client(&response, &cfg).unwrap().unwrap();
//!
//! let mut tx = Compressor::new(&client_params, Role::Client, cfg.level);
//! let mut rx = Decompressor::new(&server_params, Role::Server);
//! let mut wire = BytesMut::new();
//! tx.compress_message(b"Hello, Hello, Hello", &mut wire).unwrap();
//! let mut msg = BytesMut::new();
//! rx.decompress(&wire, true, &mut msg, 1 << 20).unwrap();
//! assert_eq!(&msg[..], b"Hello, Hello, Hello");
//! ```

mod compressor;
mod decompressor;
mod negotiate;

#[cfg(test)]
mod tests;

pub use compressor::{CompressError, Compressor};
pub use decompressor::{Decompressor, InflateError, Progress};
pub use negotiate::{
    client_offer, negotiate_client, negotiate_server, DeflateConfig, DeflateParams, ExtensionError,
    EXTENSION_NAME, MAX_WINDOW_BITS, MIN_WINDOW_BITS,
};
