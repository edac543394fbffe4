// Unit tests of the scanner page's logic, in node (no browser, no services):
// the offline judgement against a key pair made here, the upload queue and
// its nonces, the store, and the words the clerk reads. The page itself, with
// the real server and a camera, is tested in scan.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { judgeOffline, sha256Hex } from '../src/scan/verify.js';
import { ScannerStore, MemoryStorage } from '../src/scan/store.js';
import { enqueue, flush } from '../src/scan/queue.js';
import { fromServer, fromOffline } from '../src/scan/answer.js';

const oid = () => randomBytes(16).toString('hex');

async function keyPair(kid) {
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' };
  return { kid, privateKey, jwk };
}

async function sign(key, claims) {
  return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
}

const KEY = await keyPair('k1');
const JWKS = { keys: [KEY.jwk] };
const now = Date.now();
const secs = Math.floor(now / 1000);
const nobody = () => null;
const judge = (code, over = {}) => judgeOffline(code, { jwks: JWKS, revoked: new Set(), redeemedHere: nobody, now, ...over });

test('a code signed by a published key is accepted, with its claims', async () => {
  const id = oid();
  const code = await sign(KEY, { oid: id, sku: 'SKU-1', iat: secs });
  const j = await judge(code);
  assert.equal(j.outcome, 'accepted');
  assert.equal(j.claims.oid, id);
  assert.equal(j.claims.sku, 'SKU-1');
});

test('a changed payload with the signature kept, a truncated code, garbage: invalid_code', async () => {
  const code = await sign(KEY, { oid: oid(), sku: 'SKU-1', iat: secs });
  const [h, , s] = code.split('.');
  const forged = [h, Buffer.from(JSON.stringify({ oid: oid(), sku: 'SKU-1', iat: secs })).toString('base64url'), s].join('.');
  assert.equal((await judge(forged)).outcome, 'invalid_code');
  assert.equal((await judge(code.slice(0, -5))).outcome, 'invalid_code');
  assert.equal((await judge('hello world')).outcome, 'invalid_code');
  assert.equal((await judge(`${h}.${code.split('.')[1]}`)).outcome, 'invalid_code');
});

test('a key not in the JWKS, or another key under a known kid: invalid_code', async () => {
  const other = await keyPair('k2');
  assert.equal((await judge(await sign(other, { oid: oid(), sku: 'S', iat: secs }))).outcome, 'invalid_code');
  const impostor = { ...(await keyPair('k1')) };
  assert.equal((await judge(await sign(impostor, { oid: oid(), sku: 'S', iat: secs }))).outcome, 'invalid_code');
  // After a rotation both keys are published: codes of either verify.
  const both = { keys: [KEY.jwk, other.jwk] };
  const j = await judge(await sign(other, { oid: oid(), sku: 'S', iat: secs }), { jwks: both });
  assert.equal(j.outcome, 'accepted');
});

test('a header with alg "none" or HS256 is refused', async () => {
  const payload = Buffer.from(JSON.stringify({ oid: oid(), sku: 'S', iat: secs })).toString('base64url');
  for (const alg of ['none', 'HS256']) {
    const header = Buffer.from(JSON.stringify({ alg, kid: 'k1' })).toString('base64url');
    assert.equal((await judge(`${header}.${payload}.`)).outcome, 'invalid_code', alg);
  }
});

test('claims that are not a voucher (no 32-hex oid) are invalid_code', async () => {
  assert.equal((await judge(await sign(KEY, { sku: 'S', iat: secs }))).outcome, 'invalid_code');
  assert.equal((await judge(await sign(KEY, { oid: 'ABC', sku: 'S', iat: secs }))).outcome, 'invalid_code');
});

test('cancelled by the revocations feed (the SHA-256 of the oid), before anything else', async () => {
  const id = oid();
  const code = await sign(KEY, { oid: id, sku: 'S', iat: secs, exp: secs - 10 });
  const revoked = new Set([await sha256Hex(id)]);
  const j = await judge(code, { revoked, redeemedHere: () => ({ at: 'x', scanner: 'y' }) });
  assert.equal(j.outcome, 'cancelled');
});

test('accepted here before: already_redeemed, with when and where', async () => {
  const id = oid();
  const code = await sign(KEY, { oid: id, sku: 'S', iat: secs });
  const j = await judge(code, { redeemedHere: (o) => (o === id ? { at: '2026-12-01T10:00:00Z', scanner: 'Counter 1' } : null) });
  assert.equal(j.outcome, 'already_redeemed');
  assert.equal(j.scanner, 'Counter 1');
});

test('the pickup window: nbf in the future is not_yet_valid, exp reached is expired', async () => {
  const early = await judge(await sign(KEY, { oid: oid(), sku: 'S', iat: secs, nbf: secs + 3600, exp: secs + 7200 }));
  assert.equal(early.outcome, 'not_yet_valid');
  assert.equal(early.from, new Date((secs + 3600) * 1000).toISOString());
  const late = await judge(await sign(KEY, { oid: oid(), sku: 'S', iat: secs, nbf: secs - 7200, exp: secs }));
  assert.equal(late.outcome, 'expired');
  const inside = await judge(await sign(KEY, { oid: oid(), sku: 'S', iat: secs, nbf: secs - 10, exp: secs + 10 }));
  assert.equal(inside.outcome, 'accepted');
});

test('a bare order id, or no keys cached: only the server can tell', async () => {
  assert.deepEqual(await judge(oid()), { outcome: 'unverifiable', why: 'unsigned' });
  const code = await sign(KEY, { oid: oid(), sku: 'S', iat: secs });
  assert.deepEqual(await judge(code, { jwks: null }), { outcome: 'unverifiable', why: 'no_keys' });
});

test('the store keeps its values across page loads (same storage), and merges revocations as a set', () => {
  const storage = new MemoryStorage();
  const a = new ScannerStore(storage);
  a.token = 'scn_abc';
  a.jwks = JWKS;
  a.addRevocations([{ oid_sha256: 'aa' }, { oid_sha256: 'bb' }], '2026-12-01T10:00:00Z', 1);
  a.addRevocations([{ oid_sha256: 'bb' }, { oid_sha256: 'cc' }], '2026-12-01T11:00:00Z', 2);
  a.rememberRedeemed('o1', 't1', 'Counter 1');
  const b = new ScannerStore(storage);
  assert.equal(b.token, 'scn_abc');
  assert.deepEqual(b.jwks, JWKS);
  assert.deepEqual([...b.revokedSet()].sort(), ['aa', 'bb', 'cc']);
  assert.equal(b.revocations.next, '2026-12-01T11:00:00Z');
  assert.deepEqual(b.redeemedHereFor('o1'), { at: 't1', scanner: 'Counter 1' });
  b.token = null;
  assert.equal(new ScannerStore(storage).token, null);
});

test('the queue uploads in order with each scan\'s own nonce; refusals are flagged; a network error keeps the rest', async () => {
  const store = new ScannerStore(new MemoryStorage());
  for (const n of ['n1', 'n2', 'n3']) enqueue(store, { code: `code-${n}`, nonce: n, scanned_at: '2026-12-01T10:00:00Z' });
  const sent = [];
  const answers = [
    { status: 200, body: { order_id: 'o1' } },
    { status: 409, body: { error: 'already_redeemed', redeemed_at: '2026-12-01T09:59:00Z', scanner: 'Counter 2', first_name: 'Zoë' } },
  ];
  const first = await flush(store, async (item) => {
    sent.push([item.code, item.nonce]);
    const a = answers.shift();
    if (!a) throw new TypeError('Failed to fetch');
    return a;
  });
  assert.deepEqual(sent, [['code-n1', 'n1'], ['code-n2', 'n2'], ['code-n3', 'n3']]);
  assert.deepEqual(first.uploaded.map((u) => u.nonce), ['n1']);
  assert.deepEqual(first.flagged.map((f) => [f.nonce, f.error]), [['n2', 'already_redeemed']]);
  assert.equal(first.left, 1);
  assert.deepEqual(store.queue.map((q) => q.nonce), ['n3']);
  assert.deepEqual(store.flagged.map((f) => f.answer.scanner), ['Counter 2']);

  // Back online: the one left goes with the nonce it was given when scanned.
  const again = [];
  const second = await flush(store, async (item) => {
    again.push(item.nonce);
    return { status: 200, body: {} };
  });
  assert.deepEqual(again, ['n3']);
  assert.equal(second.left, 0);
  assert.equal(store.queue.length, 0);
});

test('the queue stops at a 401 (token revoked) and at a 503, keeping every scan', async () => {
  const store = new ScannerStore(new MemoryStorage());
  enqueue(store, { code: 'c1', nonce: 'n1', scanned_at: 't' });
  enqueue(store, { code: 'c2', nonce: 'n2', scanned_at: 't' });
  const r401 = await flush(store, async () => ({ status: 401, body: { error: 'unauthorized' } }));
  assert.equal(r401.unauthorized, true);
  assert.equal(store.queue.length, 2);
  const r503 = await flush(store, async () => ({ status: 503, body: null }));
  assert.equal(r503.unauthorized, false);
  assert.equal(r503.left, 2);
  assert.equal(store.flagged.length, 0);
});

test('what the clerk reads, for each answer of the server and of the offline check', () => {
  const ok = fromServer(200, { first_name: 'Zoë', last_name: 'Ñúñez', product_name: 'Sneaker', scanner: 'Counter 1' });
  assert.deepEqual([ok.verdict, ok.title, ok.name, ok.product], ['ok', 'Hand it over', 'Zoë Ñúñez', 'Sneaker']);
  const twice = fromServer(409, { error: 'already_redeemed', redeemed_at: '2026-12-01T10:00:00Z', scanner: 'Counter 2', first_name: 'A', last_name: 'B' });
  assert.equal(twice.verdict, 'refused');
  assert.equal(twice.title, 'Already collected');
  assert.match(twice.reason, /Counter 2/);
  assert.match(twice.reason, /2026/);
  assert.equal(fromServer(410, { error: 'cancelled', cancelled_at: '2026-12-01T10:00:00Z' }).title, 'Cancelled');
  assert.equal(fromServer(409, { error: 'not_yet_valid', redeem_from: '2026-12-02T10:00:00Z' }).title, 'Not yet valid');
  assert.equal(fromServer(410, { error: 'expired', redeem_until: '2026-11-02T10:00:00Z' }).title, 'Expired');
  assert.equal(fromServer(422, { error: 'invalid_code' }).title, 'Not one of ours');
  const off = fromOffline({ outcome: 'accepted', claims: { sku: 'S' } });
  assert.deepEqual([off.verdict, off.source, off.product], ['ok', 'offline', 'S']);
  assert.equal(fromOffline({ outcome: 'invalid_code' }).verdict, 'refused');
  assert.equal(fromOffline({ outcome: 'unverifiable', why: 'unsigned' }).verdict, 'refused');
});
