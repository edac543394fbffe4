//! `GET /v1/products/{sku}/events`: a product's availability as
//! Server-Sent Events, so that a visitor without an order learns of a
//! sell-out without a broker connection (issue #21, "Fewer connections").
//!
//! The stream is fed by the in-process flag ([`crate::stock::StockFlag`]):
//! a flip on any replica reaches every replica's map within the Redis
//! pub/sub round trip, and from there each of its open streams. Nothing per
//! client is polled or stored beyond one broadcast receiver.
//!
//! Each stream sends the current value first, then every change, and a
//! comment every 15 s so proxies keep it open. It ends after
//! `STOCK_EVENTS_MAX_SECS` (and at once when the replica drains), with a
//! `retry` hint: the browser's `EventSource` reconnects by itself, to
//! whichever replica the balancer picks, and is sent the current value again,
//! so nothing is missed across the gap.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::header,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::stream::{self, Stream};
use tokio::{sync::broadcast::error::RecvError, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{AppState, error::ApiError, extract::PathParam, products};
use crate::{
    domain::Sku,
    stock::{Flip, StockFlag},
};

/// How long `EventSource` waits before it reconnects after a stream ends.
const RETRY: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const OPEN_STREAMS: &str = "stock_event_streams";

/// One event of the stream, as the OpenAPI document describes it (each
/// Server-Sent Event's fields; Schemathesis checks every event it reads).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the wire format; the events are built by `Event`
pub struct StockEvent {
    /// Always `availability`.
    #[schema(example = "availability", pattern = "^availability$")]
    event: String,
    /// JSON: `{"sku": "<sku>", "available": <bool>}`.
    #[schema(example = r#"{"sku":"SNEAKER-42","available":true}"#)]
    data: String,
    /// On the first event only: reconnect after this many milliseconds.
    #[schema(example = 1000, minimum = 0)]
    retry: Option<u64>,
}

/// A product's availability, then every change, as Server-Sent Events.
///
/// Each event is `event: availability` with `data: {"sku", "available"}`.
/// The stream ends after `STOCK_EVENTS_MAX_SECS`; reconnecting is the
/// client's job (`EventSource` does it by itself after the `retry` delay).
#[utoipa::path(get, path = "/v1/products/{sku}/events", tag = "products",
    params(("sku" = String, Path, description = "The product's SKU")),
    responses(
        (status = 200, description = "`text/event-stream`: `availability` events, \
            the current value first; ends after `STOCK_EVENTS_MAX_SECS`",
            content_type = "text/event-stream", body = StockEvent),
        (status = 404, description = "`unknown_sku`", body = super::error::ErrorBody),
        (status = 503, description = "`unavailable`", body = super::error::ErrorBody)))]
pub async fn stock_events(
    State(state): State<AppState>,
    PathParam(sku): PathParam,
) -> Result<Response, ApiError> {
    let sku = sku
        .and_then(|sku| Sku::parse(&sku).ok())
        .ok_or(ApiError::UnknownSku)?;
    // Watch before reading: a flip between the two is then sent, not lost.
    let flips = state.stock.flag.watch();
    let current = match state.stock.flag.local(&sku) {
        Some(flag) => flag.available,
        None => products::current(&state, &sku).await?.available,
    };
    let watch = Watch {
        flag: Arc::clone(&state.stock.flag),
        flips,
        sku: sku.as_str().to_owned(),
        pending: Some(current),
        sent: None,
        ends: Instant::now() + state.stock_events_lifetime,
        draining: state.draining.clone(),
        _open: OpenStream::new(),
    };
    let sse = Sse::new(events(watch)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    // Sse sets `Cache-Control: no-cache`; nginx-style proxies also need to
    // be told not to buffer the stream.
    Ok((
        [(header::HeaderName::from_static("x-accel-buffering"), "no")],
        sse,
    )
        .into_response())
}

/// One open stream's state.
struct Watch {
    flag: Arc<StockFlag>,
    flips: tokio::sync::broadcast::Receiver<Flip>,
    sku: String,
    /// A value still to send.
    pending: Option<bool>,
    /// The last value sent: a flip back and forth while lagging is sent once.
    sent: Option<bool>,
    ends: Instant,
    draining: CancellationToken,
    _open: OpenStream,
}

fn events(watch: Watch) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(watch, |mut w| async move {
        loop {
            if let Some(available) = w.pending.take()
                && w.sent != Some(available)
            {
                let first = w.sent.is_none();
                w.sent = Some(available);
                let data = serde_json::json!({ "sku": w.sku, "available": available });
                let mut event = Event::default()
                    .event("availability")
                    .data(data.to_string());
                if first {
                    event = event.retry(RETRY);
                }
                return Some((Ok(event), w));
            }
            tokio::select! {
                () = tokio::time::sleep_until(w.ends) => return None,
                () = w.draining.cancelled() => return None,
                flip = w.flips.recv() => match flip {
                    Ok(flip) if flip.sku == w.sku => w.pending = Some(flip.available),
                    Ok(_) => {}
                    // Missed some: the map has the latest value.
                    Err(RecvError::Lagged(_)) => {
                        w.pending = w.flag.local_available(&w.sku);
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    })
}

/// Counts open streams in the `stock_event_streams` gauge while it lives.
struct OpenStream;

impl OpenStream {
    fn new() -> Self {
        metrics::gauge!(OPEN_STREAMS).increment(1.0);
        Self
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_STREAMS).decrement(1.0);
    }
}
