//! Flow-control windows and stream limits of an HTTP/2 connection carrying
//! WebSockets: [`Http2Settings`].

/// The HTTP/2 settings that decide how WebSockets share a connection. The client
/// ([`Dialer::http2_settings`](crate::Dialer::http2_settings)) applies them to its
/// connections; a hyper server applies them with
/// [`configure_hyper`](Self::configure_hyper).
///
/// **How the windows are set, and why.** In HTTP/2 a receiver grants the sender
/// credit twice: per stream (`stream_window`) and for the whole connection
/// (`connection_window`); received data uses up both until the application reads it.
/// A WebSocket whose reader is slow keeps up to `stream_window` bytes unread. If the
/// connection window were no larger (hyper's and h2's defaults make them equal), one
/// such WebSocket would use up the connection's credit and stall every other
/// WebSocket on the connection. So the defaults make the connection window as large
/// as the stream window times the number of streams allowed at once:
/// 128 KiB × 128 = 16 MiB. A slow reader then stalls only its own stream, and what a
/// connection can make its receiver hold is bounded by the connection window.
///
/// Memory, per connection: at most `connection_window` received bytes wait for
/// readers, and at most `max_send_buffer` bytes per stream wait to be sent (a writer
/// beyond that waits, as on a full TCP socket). A stream's throughput is at most
/// `stream_window` per round trip (128 KiB: about 1 GB/s on a 0.1 ms LAN, 2.6 MB/s
/// at 50 ms); raise it for bulk transfers over long paths, and raise
/// `connection_window` with it.
///
/// **Small frames.** The h2 crate also charges every DATA frame under 256 bytes that
/// waits unread in its queues 256 − its length (its memory, roughly), against a
/// budget of `connection_window` / 2 per connection, and ends the connection beyond
/// that (GOAWAY ENHANCE_YOUR_CALM): a defence against floods of tiny frames. The
/// [`H2Stream`](super::H2Stream)s of the client and of
/// [`ServerConnection`](super::ServerConnection) take frames out of those queues as
/// they arrive, so a slow reader there costs only its window.
///
/// hyper's server (and so `upgrade_hyper` and the axum extractor) leaves them queued
/// until the application reads, and hyper 1.12 does not let a server set h2's budget;
/// the connection window is the knob. A WebSocket that stops reading holds at most
/// `stream_window` / *f* frames, *f* ≥ 6 bytes being its client's smallest WebSocket
/// frame: with the defaults at most 21,845 frames (5.2 MiB of the 8 MiB budget), so
/// any **one** stalled WebSocket is safe, but several flooded with tiny messages add
/// up — eight with 20-byte messages (26-byte frames, 9.3 MiB) end the connection and
/// every WebSocket on it (`tests/http2_hyper_stall.rs`). To let *k* WebSockets stall,
/// give hyper `connection_window` ≥ 2 × *k* × (`stream_window` / *f*) × (256 − *f*):
/// about 83 × *k* × `stream_window` for the worst case, *f* = 6. That buys the
/// tolerance with memory: unread payload stays bounded by the stream windows, the
/// queued frames' bookkeeping by half the connection window. A smaller
/// `stream_window` holds fewer frames per stream, at the cost of each stream's
/// throughput. `ServerConnection` needs none of this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http2Settings {
    /// Initial flow-control window of every stream, in bytes: what a peer may send one
    /// WebSocket before it reads (default 128 KiB).
    pub stream_window: u32,
    /// Flow-control window of the connection, in bytes (default 16 MiB).
    pub connection_window: u32,
    /// Most streams (WebSockets) the peer may open at once on a connection (server
    /// side; default 128). A client's streams are limited by the server's setting.
    pub max_concurrent_streams: u32,
    /// Most bytes buffered for sending per stream before writes wait (default
    /// 128 KiB).
    pub max_send_buffer: usize,
    /// Largest DATA frame the peer may send (SETTINGS_MAX_FRAME_SIZE, 16 KiB to
    /// 16 MiB; default 64 KiB). Larger frames carry a large WebSocket message in
    /// fewer frames and fewer system calls; HTTP/2's own default is 16 KiB.
    pub max_frame_size: u32,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            stream_window: 128 * 1024,
            connection_window: 16 * 1024 * 1024,
            max_concurrent_streams: 128,
            max_send_buffer: 128 * 1024,
            max_frame_size: 64 * 1024,
        }
    }
}

impl Http2Settings {
    /// The smallest window HTTP/2 allows (65,535, RFC 9113 §6.9.2) and the largest
    /// (2³¹ − 1), applied to both windows.
    pub(crate) fn clamped(&self) -> (u32, u32) {
        const MIN: u32 = 65_535;
        const MAX: u32 = (1 << 31) - 1;
        (
            self.stream_window.clamp(MIN, MAX),
            self.connection_window.clamp(MIN, MAX),
        )
    }

    /// The frame size limit within what RFC 9113 §6.5.2 allows.
    fn frame_size(&self) -> u32 {
        self.max_frame_size.clamp(16_384, 16_777_215)
    }

    /// Applies these settings to a hyper HTTP/2 server and turns on extended CONNECT
    /// (`SETTINGS_ENABLE_CONNECT_PROTOCOL`, RFC 8441 §3), without which browsers and
    /// [`Dialer`](crate::Dialer) cannot open WebSockets on the connection. Adaptive
    /// windows are turned off, so the windows stay what is set here. h2's budget for
    /// unread small frames is half `connection_window` (see *Small frames* above).
    ///
    /// ```no_run
    /// # async fn run(tcp: tokio::net::TcpStream) {
    /// use hyper_util::rt::{TokioExecutor, TokioIo};
    /// let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    /// yamabiko::http2::Http2Settings::default().configure_hyper(&mut builder);
    /// # let service = hyper::service::service_fn(|_req| async {
    /// #     Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    /// # });
    /// builder.serve_connection(TokioIo::new(tcp), service).await.ok();
    /// # }
    /// ```
    #[cfg(feature = "hyper")]
    pub fn configure_hyper<'b, E>(
        &self,
        builder: &'b mut hyper::server::conn::http2::Builder<E>,
    ) -> &'b mut hyper::server::conn::http2::Builder<E> {
        let (stream, connection) = self.clamped();
        builder
            .enable_connect_protocol()
            .adaptive_window(false)
            .initial_stream_window_size(stream)
            .initial_connection_window_size(connection)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_frame_size(self.frame_size())
            .max_send_buf_size(self.max_send_buffer)
    }

    /// A server builder of the h2 crate with these windows and limits, extended
    /// CONNECT on (RFC 8441 §3), and hyper's limits on header lists (16 KiB) and on
    /// streams a client may make the server reset (1,024).
    pub(crate) fn server_builder(&self) -> h2::server::Builder {
        let (stream, connection) = self.clamped();
        let mut builder = h2::server::Builder::new();
        builder
            .initial_window_size(stream)
            .initial_connection_window_size(connection)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_send_buffer_size(self.max_send_buffer)
            .max_frame_size(self.frame_size())
            .max_header_list_size(16 * 1024)
            .max_local_error_reset_streams(Some(1024))
            .enable_connect_protocol();
        builder
    }

    /// A client builder of the h2 crate with these windows.
    pub(crate) fn client_builder(&self) -> h2::client::Builder {
        let (stream, connection) = self.clamped();
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(stream)
            .initial_connection_window_size(connection)
            .max_send_buffer_size(self.max_send_buffer)
            .max_frame_size(self.frame_size())
            // A WebSocket client has no use for server push.
            .enable_push(false);
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::Http2Settings;

    #[test]
    fn defaults_keep_one_stream_from_filling_the_connection() {
        let s = Http2Settings::default();
        assert!(
            u64::from(s.connection_window)
                >= u64::from(s.stream_window) * u64::from(s.max_concurrent_streams)
        );
        let tiny = Http2Settings {
            stream_window: 1,
            connection_window: u32::MAX,
            ..s
        };
        assert_eq!(tiny.clamped(), (65_535, (1 << 31) - 1));
        let frames = Http2Settings {
            max_frame_size: 0,
            ..Http2Settings::default()
        };
        assert_eq!(frames.frame_size(), 16_384);
    }
}
