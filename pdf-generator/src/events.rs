//! S3 bucket-notification parsing, for both object stores we run on.
//!
//! MinIO (production) and Ceph RGW (local stack) send the same standard S3
//! event record list (AWS's "Event message structure"), with small
//! differences seen in their messages: MinIO prefixes `eventName` with `s3:`
//! and URL-encodes keys (space as `+`), RGW does neither, and MinIO adds
//! top-level `EventName`/`Key` fields. Only `Records[]` is read, and both
//! spellings are accepted.

use percent_encoding::percent_decode_str;
use serde::Deserialize;

use crate::order::OrderId;

#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(rename = "Records")]
    records: Vec<RawRecord>,
}

#[derive(Debug, Deserialize)]
struct RawRecord {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: RawS3,
}

#[derive(Debug, Deserialize)]
struct RawS3 {
    bucket: RawBucket,
    object: RawObject,
}

#[derive(Debug, Deserialize)]
struct RawBucket {
    name: String,
}

#[derive(Debug, Deserialize)]
struct RawObject {
    key: String,
}

/// One record, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Without the `s3:` prefix, e.g. `ObjectCreated:Put`.
    pub event_name: String,
    pub bucket: String,
    /// URL-decoded.
    pub key: String,
}

impl Record {
    pub fn is_object_created(&self) -> bool {
        self.event_name.starts_with("ObjectCreated:")
    }

    /// The order id if the key is a voucher, `<32 lowercase hex>.pdf`.
    pub fn voucher_order_id(&self) -> Option<OrderId> {
        OrderId::from_voucher_key(&self.key)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed S3 event: {0}")]
pub struct MalformedEvent(String);

/// Parses one notification message. An empty `Records` list is valid (there
/// is simply nothing to do); a message without one is malformed.
pub fn parse(body: &[u8]) -> Result<Vec<Record>, MalformedEvent> {
    let n: Notification =
        serde_json::from_slice(body).map_err(|e| MalformedEvent(e.to_string()))?;
    n.records
        .into_iter()
        .map(|r| {
            Ok(Record {
                event_name: r
                    .event_name
                    .strip_prefix("s3:")
                    .unwrap_or(&r.event_name)
                    .to_owned(),
                bucket: r.s3.bucket.name,
                key: decode_key(&r.s3.object.key)?,
            })
        })
        .collect()
}

/// S3 event keys are form-encoded (`+` for space). RGW sends them raw; for a
/// raw key containing `%` or `+` decoding would change it, but voucher keys
/// are hex and `.pdf`, so both decode to themselves and are found either way.
fn decode_key(raw: &str) -> Result<String, MalformedEvent> {
    let plus_decoded = raw.replace('+', " ");
    percent_decode_str(&plus_decoded)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|e| MalformedEvent(format!("key is not UTF-8 once decoded: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    /// Captured shape of a MinIO AMQP notification.
    fn minio(key: &str) -> String {
        format!(
            r#"{{"EventName":"s3:ObjectCreated:Put","Key":"vouchers/{key}","Records":[{{
                "eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"",
                "eventTime":"2026-11-24T12:00:01.123Z","eventName":"s3:ObjectCreated:Put",
                "userIdentity":{{"principalId":"dropdev"}},
                "requestParameters":{{"principalId":"dropdev","region":"","sourceIPAddress":"10.0.0.7"}},
                "responseElements":{{"x-amz-id-2":"dd9025bab4ad","x-amz-request-id":"17A8D","x-minio-deployment-id":"a1","x-minio-origin-endpoint":"http://10.0.0.5:9000"}},
                "s3":{{"s3SchemaVersion":"1.0","configurationId":"Config",
                    "bucket":{{"name":"vouchers","ownerIdentity":{{"principalId":"dropdev"}},"arn":"arn:aws:s3:::vouchers"}},
                    "object":{{"key":"{key}","size":23817,"eTag":"4b0b8a3f","contentType":"application/pdf","userMetadata":{{"content-type":"application/pdf","X-Amz-Meta-Order-Created-At":"2026-11-24T12:00:00.123456Z"}},"sequencer":"17A8D"}}}},
                "source":{{"host":"10.0.0.7","port":"","userAgent":"aws-sdk-rust"}}}}]}}"#
        )
    }

    /// Captured shape of a Ceph RGW (16.2) AMQP notification.
    fn rgw(key: &str) -> String {
        format!(
            r#"{{"Records":[{{"eventVersion":"2.2","eventSource":"ceph:s3","awsRegion":"us-east-1",
                "eventTime":"2026-11-24T12:00:01.123456Z","eventName":"ObjectCreated:Put",
                "userIdentity":{{"principalId":"dev"}},"requestParameters":{{"sourceIPAddress":""}},
                "responseElements":{{"x-amz-request-id":"a1.4137.1","x-amz-id-2":"4137-default-default"}},
                "s3":{{"s3SchemaVersion":"1.0","configurationId":"voucher-events",
                    "bucket":{{"name":"vouchers","ownerIdentity":{{"principalId":"dev"}},"arn":"arn:aws:s3:us-east-1::vouchers","id":"a1.4137.1"}},
                    "object":{{"key":"{key}","size":23817,"eTag":"4b0b8a3f","versionId":"","sequencer":"41D6F56700D85A1E","metadata":[],"tags":[]}}}},
                "eventId":"1700827201.123456.4b0b8a3f","opaqueData":""}}]}}"#
        )
    }

    #[test]
    fn minio_records_parse() {
        let records = parse(minio(&format!("{ID}.pdf")).as_bytes()).expect("parses");
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.event_name, "ObjectCreated:Put");
        assert!(r.is_object_created());
        assert_eq!(r.bucket, "vouchers");
        assert_eq!(
            r.voucher_order_id().map(|id| id.as_str().to_owned()),
            Some(ID.to_owned())
        );
    }

    #[test]
    fn rgw_records_parse() {
        let records = parse(rgw(&format!("{ID}.pdf")).as_bytes()).expect("parses");
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.event_name, "ObjectCreated:Put");
        assert!(r.is_object_created());
        assert_eq!(r.bucket, "vouchers");
        assert_eq!(
            r.voucher_order_id().map(|id| id.as_str().to_owned()),
            Some(ID.to_owned())
        );
    }

    #[test]
    fn keys_are_url_decoded() {
        let records =
            parse(minio("monthly+report%20%C3%A9t%C3%A9.pdf").as_bytes()).expect("parses");
        assert_eq!(records[0].key, "monthly report été.pdf");
        assert_eq!(records[0].voucher_order_id(), None);
        // An encoded voucher key (a client that encodes every dot) still matches.
        let records = parse(minio(&format!("{ID}%2Epdf")).as_bytes()).expect("parses");
        assert_eq!(
            records[0]
                .voucher_order_id()
                .map(|id| id.as_str().to_owned()),
            Some(ID.to_owned())
        );
    }

    #[test]
    fn non_voucher_keys_are_recognised() {
        for key in [
            "index.html",
            "0123456789ABCDEF0123456789ABCDEF.pdf",
            "0123456789abcdef0123456789abcdef.pdf.tmp",
            "archive/0123456789abcdef0123456789abcdef.pdf",
            "0123456789abcdef0123456789abcdef",
        ] {
            let records = parse(rgw(key).as_bytes()).expect("parses");
            assert_eq!(records[0].voucher_order_id(), None, "{key}");
        }
    }

    #[test]
    fn other_event_types_are_not_creations() {
        let body = rgw(&format!("{ID}.pdf")).replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        let records = parse(body.as_bytes()).expect("parses");
        assert!(!records[0].is_object_created());
        let body = minio(&format!("{ID}.pdf")).replace(
            "s3:ObjectCreated:Put",
            "s3:ObjectCreated:CompleteMultipartUpload",
        );
        let records = parse(body.as_bytes()).expect("parses");
        assert!(records[0].is_object_created());
    }

    #[test]
    fn several_records_in_one_message() {
        let one = rgw(&format!("{ID}.pdf"));
        let inner = one
            .trim_start_matches(r#"{"Records":["#)
            .trim_end_matches("]}");
        let two = format!(r#"{{"Records":[{inner},{inner}]}}"#);
        assert_eq!(parse(two.as_bytes()).expect("parses").len(), 2);
        assert!(parse(br#"{"Records":[]}"#).expect("parses").is_empty());
    }

    #[test]
    fn malformed_events_are_errors() {
        for body in [
            &b"not json"[..],
            br#"{"EventName":"s3:ObjectCreated:Put","Key":"vouchers/x.pdf"}"#,
            br#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#,
            br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"vouchers"},"object":{}}}]}"#,
            br#"{"Records":"nope"}"#,
            br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"v"},"object":{"key":"%FF%FE.pdf"}}}]}"#,
        ] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
