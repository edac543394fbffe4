//! The public edge, as an outside tester probes it (issue #20): slow and
//! malformed clients over real sockets, media types and CORS, JSON for every
//! error, the OpenAPI document, names, phones, the bearer scheme and
//! caching of personal data.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::*;

/// An app whose slow-client limits are short, so the tests wait seconds.
async fn app_with_timeouts(db: &TestDb, header: u64, idle: u64, body: u64) -> App {
    let mut opts = AppOptions::new(&db.url);
    for (name, secs) in [
        ("HTTP_HEADER_READ_TIMEOUT_SECS", header),
        ("HTTP_IDLE_TIMEOUT_SECS", idle),
        ("HTTP_REQUEST_BODY_TIMEOUT_SECS", body),
    ] {
        opts.extra_env.push((name.into(), secs.to_string()));
    }
    App::spawn(&opts).await
}

/// Reads until the server closes the connection (or resets it), giving up
/// after `limit`. Returns what was read, or `None` if it stayed open.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole response (head and Content-Length body) from `tcp`.
async fn read_response(tcp: &mut TcpStream) -> (u16, String, Value) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(GENEROUS, tcp.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(
            n > 0,
            "closed before a whole answer: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return parse_response(&out);
            }
        }
    }
}

/// Status and JSON body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (status, head.to_ascii_lowercase(), body)
}

/// A limit well above every configured timeout: the test asserts that the
/// server closes the connection, not how fast.
const GENEROUS: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_cut_off() {
    let db = TestDb::create().await;
    let app = app_with_timeouts(&db, 2, 60, 60).await;
    let mut tcp = TcpStream::connect(app.host_port()).await.expect("connect");
    // A head that would take 40 s at one byte every 200 ms: the server must
    // close the connection before it is complete, and never answer it.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(200)
    );
    let mut closed_early = false;
    for byte in head.as_bytes() {
        if tcp.write_all(&[*byte]).await.is_err() {
            closed_early = true;
            break;
        }
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut probe)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => {
                closed_early = true;
                break;
            }
            Ok(Ok(_)) => panic!("the server answered a head it never fully received"),
        }
    }
    assert!(closed_early, "a trickled head was read to its end");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_busy_ones_served() {
    let db = TestDb::create().await;
    let app = app_with_timeouts(&db, 30, 2, 30).await;

    // A connection that never sends anything.
    let mut silent = TcpStream::connect(app.host_port()).await.expect("connect");
    // A keep-alive connection after one answered request.
    let mut kept = TcpStream::connect(app.host_port()).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut kept).await.0, 200);

    for (what, tcp) in [("silent", &mut silent), ("keep-alive", &mut kept)] {
        let rest = read_until_closed(tcp, GENEROUS).await;
        assert_eq!(
            rest.as_deref(),
            Some(&b""[..]),
            "the {what} connection was not closed, or got an answer"
        );
    }

    // A connection that keeps sending requests, each within the idle
    // timeout of the previous answer, is served every time.
    let mut busy = TcpStream::connect(app.host_port()).await.expect("connect");
    for _ in 0..4 {
        busy.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("a busy connection stays open");
        assert_eq!(read_response(&mut busy).await.0, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn slow_and_short_bodies_get_408_and_reserve_nothing() {
    let db = TestDb::create().await;
    let app = app_with_timeouts(&db, 30, 60, 2).await;
    let sku = unique_sku("slow");
    app.put_product(&sku, "Slow", 5).await;
    let body = serde_json::to_vec(&customer(&sku, 1, 91)).expect("json");
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );

    // A body trickled a byte every 300 ms (it would take minutes).
    let mut trickle = TcpStream::connect(app.host_port()).await.expect("connect");
    trickle.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    for byte in &body {
        if trickle.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 2048];
        match tokio::time::timeout(Duration::from_millis(300), trickle.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
        }
    }
    answer.extend(
        read_until_closed(&mut trickle, GENEROUS)
            .await
            .unwrap_or_default(),
    );
    let (status, head_seen, err) = parse_response(&answer);
    assert_eq!(
        (status, error_code(&err)),
        (408, "request_timeout"),
        "{err}"
    );
    assert!(
        head_seen.contains("content-type: application/json"),
        "{head_seen}"
    );

    // A Content-Length larger than what is sent.
    let mut liar = TcpStream::connect(app.host_port()).await.expect("connect");
    liar.write_all(head.as_bytes()).await.expect("head");
    liar.write_all(&body[..body.len() / 2])
        .await
        .expect("half a body");
    let answer = read_until_closed(&mut liar, GENEROUS)
        .await
        .expect("the connection is closed");
    let (status, _, err) = parse_response(&answer);
    assert_eq!(
        (status, error_code(&err)),
        (408, "request_timeout"),
        "{err}"
    );

    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        0
    );
}

#[tokio::test]
async fn json_routes_require_json_and_grant_no_cross_origin_access() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("ctype");
    app.put_product(&sku, "Typed", 5).await;
    let body = serde_json::to_string(&customer(&sku, 1, 92)).expect("json");

    // The CORS "simple" types a page on any site can send without asking,
    // and no type at all.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = app
            .http
            .post(app.url("/v1/orders"))
            .header("origin", "https://rival.example")
            .body(body.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.expect("POST");
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let (status, err) = split(r).await;
        assert_eq!(
            (status, error_code(&err)),
            (415, "unsupported_media_type"),
            "{content_type:?}: {err}"
        );
    }
    let r = app
        .http
        .put(app.url(&format!("/v1/products/{sku}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"name": "x", "stock": 1}"#)
        .send()
        .await
        .expect("PUT");
    let (status, err) = split(r).await;
    assert_eq!((status, error_code(&err)), (415, "unsupported_media_type"));
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        0
    );

    // A cross-origin preflight is not granted: no Access-Control-* header,
    // so the browser never sends the JSON request.
    for path in [
        "/v1/orders",
        &format!("/v1/products/{sku}"),
        "/v1/client-config",
    ] {
        let r = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://rival.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .expect("OPTIONS");
        let granted: Vec<_> = r
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .map(|k| k.as_str().to_owned())
            .collect();
        assert!(granted.is_empty(), "{path}: {granted:?}");
        let (status, err) = split(r).await;
        assert_eq!(
            (status, error_code(&err)),
            (405, "method_not_allowed"),
            "{path}"
        );
    }

    // JSON with parameters is JSON.
    let r = app
        .http
        .post(app.url("/v1/orders"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
}

/// Sends raw bytes, returns the whole answer (the server closes after it).
async fn raw(app: &App, request: &[u8]) -> (u16, String, Value) {
    let mut tcp = TcpStream::connect(app.host_port()).await.expect("connect");
    // The server may answer and close before it has read everything.
    let _ = tcp.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(GENEROUS, tcp.read_to_end(&mut out)).await;
    parse_response(&out)
}

#[tokio::test]
async fn every_error_is_json_even_from_the_http_layer() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;

    // Invalid UTF-8 in path parameters: the route's own answer.
    for (method, path, status, code) in [
        ("GET", "/v1/orders/%FF", 404, "order_not_found"),
        ("GET", "/v1/orders/%FF/voucher", 404, "order_not_found"),
        ("GET", "/v1/products/%FF", 404, "unknown_sku"),
        ("GET", "/assets/%FF", 404, "not_found"),
    ] {
        let r = app
            .http
            .request(method.parse().expect("method"), app.url(path))
            .send()
            .await
            .expect("request");
        let (got, err) = split(r).await;
        assert_eq!((got, error_code(&err)), (status, code), "{path}: {err}");
    }
    let r = app
        .http
        .put(app.url("/v1/products/%FF"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "x", "stock": 1}))
        .send()
        .await
        .expect("PUT");
    let (status, err) = split(r).await;
    assert_eq!((status, error_code(&err)), (422, "invalid_field"), "{err}");
    assert_eq!(err["field"], "sku");

    // What hyper refuses before any handler runs.
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let huge_header = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(300_000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    for (what, request, codes) in [
        ("a 70 kB URI", long_uri.as_bytes(), &[414u16, 431][..]),
        ("a 300 kB header", huge_header.as_bytes(), &[431][..]),
        ("200 headers", many_headers.as_bytes(), &[431][..]),
        ("garbage", &b"\x16\x03\x01 not http\r\n\r\n"[..], &[400][..]),
    ] {
        let (status, head, err) = raw(&app, request).await;
        assert!(codes.contains(&status), "{what}: {status} {head}");
        assert!(
            head.contains("content-type: application/json"),
            "{what}: {head}"
        );
        assert!(
            err["error"].as_str().is_some_and(|c| !c.is_empty())
                && err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {err}"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_says_what_the_api_does() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let sku = unique_sku("doc");
    app.put_product(&sku, "Doc", 5).await;

    // An empty Idempotency-Key is refused, and the schema says so.
    let (status, _) = app.order(&customer(&sku, 1, 93), Some("")).await;
    assert_eq!(status, 422);
    let key = doc["paths"]["/v1/orders"]["post"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("Idempotency-Key")
        .clone();
    assert_eq!(key["schema"]["minLength"], 1, "{key}");

    // PUT without a body (no Content-Type) and with an empty JSON body:
    // both answers are documented.
    let r = app
        .http
        .put(app.url(&format!("/v1/products/{sku}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("PUT");
    let (status, _) = split(r).await;
    let r = app
        .http
        .put(app.url(&format!("/v1/products/{sku}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("PUT");
    let (empty_status, _) = split(r).await;
    let put = &doc["paths"]["/v1/products/{sku}"]["put"]["responses"];
    for s in [status, empty_status] {
        assert!(
            put[s.to_string()].is_object(),
            "PUT answered an undocumented {s}"
        );
    }

    // 413 is documented where it can happen.
    let mut huge = customer(&sku, 2, 93);
    huge["first_name"] = json!("x".repeat(17 * 1024));
    let (status, _) = app.order(&huge, None).await;
    assert_eq!(status, 413);
    assert!(doc["paths"]["/v1/orders"]["post"]["responses"]["413"].is_object());
}

#[tokio::test]
async fn names_must_be_visible_and_are_stored_in_nfc() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("names");
    app.put_product(&sku, "Names", 50).await;

    // One of each kind; the unit tests of `domain::names` list them all.
    let invisible = [
        "\u{202E}",     // a bidi override alone
        "Ada\u{2066}x", // a bidi isolate inside
        "\u{200B}",     // zero-width space
        "\u{3164}",     // Hangul filler, a "letter" that shows nothing
        "\u{0301}",     // a lone combining mark
        "a\u{2028}b",   // line separator
        "a\u{FFFE}",    // noncharacter
        "a\u{E000}",    // private use
    ];
    for (i, name) in invisible.iter().enumerate() {
        let mut body = customer(&sku, i as u32, 94);
        body["first_name"] = json!(name);
        let (status, err) = app.order(&body, None).await;
        assert_eq!(
            (status, error_code(&err), err["field"].as_str()),
            (422, "invalid_field", Some("first_name")),
            "{name:?}: {err}"
        );
    }
    let (status, err) = app.put_product(&unique_sku("p"), "\u{202E}", 1).await;
    assert_eq!((status, error_code(&err)), (422, "invalid_field"), "{err}");
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        0
    );

    // Decomposed input is stored precomposed; Zoë, Ñúñez and 张伟 stay valid.
    let body = json!({"sku": sku, "first_name": "Zoe\u{0308}", "last_name": "N\u{0303}u\u{0301}n\u{0303}ez",
        "phone": phone(94, 100)});
    let (status, created) = app.order(&body, None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["order_id"].as_str().expect("order_id");
    let order: Value = app
        .http
        .get(app.url(&format!("/v1/orders/{id}")))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(order["first_name"], "Zo\u{00EB}");
    assert_eq!(order["last_name"], "\u{00D1}\u{00FA}\u{00F1}ez");
    let body = json!({"sku": sku, "first_name": "张", "last_name": "伟", "phone": phone(94, 101)});
    assert_eq!(app.order(&body, None).await.0, 201);
}

#[tokio::test]
async fn phones_with_letters_or_trailing_junk_are_refused() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("phones");
    app.put_product(&sku, "Phones", 50).await;
    // Keypad letters and trailing junk; `domain::phone` lists every case.
    for (i, phone) in [
        "+358 4O 123 4567",
        "+358 40 123 4567\u{200B}",
        "+358 40 123 4567 ext. 12",
    ]
    .iter()
    .enumerate()
    {
        let mut body = customer(&sku, i as u32, 95);
        body["phone"] = json!(phone);
        let (status, err) = app.order(&body, None).await;
        assert_eq!(
            (status, error_code(&err), err["field"].as_str()),
            (422, "invalid_field", Some("phone")),
            "{phone:?}: {err}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE sku = $1", &sku)
            .await,
        0
    );
    let mut body = customer(&sku, 50, 95);
    body["phone"] = json!("+358 (40) 123-45.67");
    let (status, created) = app.order(&body, None).await;
    assert_eq!(status, 201, "{created}");
    let stored: String = db
        .client()
        .await
        .query_one("SELECT phone FROM orders WHERE sku = $1", &[&sku])
        .await
        .expect("phone")
        .get(0);
    assert_eq!(stored, "+358401234567");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    for (i, scheme) in ["Bearer", "bearer", "BEARER", "bEaReR"].iter().enumerate() {
        let r = app
            .http
            .put(app.url(&format!("/v1/products/{}", unique_sku("auth"))))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"))
            .json(&json!({"name": format!("Auth {i}"), "stock": 1}))
            .send()
            .await
            .expect("PUT");
        assert_eq!(r.status(), 201, "{scheme}");
    }
    for value in [
        format!("Basic {ADMIN_TOKEN}"),
        format!("bearer wrong-{ADMIN_TOKEN}"),
    ] {
        let r = app
            .http
            .put(app.url(&format!("/v1/products/{}", unique_sku("auth"))))
            .header("authorization", value.clone())
            .json(&json!({"name": "x", "stock": 1}))
            .send()
            .await
            .expect("PUT");
        let (status, err) = split(r).await;
        assert_eq!((status, error_code(&err)), (401, "unauthorized"), "{value}");
    }
}

#[tokio::test]
async fn personal_data_is_never_cached() {
    let db = TestDb::create().await;
    let app = App::spawn(&AppOptions::new(&db.url)).await;
    let sku = unique_sku("cache");
    app.put_product(&sku, "Cache", 5).await;
    let r = app
        .http
        .post(app.url("/v1/orders"))
        .json(&customer(&sku, 1, 96))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (_, created) = split(r).await;
    let id = created["order_id"].as_str().expect("order_id");
    let r = app
        .http
        .get(app.url(&format!("/v1/orders/{id}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (_, order) = split(r).await;
    assert_eq!(order["first_name"], "Zoë");
}
