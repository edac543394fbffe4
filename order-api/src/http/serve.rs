//! The HTTP/1 connection loop: what `axum::serve` does, plus the limits a
//! public listener needs against slow clients, and JSON bodies for the
//! errors hyper answers by itself.
//!
//! Each connection is bounded by [`Timeouts`]:
//! - **idle**: a connection with no request in progress that sends nothing
//!   (a keep-alive connection between requests, or a new one that never
//!   starts) is closed after `idle`;
//! - **header read**: once the first byte of a request head has arrived, the
//!   whole head must arrive within `header_read`, or the connection is
//!   closed (a head trickled a byte at a time);
//! - **request body**: the body must be complete within `request_body` of
//!   its head (a trickled body, a Content-Length larger than what is sent),
//!   or the request is answered 408 `request_timeout` and the connection
//!   closed. This one is a layer on the router (`http::app`), so that it
//!   ends in the JSON error.
//!
//! hyper answers a request it cannot parse itself (400, an over-long URI
//! 414, oversized headers 431) with an empty body. [`Conn`] recognises such
//! an answer by its shape (an error status with neither a Content-Type nor
//! a body, which no handler of ours produces) and writes the JSON error in
//! its place, so that every error the service gives has the one shape.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body};
use hyper::{Request, body::Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

/// The per-connection limits; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
    pub request_body: Duration,
}

/// Largest request head (request line and headers) hyper buffers; a larger
/// one is answered 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting, lets every connection finish its request in progress, and
/// returns once all are closed (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection(tcp, app.clone(), timeouts, stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // accept: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

async fn connection(tcp: TcpStream, app: Router, timeouts: Timeouts, stop: CancellationToken) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Conn::new(tcp, Arc::clone(&activity)));
    let service = Tracked {
        app,
        activity: Arc::clone(&activity),
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Ours below start at the first byte of a head, hyper's at idle:
        // one timer is enough, and the idle timeout is separate.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // Dropping the connection closes the socket.
            () = activity.expired(timeouts) => return,
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is doing, for its timeouts.
struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    /// Requests whose handler is running.
    in_flight: usize,
    /// When the first byte of the next request head arrived.
    head_started: Option<Instant>,
    /// When the connection last became idle (opened, or a response ready).
    idle_since: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                head_started: None,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    fn bytes_read(&self) {
        let started = self.with(|s| {
            let start = s.in_flight == 0 && s.head_started.is_none();
            if start {
                s.head_started = Some(Instant::now());
            }
            start
        });
        if started {
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.with(|s| {
            s.in_flight += 1;
            s.head_started = None;
        });
        self.changed.notify_one();
    }

    fn request_finished(&self) {
        self.with(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
                s.head_started = None;
            }
        });
        self.changed.notify_one();
    }

    /// Completes when the idle or header-read timeout has passed.
    async fn expired(&self, timeouts: Timeouts) {
        loop {
            let deadline = self.with(|s| match (s.in_flight, s.head_started) {
                (0, Some(started)) => Some(started + timeouts.header_read),
                (0, None) => Some(s.idle_since + timeouts.idle),
                _ => None,
            });
            match deadline {
                Some(deadline) if Instant::now() >= deadline => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// The router as a hyper service that tells [`Activity`] when a request's
/// handler starts and ends.
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        let activity = Arc::clone(&self.activity);
        let response = self.app.clone().oneshot(req.map(Body::new));
        Box::pin(async move {
            let response = response.await;
            activity.request_finished();
            response
        })
    }
}

/// The socket, reporting reads to [`Activity`] and replacing hyper's
/// empty error answers with JSON ones.
struct Conn {
    tcp: TcpStream,
    activity: Arc<Activity>,
    /// A JSON answer still to be written, and how much of it is.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Conn {
    fn new(tcp: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            tcp,
            activity,
            replacement: None,
        }
    }

    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.tcp).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        if let Some(json) = json_for_bare_error(buf) {
            // Taken in full: hyper writes its own error answers in one piece.
            self.replacement = Some((json, 0));
            std::task::ready!(self.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    // Not vectored, so that hyper flattens each answer into one buffer and
    // its own error answers arrive whole in `poll_write`.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// If `buf` is a whole response head that hyper wrote by itself (a 4xx or
/// 5xx with no Content-Type and an empty body), the JSON answer to send
/// instead, with the same status.
fn json_for_bare_error(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let code: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !(400..600).contains(&code) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if end != buf.len() {
        return None;
    }
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if head.contains("\r\ncontent-type:") || !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (error, message) = match code {
        408 => ("request_timeout", "the request did not arrive in time"),
        414 => ("uri_too_long", "the request URI is too long"),
        431 => (
            "headers_too_large",
            "the request headers are too large, or too many",
        ),
        505 => ("http_version_not_supported", "only HTTP/1.x is served"),
        501 => ("not_implemented", "this transfer coding is not supported"),
        _ => ("bad_request", "the request is not valid HTTP/1.1"),
    };
    let status = axum::http::StatusCode::from_u16(code).ok()?;
    let body = serde_json::json!({ "error": error, "message": message }).to_string();
    Some(
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            body.len(),
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_bare_error_heads() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let json = String::from_utf8(json_for_bare_error(bare).unwrap()).unwrap();
        assert!(json.starts_with("HTTP/1.1 431 "), "{json}");
        assert!(
            json.contains("content-type: application/json\r\n"),
            "{json}"
        );
        let body = json.split("\r\n\r\n").nth(1).unwrap();
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["error"], "headers_too_large");
        assert!(json.contains(&format!("content-length: {}\r\n", body.len())));

        for kept in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"{\"error\": \"HTTP/1.1 400\"}",
        ] {
            assert!(json_for_bare_error(kept).is_none(), "{:?}", String::from_utf8_lossy(kept));
        }
    }
}
