//! The consume loop both roles share: connect, declare, consume with manual
//! acks and a bounded prefetch, run handlers concurrently, reconnect when the
//! broker goes away, and drain on shutdown.
//!
//! Delivery guarantees: a delivery is acked only after its handler said so,
//! which for the renderer means after the upload succeeded. Anything unacked
//! when a connection dies is redelivered by RabbitMQ (at-least-once), so on
//! connection loss the in-flight handlers are simply aborted: their acks could
//! never reach the broker anyway, and finishing them would only duplicate the
//! work the redelivery will do.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::retry::Backoff;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to tell the broker about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    /// Reject without requeue: the queue's dead-letter exchange takes it.
    /// The reason labels the metric.
    DeadLetter(&'static str),
    /// Give it back to the broker for another consumer (used when shutdown
    /// interrupts a retry wait).
    Requeue,
}

/// One role's message handling. The consume loop owns the broker plumbing.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state handlers share, e.g. a publishing channel.
    type Session: Clone + Send + Sync + 'static;

    /// `render` or `notify`: labels logs and metrics.
    fn role(&self) -> &'static str;

    fn queue(&self) -> &str;

    /// Declares the topology this role needs. Runs on every (re)connect: after
    /// a broker restart with a fresh data directory nothing else exists.
    fn declare(&self, channel: &Channel) -> impl Future<Output = lapin::Result<()>> + Send;

    fn open_session(
        &self,
        connection: &Connection,
    ) -> impl Future<Output = lapin::Result<Self::Session>> + Send;

    /// Handles one delivery. `shutdown` lets long retry waits stop early.
    fn handle(
        &self,
        delivery: &Delivery,
        session: &Self::Session,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Outcome> + Send;
}

pub struct Settings {
    pub amqp_url: SecretString,
    pub prefetch: u16,
    /// How long in-flight deliveries may take to finish after SIGTERM.
    pub drain_timeout: Duration,
}

/// Runs `handler` until `shutdown`, reconnecting as needed. `ready` is true
/// exactly while a consumer is registered with the broker.
pub async fn run<H: Handler>(
    handler: Arc<H>,
    settings: Settings,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let role = handler.role();
    let mut failures = 0u32;
    let mut connected_before = false;
    while !shutdown.is_cancelled() {
        let attempt =
            connect_and_consume(&handler, &settings, &ready, &shutdown, connected_before).await;
        ready.store(false, Ordering::SeqCst);
        connected_before |= attempt.connected;
        if attempt.consumed {
            // The broker was back and working: the next outage starts its
            // backoff from the beginning again.
            failures = 0;
        }
        match attempt.ended {
            Ok(()) => return,
            Err(err) => {
                let wait = Backoff::RECONNECT.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(role, error = %err, wait_ms = wait.as_millis() as u64, "broker connection lost or refused; reconnecting");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// How one connection attempt went.
struct Attempt {
    /// The AMQP handshake succeeded.
    connected: bool,
    /// A consumer was registered with the broker.
    consumed: bool,
    /// `Ok` after a clean shutdown, `Err` when the connection or channel
    /// failed and the caller should reconnect.
    ended: anyhow::Result<()>,
}

async fn connect_and_consume<H: Handler>(
    handler: &Arc<H>,
    settings: &Settings,
    ready: &AtomicBool,
    shutdown: &CancellationToken,
    connected_before: bool,
) -> Attempt {
    let role = handler.role();
    let failed = |connected, e| Attempt {
        connected,
        consumed: false,
        ended: Err(e),
    };
    let connection = match connect(settings, role).await {
        Ok(connection) => connection,
        Err(e) => return failed(false, e),
    };
    if connected_before {
        ::metrics::counter!(metrics::RECONNECTS, "role" => role).increment(1);
    }
    let subscribed = match subscribe(handler.as_ref(), settings, &connection).await {
        Ok(subscribed) => subscribed,
        Err(e) => {
            let _ = connection.close(320, "reconnecting".into()).await;
            return failed(true, e);
        }
    };
    ready.store(true, Ordering::SeqCst);
    tracing::info!(
        role,
        queue = handler.queue(),
        prefetch = settings.prefetch,
        "consuming"
    );
    Attempt {
        connected: true,
        consumed: true,
        ended: serve(handler, settings, ready, shutdown, connection, subscribed).await,
    }
}

async fn connect(settings: &Settings, role: &'static str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default()
        .with_connection_name(format!("pdf-generator-{role}").into());
    // A broker that accepts TCP but never finishes the handshake (starting
    // up, overloaded) must not stall us forever.
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(settings.amqp_url.expose_secret(), props),
    )
    .await
    .map_err(|_| anyhow::anyhow!("AMQP handshake timed out after {CONNECT_TIMEOUT:?}"))?
    .map_err(Into::into)
}

/// A registered consumer and what its handlers share.
struct Subscribed<S> {
    channel: Channel,
    consumer: lapin::Consumer,
    session: S,
}

async fn subscribe<H: Handler>(
    handler: &H,
    settings: &Settings,
    connection: &Connection,
) -> anyhow::Result<Subscribed<H::Session>> {
    let channel = connection.create_channel().await?;
    handler.declare(&channel).await?;
    // Bounds both the broker's push and our concurrency: we never hold more
    // than `prefetch` unacked deliveries, and run a handler for each.
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let session = handler.open_session(connection).await?;
    let consumer = channel
        .basic_consume(
            handler.queue().into(),
            // Empty: the broker picks a unique tag, so replicas never clash.
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(Subscribed {
        channel,
        consumer,
        session,
    })
}

/// Runs handlers for the deliveries until shutdown (`Ok`) or until the
/// connection or channel fails (`Err`).
async fn serve<H: Handler>(
    handler: &Arc<H>,
    settings: &Settings,
    ready: &AtomicBool,
    shutdown: &CancellationToken,
    connection: Connection,
    subscribed: Subscribed<H::Session>,
) -> anyhow::Result<()> {
    let role = handler.role();
    let Subscribed {
        channel,
        mut consumer,
        session,
    } = subscribed;
    let tag = consumer.tag();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let lost: Option<anyhow::Error> = loop {
        tokio::select! {
            () = shutdown.cancelled() => break None,
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(e) = joined {
                    // Only if settling itself panicked or the task was
                    // aborted: the delivery comes back when the channel closes,
                    // and the queue's delivery limit stops a loop.
                    tracing::error!(role, error = %e, "handler task failed");
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    ::metrics::counter!(metrics::CONSUMED, "role" => role).increment(1);
                    let handler = Arc::clone(handler);
                    let session = session.clone();
                    let shutdown = shutdown.clone();
                    in_flight.spawn(async move {
                        let started = Instant::now();
                        // A panic is a bug that would most likely repeat on
                        // redelivery: keep the message for people to inspect
                        // instead of holding its prefetch slot until reconnect.
                        let outcome = AssertUnwindSafe(handler.handle(&delivery, &session, &shutdown))
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| {
                                tracing::error!(role, "handler panicked; dead-lettering the delivery");
                                Outcome::DeadLetter("handler_panicked")
                            });
                        settle(role, &delivery, outcome).await;
                        ::metrics::histogram!(metrics::HANDLE_SECONDS, "role" => role)
                            .record(started.elapsed().as_secs_f64());
                    });
                }
                Some(Err(e)) => break Some(e.into()),
                None => break Some(anyhow::anyhow!("consumer stream ended")),
            },
        }
    };
    ready.store(false, Ordering::SeqCst);

    if let Some(err) = lost {
        in_flight.abort_all();
        // The connection may be half-open (e.g. only the channel died); close
        // it so nothing lingers, ignoring errors from an already dead socket.
        let _ = connection.close(320, "reconnecting".into()).await;
        return Err(err);
    }

    // Shutdown: stop new deliveries first, then let in-flight ones finish and
    // ack. Deliveries the broker had already pushed but we had not started are
    // requeued by the broker when the channel closes.
    tracing::info!(
        role,
        in_flight = in_flight.len(),
        "shutting down: cancelling consumer, draining"
    );
    if let Err(e) = channel
        .basic_cancel(tag, BasicCancelOptions::default())
        .await
    {
        tracing::warn!(role, error = %e, "basic.cancel failed");
    }
    let drained = tokio::time::timeout(settings.drain_timeout, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            role,
            left = in_flight.len(),
            "drain timeout; unfinished deliveries go back to the queue"
        );
        in_flight.abort_all();
    }
    let _ = channel.close(200, "shutdown".into()).await;
    let _ = connection.close(200, "shutdown".into()).await;
    tracing::info!(role, "stopped");
    Ok(())
}

async fn settle(role: &'static str, delivery: &Delivery, outcome: Outcome) {
    let nack = |requeue| BasicNackOptions {
        requeue,
        multiple: false,
    };
    let result = match outcome {
        Outcome::Ack => delivery.ack(BasicAckOptions::default()).await,
        Outcome::DeadLetter(_) => delivery.nack(nack(false)).await,
        Outcome::Requeue => delivery.nack(nack(true)).await,
    };
    match (result, outcome) {
        (Ok(true), Outcome::Ack) => {
            ::metrics::counter!(metrics::ACKED, "role" => role).increment(1);
        }
        (Ok(true), Outcome::DeadLetter(reason)) => {
            ::metrics::counter!(metrics::DEAD_LETTERED, "role" => role, "reason" => reason)
                .increment(1);
        }
        (Ok(true), Outcome::Requeue) => {
            ::metrics::counter!(metrics::REQUEUED, "role" => role).increment(1);
        }
        (Ok(false), _) => {
            tracing::warn!(
                role,
                ?outcome,
                "delivery already settled or its channel is gone; the broker redelivers it if needed"
            );
        }
        (Err(e), _) => {
            // The channel is gone; the broker redelivers this message.
            tracing::warn!(role, ?outcome, error = %e, "could not settle delivery; it will be redelivered");
        }
    }
}
