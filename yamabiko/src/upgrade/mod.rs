//! Upgrades inside HTTP servers: hyper 1 (feature `hyper`) and axum 0.8 (feature
//! `axum`). Both apply an [`Upgrader`](crate::Upgrader)'s settings — origin check,
//! subprotocols, compression, limits — through the same
//! [`Upgrader::negotiate`](crate::Upgrader::negotiate) as the raw-stream upgrade, and hand over the same async
//! [`Conn`](crate::Conn), over hyper's upgraded connection.

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod hyper;
