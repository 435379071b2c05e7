//! What a `ws://` or `wss://` URL tells the dialer: where to connect, whether to speak
//! TLS, and what goes into the request line and `Host` header (RFC 6455 §3, §4.1).

use crate::error::{Error, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::HeaderValue;
use url::{Host, Url};

/// A parsed WebSocket URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `wss://`: TLS on top of TCP.
    pub tls: bool,
    /// The host to connect to (a name, or an address literal).
    pub host: Host<String>,
    /// The port, explicit or the scheme's default (80 for ws, 443 for wss).
    pub port: u16,
    /// The `Host` header value: the host as written in URLs (IPv6 in brackets), with
    /// `:port` only when the port is not the scheme's default (§4.1 item 4).
    pub host_header: String,
    /// The request target: path and query, never empty (§3: "/" when the path is).
    pub path_and_query: String,
    /// `Authorization: Basic …` from a `user:password@` part, if any.
    pub basic_auth: Option<HeaderValue>,
}

impl Target {
    /// Parses `url`, which must be `ws://` or `wss://` with a host (§3).
    pub fn parse(url: &str) -> Result<Target> {
        let url = Url::parse(url).map_err(|e| Error::Url(format!("{url:?}: {e}")))?;
        Target::from_url(&url)
    }

    /// Like [`parse`](Self::parse), for an already-parsed URL.
    pub fn from_url(url: &Url) -> Result<Target> {
        // §3: the only schemes are ws and wss. The fragment is meaningless and ignored.
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => {
                return Err(Error::Url(format!(
                    "{}: scheme {other:?} is not ws or wss",
                    url.as_str()
                )))
            }
        };
        let host = match url.host() {
            Some(h) => h.to_owned(),
            None => return Err(Error::Url(format!("{}: no host", url.as_str()))),
        };
        let host_str = url.host_str().unwrap_or_default();
        // The url crate knows 80 and 443 as the defaults of ws and wss, and reports an
        // explicit default port as absent.
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host_header = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_owned(),
        };
        let mut path_and_query = url.path().to_owned();
        if path_and_query.is_empty() {
            path_and_query.push('/');
        }
        if let Some(q) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let basic_auth = basic_auth(url)?;
        Ok(Target {
            tls,
            host,
            port,
            host_header,
            path_and_query,
            basic_auth,
        })
    }

    /// `host:port` as it goes into a `CONNECT` request (IPv6 in brackets).
    pub fn authority(&self) -> String {
        match &self.host {
            Host::Ipv6(a) => format!("[{a}]:{}", self.port),
            Host::Ipv4(a) => format!("{a}:{}", self.port),
            Host::Domain(d) => format!("{d}:{}", self.port),
        }
    }
}

/// `Authorization: Basic base64(user:password)` for a URL with credentials.
fn basic_auth(url: &Url) -> Result<Option<HeaderValue>> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let mut credentials = percent_decode(url.username());
    credentials.push(b':');
    credentials.extend(percent_decode(url.password().unwrap_or("")));
    let value = format!("Basic {}", BASE64.encode(credentials));
    HeaderValue::from_str(&value)
        .map(Some)
        .map_err(|e| Error::Url(format!("credentials: {e}")))
}

/// Decodes `%XX` escapes (the url crate keeps userinfo percent-encoded).
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => match (hex(h), hex(l)) {
                (Some(h), Some(l)) => Some(h << 4 | l),
                _ => None,
            },
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_and_host_header() {
        let t = Target::parse("ws://example.com/chat").unwrap();
        assert!(!t.tls);
        assert_eq!(t.port, 80);
        assert_eq!(t.host_header, "example.com");
        assert_eq!(t.path_and_query, "/chat");

        let t = Target::parse("wss://example.com").unwrap();
        assert!(t.tls);
        assert_eq!(t.port, 443);
        assert_eq!(t.host_header, "example.com");
        assert_eq!(t.path_and_query, "/");

        // An explicit default port is not repeated in Host.
        let t = Target::parse("ws://example.com:80/").unwrap();
        assert_eq!((t.port, t.host_header.as_str()), (80, "example.com"));
        let t = Target::parse("wss://Example.COM:8443/a?b=c&d#frag").unwrap();
        assert_eq!(t.port, 8443);
        assert_eq!(t.host_header, "example.com:8443");
        assert_eq!(t.path_and_query, "/a?b=c&d");
        assert_eq!(t.authority(), "example.com:8443");
    }

    #[test]
    fn ipv6_literals() {
        let t = Target::parse("ws://[::1]:9001/x").unwrap();
        assert_eq!(t.host_header, "[::1]:9001");
        assert_eq!(t.authority(), "[::1]:9001");
        assert_eq!(t.host, Host::<String>::Ipv6(std::net::Ipv6Addr::LOCALHOST));
        let t = Target::parse("wss://[2001:db8::1]/").unwrap();
        assert_eq!(t.host_header, "[2001:db8::1]");
        assert_eq!(t.port, 443);
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "http://example.com/",
            "ftp://example.com/",
            "example.com",
            "ws://",
            "",
        ] {
            match Target::parse(bad) {
                Err(Error::Url(_)) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn credentials_become_basic_auth() {
        let t = Target::parse("ws://al%20ice:p%3Ass@h/").unwrap();
        // base64("al ice:p:ss")
        assert_eq!(t.basic_auth.unwrap(), "Basic YWwgaWNlOnA6c3M=");
        assert!(Target::parse("ws://h/").unwrap().basic_auth.is_none());
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2"), b"a%2");
        assert_eq!(percent_decode("%zz%41"), b"%zzA");
    }
}
