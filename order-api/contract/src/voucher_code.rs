//! The code in a voucher's QR: a JWS in compact serialization (RFC 7515),
//! signed with Ed25519 (`alg: EdDSA`, RFC 8037), with a `kid` header, whose
//! claims name the order (`oid`), its SKU, when it was issued (`iat`) and,
//! when the product has a pickup window, its bounds (`nbf`, `exp`: JWT
//! registered claims, RFC 7519, so any JOSE library checks them).
//!
//! pdf-generator signs ([`SigningKey`]); order-api verifies ([`VerifyingKeys`])
//! and publishes the keys as a JWKS ([`VerifyingKeys::jwks`]). Both live here
//! so that the two services cannot disagree on the format.
//!
//! The signature is ed25519-dalek's (`verify_strict`, which also refuses the
//! small-order and non-canonical encodings RFC 8032 leaves open); base64url
//! without padding is the `base64` crate's `URL_SAFE_NO_PAD`, which refuses
//! padding and non-canonical trailing bits, so one code has one spelling.
//!
//! Parsing is strict and never says why a code failed beyond "not ours":
//! a tampered, truncated or unknown-key code is [`InvalidCode`], and the
//! error never quotes the code (it holds an order id).

use std::{collections::BTreeMap, fmt};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};

use crate::OrderId;

/// The longest code accepted, in bytes: a real one is about 250.
pub const MAX_CODE_LEN: usize = 2048;

/// What a voucher code says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherClaims {
    pub oid: OrderId,
    pub sku: String,
    /// Issued at, Unix seconds: the order's commit time.
    pub iat: i64,
    /// Not before, Unix seconds: the start of the pickup window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds: the end of the pickup window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// Why a code is not ours. Deliberately says nothing more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid voucher code")]
pub struct InvalidCode;

/// A key configuration that cannot be used. Never quotes the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidKey(String);

/// A key id: 1-64 of `A-Z a-z 0-9 _ . -`.
fn parse_kid(kid: &str) -> Result<String, InvalidKey> {
    let ok = (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(kid.to_owned())
    } else {
        Err(InvalidKey(
            "a key id is 1-64 characters of A-Z a-z 0-9 _ . -".into(),
        ))
    }
}

/// `<kid>:<base64url of 32 bytes>`.
fn parse_pair(raw: &str, what: &str) -> Result<(String, [u8; 32]), InvalidKey> {
    let (kid, key) = raw
        .trim()
        .split_once(':')
        .ok_or_else(|| InvalidKey(format!("a {what} is written <kid>:<base64url key>")))?;
    let kid = parse_kid(kid)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(key.trim())
        .map_err(|_| InvalidKey(format!("the {what} of key {kid:?} is not base64url")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| InvalidKey(format!("the {what} of key {kid:?} is not 32 bytes")))?;
    Ok((kid, bytes))
}

/// The key pdf-generator signs with. Its `Debug` shows the key id only.
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// `<kid>:<base64url of the 32-byte Ed25519 private key>` (RFC 8032's
    /// seed, the JWK's `d`).
    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        let (kid, seed) = parse_pair(raw, "private key")?;
        Ok(Self {
            kid,
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// A fresh random key, for tests and `make run`'s dev key.
    pub fn generate(kid: &str) -> Result<Self, InvalidKey> {
        let seed: [u8; 32] = rand::random();
        Ok(Self {
            kid: parse_kid(kid)?,
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The configuration form of this key, [`SigningKey::parse`]'s input. A secret.
    pub fn to_config(&self) -> String {
        format!(
            "{}:{}",
            self.kid,
            URL_SAFE_NO_PAD.encode(self.key.to_bytes())
        )
    }

    /// The configuration form of the public half, one entry of
    /// [`VerifyingKeys::parse`]'s input.
    pub fn public_config(&self) -> String {
        format!(
            "{}:{}",
            self.kid,
            URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
        )
    }

    /// The compact JWS of these claims.
    pub fn sign(&self, claims: &VoucherClaims) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            kid: self.kid.clone(),
            typ: Some("JWT".into()),
        };
        // Serialising these plain structs cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let claims = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// The keys a code may be signed with: the current one and the retired ones
/// whose vouchers are still out.
#[derive(Debug, Clone, Default)]
pub struct VerifyingKeys {
    keys: BTreeMap<String, ed25519_dalek::VerifyingKey>,
}

impl VerifyingKeys {
    /// A comma-separated list of `<kid>:<base64url of the 32-byte public key>`.
    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        let mut keys = BTreeMap::new();
        for entry in raw.split(',').filter(|e| !e.trim().is_empty()) {
            let (kid, bytes) = parse_pair(entry, "public key")?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| InvalidKey(format!("key {kid:?} is not an Ed25519 public key")))?;
            if keys.insert(kid.clone(), key).is_some() {
                return Err(InvalidKey(format!("key id {kid:?} is listed twice")));
            }
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The JWKS (RFC 7517) of these keys: `kty: OKP`, `crv: Ed25519` (RFC 8037).
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .keys
                .iter()
                .map(|(kid, key)| Jwk {
                    kty: "OKP",
                    crv: "Ed25519",
                    x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
                    kid: kid.clone(),
                    alg: "EdDSA",
                    key_use: "sig",
                })
                .collect(),
        }
    }

    /// The claims of a code signed by one of these keys. Time claims are
    /// returned, not judged: the caller tells "not yet" from "expired".
    pub fn verify(&self, code: &str) -> Result<VoucherClaims, InvalidCode> {
        if code.len() > MAX_CODE_LEN {
            return Err(InvalidCode);
        }
        let mut parts = code.split('.');
        let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidCode);
        };
        let header: Header = decode_json(header_b64)?;
        if header.alg != "EdDSA" {
            return Err(InvalidCode);
        }
        let key = self.keys.get(&header.kid).ok_or(InvalidCode)?;
        let signature = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| InvalidCode)?;
        let signature = Signature::from_slice(&signature).map_err(|_| InvalidCode)?;
        let signing_input = &code[..header_b64.len() + 1 + claims_b64.len()];
        key.verify_strict(signing_input.as_bytes(), &signature)
            .map_err(|_| InvalidCode)?;
        // Only a signed payload is parsed beyond its header.
        decode_json(claims_b64)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(b64: &str) -> Result<T, InvalidCode> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| InvalidCode)?;
    serde_json::from_slice(&bytes).map_err(|_| InvalidCode)
}

/// A JSON Web Key Set (RFC 7517, section 5).
#[derive(Debug, Clone, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key as a JWK (RFC 8037, section 2).
#[derive(Debug, Clone, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub key_use: &'static str,
}

/// What a scanned text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScannedCode {
    /// A signed code, verified.
    Signed(VoucherClaims),
    /// A bare order id: the QR of vouchers printed before codes were signed.
    Bare(OrderId),
}

impl ScannedCode {
    /// A bare order id, or a code verified by `keys`.
    pub fn parse(text: &str, keys: &VerifyingKeys) -> Result<Self, InvalidCode> {
        let text = text.trim();
        if let Ok(id) = OrderId::parse(text) {
            return Ok(Self::Bare(id));
        }
        keys.verify(text).map(Self::Signed)
    }

    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Signed(claims) => &claims.oid,
            Self::Bare(id) => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn claims() -> VoucherClaims {
        VoucherClaims {
            oid: OrderId::parse(ID).unwrap(),
            sku: "SNEAKER-42".into(),
            iat: 1_764_590_000,
            nbf: Some(1_764_600_000),
            exp: Some(1_764_700_000),
        }
    }

    fn pair(kid: &str) -> (SigningKey, VerifyingKeys) {
        let key = SigningKey::generate(kid).unwrap();
        let keys = VerifyingKeys::parse(&key.public_config()).unwrap();
        (key, keys)
    }

    fn b64_json(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn a_signed_code_verifies_and_has_the_documented_shape() {
        let (key, keys) = pair("k1");
        let code = key.sign(&claims());
        let parts: Vec<&str> = code.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            b64_json(parts[0]),
            serde_json::json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"})
        );
        assert_eq!(
            b64_json(parts[1]),
            serde_json::json!({"oid": ID, "sku": "SNEAKER-42", "iat": 1_764_590_000i64,
                               "nbf": 1_764_600_000i64, "exp": 1_764_700_000i64})
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
        assert_eq!(keys.verify(&code), Ok(claims()));
        // Ed25519 is deterministic: re-rendering a voucher prints the same code.
        assert_eq!(key.sign(&claims()), code);
    }

    #[test]
    fn a_window_is_optional() {
        let (key, keys) = pair("k1");
        let open = VoucherClaims {
            nbf: None,
            exp: None,
            ..claims()
        };
        let code = key.sign(&open);
        assert!(
            !b64_json(code.split('.').nth(1).unwrap())
                .as_object()
                .unwrap()
                .contains_key("exp")
        );
        assert_eq!(keys.verify(&code), Ok(open));
    }

    #[test]
    fn tampered_truncated_and_unknown_key_codes_are_invalid() {
        let (key, keys) = pair("k1");
        let code = key.sign(&claims());
        let (head, rest) = code.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();

        // Payload changed, signature kept.
        let mut forged = claims();
        forged.oid = OrderId::parse("fedcba9876543210fedcba9876543210").unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            keys.verify(&format!("{head}.{forged_payload}.{sig}")),
            Err(InvalidCode)
        );

        // Truncated anywhere.
        for cut in [1, 10, code.len() / 2, code.len() - 1] {
            assert_eq!(keys.verify(&code[..cut]), Err(InvalidCode), "cut at {cut}");
        }
        // A flipped signature byte.
        let mut bytes = code.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keys.verify(&String::from_utf8(bytes).unwrap()),
            Err(InvalidCode)
        );

        // Signed by a key that is not listed, even under a listed kid.
        let (stranger, _) = pair("k1");
        assert_eq!(keys.verify(&stranger.sign(&claims())), Err(InvalidCode));
        let (other_kid, _) = pair("k9");
        assert_eq!(keys.verify(&other_kid.sign(&claims())), Err(InvalidCode));

        // Extra parts, empty, oversized.
        assert_eq!(keys.verify(&format!("{code}.x")), Err(InvalidCode));
        assert_eq!(keys.verify(""), Err(InvalidCode));
        assert_eq!(keys.verify(&"a".repeat(MAX_CODE_LEN + 1)), Err(InvalidCode));
        // Padding is another spelling: refused.
        assert_eq!(keys.verify(&format!("{code}=")), Err(InvalidCode));
    }

    #[test]
    fn other_algorithms_and_critical_headers_are_refused() {
        let (key, keys) = pair("k1");
        let code = key.sign(&claims());
        let (_, rest) = code.split_once('.').unwrap();
        for header in [
            serde_json::json!({"alg": "none", "kid": "k1"}),
            serde_json::json!({"alg": "HS256", "kid": "k1"}),
            serde_json::json!({"alg": "EdDSA", "kid": "k1", "crit": ["exp"]}),
            serde_json::json!({"alg": "EdDSA"}),
        ] {
            let head = URL_SAFE_NO_PAD.encode(header.to_string());
            assert_eq!(
                keys.verify(&format!("{head}.{rest}")),
                Err(InvalidCode),
                "{header}"
            );
        }
    }

    #[test]
    fn rotation_keeps_old_codes_valid() {
        let old = SigningKey::generate("2025").unwrap();
        let new = SigningKey::generate("2026").unwrap();
        let keys =
            VerifyingKeys::parse(&format!("{}, {}", new.public_config(), old.public_config()))
                .unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.verify(&old.sign(&claims())).is_ok());
        assert!(keys.verify(&new.sign(&claims())).is_ok());
        let jwks = serde_json::to_value(keys.jwks()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["2025", "2026"]);
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "a private part is published"
        );
    }

    #[test]
    fn key_configuration_is_checked_and_never_printed() {
        let key = SigningKey::generate("k1").unwrap();
        let config = key.to_config();
        let secret = config.split_once(':').unwrap().1.to_owned();
        let again = SigningKey::parse(&config).unwrap();
        assert_eq!(again.public_config(), key.public_config());
        assert!(!format!("{again:?}").contains(&secret));
        for bad in ["", "k1", "k1:", "k1:abc", ":AAAA", "k 1:AAAA", "k1:!!!!"] {
            let err = SigningKey::parse(bad).unwrap_err();
            assert!(!err.to_string().contains("!!!!"), "{err}");
            assert!(VerifyingKeys::parse(&format!("{bad},")).is_err() || bad.is_empty());
        }
        assert!(
            VerifyingKeys::parse(&format!("{},{}", key.public_config(), key.public_config()))
                .is_err()
        );
        assert!(VerifyingKeys::parse("").unwrap().is_empty());
    }

    #[test]
    fn a_bare_order_id_is_a_legacy_code() {
        let (key, keys) = pair("k1");
        assert_eq!(
            ScannedCode::parse(ID, &keys),
            Ok(ScannedCode::Bare(OrderId::parse(ID).unwrap()))
        );
        let signed = ScannedCode::parse(&key.sign(&claims()), &keys).unwrap();
        assert_eq!(signed.order_id().as_str(), ID);
        assert_eq!(ScannedCode::parse("ABC", &keys), Err(InvalidCode));
        // Signed codes need keys: none configured verifies nothing.
        assert_eq!(
            ScannedCode::parse(&key.sign(&claims()), &VerifyingKeys::default()),
            Err(InvalidCode)
        );
    }
}
