//! Restarts and crashes of the broker, the object store and the worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::support::{Collector, Harness, OrderApi, eventually, phone, stack, var, workspace_root};

/// Starts a stopped shared service again if the test fails half-way, so the
/// next test (and the next person) finds the stack up.
struct EnsureUp(&'static str);

impl Drop for EnsureUp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::process::Command::new("bash")
                .arg(workspace_root().join("dev/stack.sh"))
                .args(["start", self.0])
                .status();
        }
    }
}

/// Posts an order every `every` until `stop`; returns the accepted ids.
fn keep_ordering(
    api: Arc<OrderApi>,
    sku: String,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut accepted = Vec::new();
        let mut i = 0;
        while !stop.is_cancelled() {
            match api
                .try_order(&sku, "Mid", &format!("Drop {i}"), &phone(i))
                .await
            {
                Ok(id) => accepted.push(id),
                Err(e) => eprintln!("order {i} not accepted: {e}"),
            }
            i += 1;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => {}
            }
        }
        accepted
    })
}

/// RabbitMQ restarted while orders keep coming: every accepted order still
/// gets its voucher and its voucher_ready message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_mid_drop() {
    let h = Harness::new("rmq-restart").await;
    let vouchers = h.collector();
    h.subscribe_voucher("voucher.*").await;
    let api = Arc::new(h.order_api().await);
    api.create_product(&h.sku, "Restart drop", 1000).await;
    let pdfgen = h.pdf_generator("pdf-generator", &[]).await;

    let stop = CancellationToken::new();
    let poster = keep_ordering(
        Arc::clone(&api),
        h.sku.clone(),
        Duration::from_millis(100),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let _guard = EnsureUp("rabbitmq");
        stack(&["restart", "rabbitmq"]).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let ids = poster.await.expect("poster task");
    assert!(ids.len() >= 20, "only {} orders accepted", ids.len());

    let messages = vouchers.wait_all(&ids, Duration::from_secs(120)).await;
    for id in &ids {
        assert_eq!(messages[id]["status"], "voucher_ready");
        assert!(h.head_voucher(id).await.is_some(), "voucher {id} missing");
    }
    let m = pdfgen.metrics(&h.http).await;
    assert!(m.sum("amqp_reconnects_total", &[]) >= 1.0, "{}", m.0);
    assert_eq!(m.sum("messages_dead_lettered_total", &[]), 0.0, "{}", m.0);
}

/// The S3 server is away for 20 s: uploads retry with backoff and every
/// voucher completes once it is back; nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_of_20_seconds() {
    let h = Harness::new("s3-outage").await;
    let vouchers = h.collector();
    let dead = h.dead_letters();
    h.subscribe_voucher("voucher.*").await;
    let api = h.order_api().await;
    api.create_product(&h.sku, "Outage drop", 1000).await;
    let pdfgen = h.pdf_generator("pdf-generator", &[]).await;

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            api.order(&h.sku, "Before", &format!("Outage {i}"), &phone(i))
                .await,
        );
    }
    vouchers.wait_all(&ids, Duration::from_secs(30)).await;

    let guard = EnsureUp("s3");
    stack(&["stop", "s3"]).await;
    let stopped = Instant::now();
    for i in 5..25 {
        ids.push(
            api.order(&h.sku, "During", &format!("Outage {i}"), &phone(i))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed())).await;
    stack(&["start", "s3"]).await;
    drop(guard);

    vouchers.wait_all(&ids, Duration::from_secs(150)).await;
    for id in &ids {
        assert!(h.head_voucher(id).await.is_some(), "voucher {id} missing");
        assert!(!dead.has(id), "{id} was dead-lettered");
    }
    let m = pdfgen.metrics(&h.http).await;
    assert!(
        m.sum("retries_total", &[r#"operation="upload""#]) >= 1.0,
        "{}",
        m.0
    );
    assert_eq!(m.sum("messages_dead_lettered_total", &[]), 0.0, "{}", m.0);
}

/// SIGKILL in the middle of a batch, then a restart: redeliveries render and
/// upload again (overwriting is fine), no voucher is missing, nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_then_restart() {
    let h = Harness::new("sigkill").await;
    let vouchers = h.collector();
    let dead = h.dead_letters();
    h.subscribe_voucher("voucher.*").await;
    let api = h.order_api().await;
    api.create_product(&h.sku, "Crash drop", 1000).await;
    let mut first = h
        .pdf_generator("pdf-generator-1", &[("PREFETCH", "8")])
        .await;

    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            api.order(&h.sku, "Kill", &format!("Batch {i}"), &phone(i))
                .await,
        );
    }
    eventually(
        "the first replica is mid-batch",
        Duration::from_secs(30),
        || async {
            let m = first.metrics(&h.http).await;
            (m.sum("vouchers_uploaded_total", &[]) >= 3.0).then_some(())
        },
    )
    .await;
    first.signal("KILL");
    let status = first.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success(), "SIGKILL must not look like a clean exit");

    let second = h.pdf_generator("pdf-generator-2", &[]).await;
    vouchers.wait_all(&ids, Duration::from_secs(90)).await;
    for id in &ids {
        assert!(h.head_voucher(id).await.is_some(), "voucher {id} missing");
        assert!(!dead.has(id), "{id} was dead-lettered");
    }
    // The first replica can die after uploading a voucher but before acking
    // its order: the voucher is announced already, and the redelivered order
    // is rendered again after that. So wait for the redone work itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !second.log_text().contains("redelivered=true") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = second.metrics(&h.http).await;
    assert_eq!(m.sum("messages_dead_lettered_total", &[]), 0.0, "{}", m.0);
    let log = second.log_text();
    assert!(!log.contains("ERROR"), "errors after the restart:\n{log}");
    assert!(
        log.contains("redelivered=true"),
        "the restart should have redone some in-flight work:\n{}",
        second.log_tail()
    );
}

/// Stops the fan-out node when the test ends, also when it failed (with its
/// alarm still raised).
struct StopFanout;

impl Drop for StopFanout {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(workspace_root().join("dev/stack.sh"))
            .args(["fanout", "down"])
            .status();
    }
}

/// The memory alarms of the browsers' broker and of the pipeline's, as the
/// management API of each node reports them (None until its first stats).
async fn memory_alarms(http: &reqwest::Client, management_url: &str) -> Vec<Option<bool>> {
    let nodes: serde_json::Value = http
        .get(format!("{management_url}/api/nodes"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("GET /api/nodes")
        .json()
        .await
        .expect("nodes JSON");
    nodes
        .as_array()
        .expect("a list of nodes")
        .iter()
        .map(|n| n["mem_alarm"].as_bool())
        .collect()
}

/// A real memory alarm on the browsers' broker (a second RabbitMQ node, as
/// the fan-out RabbitmqCluster is in Kubernetes; dev/stack/fanout.sh) blocks
/// the notifier's publishes there and nothing else: while it lasts, every
/// order of the drop still gets its voucher stored and `voucher_ready` from
/// `GET /v1/orders/{id}` (what the waiting page asks), the pipeline's broker
/// has no alarm, and no announcement gets through. Once it clears, every
/// connected customer gets their `voucher.<id>`, and nothing was
/// dead-lettered: the notifier waited for `connection.unblocked` instead of
/// spending its retries: its budget here is one attempt, which a 15 s
/// confirm timeout behind the alarm would spend. A replica stopped during
/// the alarm hands its events back to the next one. The node starts empty
/// and is stopped at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_on_the_browsers_broker_stops_only_its_announcements() {
    let _stop = StopFanout;
    stack(&["fanout", "up"]).await;
    let h = Harness::new("fanout-alarm").await;
    let fanout_url = var(
        "FANOUT_NODE_AMQP_URL",
        "amqp://drop:drop@127.0.0.1:5675/browser",
    );
    let fanout_management = var("FANOUT_NODE_MANAGEMENT_URL", "http://127.0.0.1:15675");
    let pipeline_management = var("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672");

    // The customers' side: one queue on the browsers' broker, bound as a
    // waiting page's subscription is.
    let customers = format!("e2e.fanout-vouchers.{}", h.id);
    let fanout = lapin::Connection::connect(&fanout_url, lapin::ConnectionProperties::default())
        .await
        .expect("connecting to the fan-out node");
    let channel = fanout.create_channel().await.expect("a channel");
    channel
        .queue_declare(
            customers.as_str().into(),
            lapin::options::QueueDeclareOptions::durable(),
            drop_contract::topology::quorum_queue_args(false, false),
        )
        .await
        .expect("declaring the customers' queue");
    drop_contract::topology::bind(
        &channel,
        &customers,
        drop_contract::topology::TOPIC_EXCHANGE,
        "voucher.*",
    )
    .await
    .expect("binding the customers' queue");
    let vouchers = Collector::start_on(fanout_url.clone(), customers.clone());

    let dead = h.dead_letters();
    let api = h.order_api().await;
    api.create_product(&h.sku, "Alarm", 10).await;
    let env = [
        ("FANOUT_AMQP_URL", fanout_url.as_str()),
        ("MAX_ATTEMPTS", "1"),
    ];
    let mut pdfgen = h.pdf_generator("pdf-generator", &env).await;
    let first = api.order(&h.sku, "Before", "Alarm", &phone(0)).await;
    vouchers
        .wait_all(std::slice::from_ref(&first), Duration::from_secs(30))
        .await;

    stack(&["fanout", "alarm"]).await;
    eventually(
        "the fan-out node's memory alarm",
        Duration::from_secs(30),
        || async {
            memory_alarms(&h.http, &fanout_management)
                .await
                .contains(&Some(true))
                .then_some(())
        },
    )
    .await;

    let alarm_raised = std::time::Instant::now();
    let mut ids = Vec::new();
    for i in 1..=4 {
        ids.push(
            api.order(&h.sku, "During", &format!("Alarm {i}"), &phone(i))
                .await,
        );
    }
    for id in &ids {
        eventually(
            "voucher_ready from GET /v1/orders/{id}",
            Duration::from_secs(60),
            || async { (api.status(id).await == "voucher_ready").then_some(()) },
        )
        .await;
    }
    assert_eq!(
        memory_alarms(&h.http, &pipeline_management).await,
        vec![Some(false)],
        "the pipeline's broker has no alarm"
    );
    // The broker blocks the connection at its first publish during the
    // alarm; the gauge shows it while those publishes wait for their
    // confirms, well inside their 15 s timeout.
    eventually(
        "fanout_blocked reads 1",
        Duration::from_secs(10),
        || async {
            let m = pdfgen.metrics(&h.http).await;
            (m.sum("fanout_blocked", &[]) == 1.0).then_some(())
        },
    )
    .await;
    assert!(
        ids.iter().all(|id| !vouchers.has(id)),
        "no announcement passed the alarm"
    );

    // Past the one attempt's confirm timeout (15 s), with room.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(alarm_raised.elapsed())).await;
    // A replica shut down while blocked hands its events back: it exits
    // cleanly and dead-letters nothing, and the next replica announces them.
    pdfgen.signal("TERM");
    let status = pdfgen.wait_exit(Duration::from_secs(40)).await;
    assert!(status.success(), "{status}: {}", pdfgen.log_tail());
    let pdfgen = h.pdf_generator("pdf-generator-2", &env).await;
    stack(&["fanout", "clear"]).await;
    let messages = vouchers.wait_all(&ids, Duration::from_secs(90)).await;
    for (i, id) in ids.iter().enumerate() {
        h.verify_voucher(&messages[id], id, &[&format!("During Alarm {}", i + 1)])
            .await;
    }
    let m = pdfgen.metrics(&h.http).await;
    assert_eq!(m.sum("fanout_blocked", &[]), 0.0, "{}", m.0);
    assert_eq!(m.sum("messages_dead_lettered_total", &[]), 0.0, "{}", m.0);
    dead.with(|d| assert!(d.first.is_empty(), "dead letters: {:?}", d.deaths));

    drop(vouchers);
    let _ = channel
        .queue_delete(customers.as_str().into(), Default::default())
        .await;
    let _ = fanout.close(200, "done".into()).await;
}
