//! Which dial failures are worth retrying, and how long a server asked to wait.

use crate::error::Error;
use crate::proto::CloseCode;
use http::StatusCode;
use std::time::{Duration, SystemTime};

/// The longest `Retry-After` honoured: a server's header does not park a client for
/// longer than this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What a failed dial means for a reconnecting client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Retrying cannot help: give up with the error.
    Fatal,
    /// Try again after the backoff, and not before the server's `Retry-After`.
    Retry(Option<Duration>),
}

/// Whether a dial failure is one that retrying cannot change (see the
/// [module](crate::reconnect) for the list): a reconnecting client gives up on it.
///
/// ```
/// use yamabiko::{reconnect::is_fatal, Error};
/// assert!(is_fatal(&Error::Url("no host".into())));
/// assert!(!is_fatal(&Error::Timeout));
/// ```
pub fn is_fatal(error: &Error) -> bool {
    verdict(error, SystemTime::now()) == Verdict::Fatal
}

/// Sorts a dial failure; `now` for a `Retry-After` given as a date.
pub(crate) fn verdict(error: &Error, now: SystemTime) -> Verdict {
    match error {
        Error::Url(_) | Error::Tls(_) | Error::Handshake(_) | Error::InvalidInput(_) => {
            Verdict::Fatal
        }
        Error::BadHandshake(response) => {
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                Verdict::Retry(retry_after(response.headers(), now))
            } else if status.is_server_error() {
                Verdict::Retry(None)
            } else {
                Verdict::Fatal
            }
        }
        _ => Verdict::Retry(None),
    }
}

/// Whether a connection that ended with `error` was told to come back later: the
/// server closed it with 1001 (going away), 1012 (service restart) or 1013 (try
/// again later).
pub(crate) fn come_back_later(error: &Error) -> bool {
    matches!(error, Error::Closed(frame) if matches!(
        frame.code,
        CloseCode::GOING_AWAY | CloseCode::SERVICE_RESTART | CloseCode::TRY_AGAIN_LATER
    ))
}

/// A `Retry-After` header: delay-seconds or an HTTP date (RFC 9110 §10.2.3), at most
/// [`MAX_RETRY_AFTER`]; `None` when absent or malformed.
fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::bad_handshake;
    use crate::CloseFrame;
    use std::io;

    fn answer(status: u16, retry: Option<&str>) -> Error {
        let mut response = http::Response::builder().status(status);
        if let Some(r) = retry {
            response = response.header("retry-after", r);
        }
        let response = response.body(()).expect("response");
        bad_handshake(response, bytes::Bytes::new())
    }

    #[test]
    fn client_errors_are_fatal_except_429() {
        let now = SystemTime::now();
        for status in [400, 401, 403, 404, 410, 301, 200] {
            assert_eq!(
                verdict(&answer(status, None), now),
                Verdict::Fatal,
                "{status}"
            );
        }
        assert_eq!(verdict(&answer(429, None), now), Verdict::Retry(None));
        for status in [500, 502, 503, 504] {
            assert_eq!(
                verdict(&answer(status, None), now),
                Verdict::Retry(None),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_for_429_and_503_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = Duration::from_secs;
        assert_eq!(
            verdict(&answer(429, Some("7")), now),
            Verdict::Retry(Some(secs(7)))
        );
        assert_eq!(
            verdict(&answer(503, Some(" 3 ")), now),
            Verdict::Retry(Some(secs(3)))
        );
        assert_eq!(verdict(&answer(500, Some("7")), now), Verdict::Retry(None));
        let date = httpdate::fmt_http_date(now + secs(42));
        assert_eq!(
            verdict(&answer(503, Some(&date)), now),
            Verdict::Retry(Some(secs(42)))
        );
        let past = httpdate::fmt_http_date(now - secs(42));
        assert_eq!(
            verdict(&answer(503, Some(&past)), now),
            Verdict::Retry(Some(secs(0)))
        );
        assert_eq!(
            verdict(&answer(429, Some("soon")), now),
            Verdict::Retry(None)
        );
        assert_eq!(
            verdict(&answer(429, Some("999999")), now),
            Verdict::Retry(Some(MAX_RETRY_AFTER))
        );
    }

    #[test]
    fn network_failures_are_retried_and_setup_errors_are_not() {
        let now = SystemTime::now();
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::TimedOut,
            io::ErrorKind::UnexpectedEof,
        ] {
            let e = Error::Io(io::Error::from(kind));
            assert_eq!(verdict(&e, now), Verdict::Retry(None), "{kind:?}");
        }
        assert_eq!(verdict(&Error::Timeout, now), Verdict::Retry(None));
        assert_eq!(verdict(&Error::Url("x".into()), now), Verdict::Fatal);
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(verdict(&Error::Tls(cert), now), Verdict::Fatal);
        assert_eq!(
            verdict(&Error::InvalidInput("proxy".into()), now),
            Verdict::Fatal
        );
    }

    #[test]
    fn going_away_restart_and_try_again_later_mean_come_back_later() {
        for code in [1001, 1012, 1013] {
            let e = Error::Closed(CloseFrame::new(CloseCode(code), ""));
            assert!(come_back_later(&e), "{code}");
        }
        for code in [1000, 1006, 1011] {
            let e = Error::Closed(CloseFrame::new(CloseCode(code), ""));
            assert!(!come_back_later(&e), "{code}");
        }
        assert!(!come_back_later(&Error::KeepaliveTimeout));
    }
}
