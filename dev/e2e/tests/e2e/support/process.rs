//! The processes a test runs: order-api and pdf-generator replicas, their
//! logs and metrics, and order-api's HTTP API.

use super::*;

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    pub(super) child: Child,
    pub log: PathBuf,
    pub addr: SocketAddr,
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(super) async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited during startup ({status}); log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 60 s; log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// True while the process runs.
    pub fn try_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal to this child (by its pid).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("child still running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("waiting for the child"),
            Err(_) => panic!(
                "{} still running after {limit:?}; log:\n{}",
                self.name,
                self.log_tail()
            ),
        }
    }

    pub async fn metrics(&self, http: &reqwest::Client) -> Metrics {
        let text = http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        Metrics(text)
    }
}

/// A Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// The sum of every series of `name` whose labels contain all of `labels`
    /// (each written as `key="value"`).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = match series.split_once('{') {
                    Some((m, r)) => (m, r),
                    None => (series, ""),
                };
                (metric == name && labels.iter().all(|want| rest.contains(want)))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }
}

/// The order-api process and its HTTP API.
pub struct OrderApi {
    pub proc: Proc,
    pub(super) http: reqwest::Client,
}

impl OrderApi {
    pub async fn create_product(&self, sku: &str, name: &str, stock: i64) {
        let r = self
            .http
            .put(self.proc.url(&format!("/v1/products/{sku}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": name, "stock": stock}))
            .send()
            .await
            .expect("PUT /v1/products");
        let status = r.status();
        assert!(
            status == 201 || status == 200,
            "PUT /v1/products/{sku}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Registers a scanner and redeems `code` with it, as a clerk would:
    /// the answer's status and body.
    pub async fn redeem(&self, code: &str) -> (u16, serde_json::Value) {
        let scanner: serde_json::Value = self
            .http
            .post(self.proc.url("/v1/scanners"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "E2E counter"}))
            .send()
            .await
            .expect("POST /v1/scanners")
            .json()
            .await
            .expect("scanner JSON");
        let token = scanner["token"].as_str().expect("scanner token");
        let r = self
            .http
            .post(self.proc.url("/v1/redemptions"))
            .bearer_auth(token)
            .json(&json!({"code": code, "nonce": format!("e2e-{:016x}", rand::random::<u64>())}))
            .send()
            .await
            .expect("POST /v1/redemptions");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// POST /v1/orders; `Ok(order_id)` on 201, `Err(status, body)` otherwise.
    pub async fn try_order(
        &self,
        sku: &str,
        first: &str,
        last: &str,
        phone: &str,
    ) -> Result<String, String> {
        let r = self
            .http
            .post(self.proc.url("/v1/orders"))
            .json(&json!({"sku": sku, "first_name": first, "last_name": last, "phone": phone}))
            .send()
            .await
            .map_err(|e| format!("POST /v1/orders: {e}"))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status != 201 {
            return Err(format!("{status} {body}"));
        }
        body["order_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no order_id in {body}"))
    }

    /// GET /v1/orders/{id}, as the customer's page asks it.
    pub async fn get_order(&self, order_id: &str) -> Value {
        self.http
            .get(self.proc.url(&format!("/v1/orders/{order_id}")))
            .send()
            .await
            .expect("GET /v1/orders/{id}")
            .json()
            .await
            .expect("order JSON")
    }

    /// The order's status, from [`OrderApi::get_order`].
    pub async fn status(&self, order_id: &str) -> String {
        let order = self.get_order(order_id).await;
        order["status"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn order(&self, sku: &str, first: &str, last: &str, phone: &str) -> String {
        self.try_order(sku, first, last, phone)
            .await
            .unwrap_or_else(|e| panic!("POST /v1/orders: {e}"))
    }
}
