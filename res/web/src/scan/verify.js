// The offline judgement of a voucher code: what the scanner can decide with
// no network, from what it cached while it had one.
//
// The code is a JWS in compact serialization (RFC 7515) signed with Ed25519
// (`alg: EdDSA`, RFC 8037), claims `oid`, `sku`, `iat` and, with a pickup
// window, `nbf` / `exp` (docs/design.md, "Voucher lifecycle"). jose's
// `compactVerify` checks the signature against the cached JWKS
// (`createLocalJWKSet` picks the key by `kid`, refuses any other `alg` and any
// `crit` header it does not know); the claims are then checked in the
// server's order: cancelled, already redeemed (here), window.
import { compactVerify, createLocalJWKSet } from 'jose';

/** The QR of vouchers printed before codes were signed: a bare order id. */
export const BARE_ORDER_RE = /^[0-9a-f]{32}$/;

const textDecoder = new TextDecoder();

/** Hex SHA-256 of a string's UTF-8 bytes: how the revocations feed names an order. */
export async function sha256Hex(text) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Judges `code` offline.
 *
 * - `jwks`: the cached `GET /v1/voucher-keys` body (`{"keys": [...]}`), or null.
 * - `revoked`: a Set of `oid_sha256` from the revocations feed.
 * - `redeemedHere(oid)`: this scanner's own earlier acceptance of the order,
 *   `{at, scanner}`, or null.
 * - `now`: milliseconds since the epoch.
 *
 * Returns `{outcome, claims, ...}` where outcome is `accepted`,
 * `invalid_code`, `cancelled`, `already_redeemed` (with `at`, `scanner`),
 * `not_yet_valid` (with `from`), `expired` (with `until`), or `unverifiable`
 * (a bare order id, or no keys cached: only the server can tell).
 */
export async function judgeOffline(code, { jwks, revoked, redeemedHere, now = Date.now() }) {
  const text = String(code).trim();
  if (BARE_ORDER_RE.test(text)) return { outcome: 'unverifiable', why: 'unsigned' };
  if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    return { outcome: 'unverifiable', why: 'no_keys' };
  }
  let claims;
  try {
    const { payload } = await compactVerify(text, createLocalJWKSet(jwks), { algorithms: ['EdDSA'] });
    claims = JSON.parse(textDecoder.decode(payload));
  } catch {
    // A bad signature, a truncated or altered code, an unknown kid, or not a
    // JWS at all: not one of ours, never "unknown order".
    return { outcome: 'invalid_code' };
  }
  if (!claims || typeof claims !== 'object' || !BARE_ORDER_RE.test(claims.oid)) {
    return { outcome: 'invalid_code' };
  }
  if (revoked.has(await sha256Hex(claims.oid))) return { outcome: 'cancelled', claims };
  const earlier = redeemedHere(claims.oid);
  if (earlier) return { outcome: 'already_redeemed', claims, at: earlier.at, scanner: earlier.scanner };
  const seconds = now / 1000;
  if (typeof claims.nbf === 'number' && seconds < claims.nbf) {
    return { outcome: 'not_yet_valid', claims, from: new Date(claims.nbf * 1000).toISOString() };
  }
  if (typeof claims.exp === 'number' && seconds >= claims.exp) {
    return { outcome: 'expired', claims, until: new Date(claims.exp * 1000).toISOString() };
  }
  return { outcome: 'accepted', claims };
}
