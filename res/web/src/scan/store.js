// What the scanner keeps across reloads and outages, in localStorage (or any
// object with getItem/setItem/removeItem, which the unit tests pass): the
// scanner token, the cached JWKS, the revocations feed's set and cursor, the
// orders this scanner accepted, the upload queue and the flagged scans.
//
// Each is one JSON value under its own key. A full or disabled storage is
// survived: the page keeps the value in memory for as long as it is open.

const PREFIX = 'drop.scanner.';
/** Most orders remembered as accepted here; the oldest are dropped first. */
export const MAX_REDEEMED_HERE = 20_000;

export class ScannerStore {
  constructor(storage) {
    this.storage = storage;
    this.memory = new Map();
  }

  read(name, fallback) {
    if (this.memory.has(name)) return this.memory.get(name);
    let value = fallback;
    try {
      const raw = this.storage.getItem(PREFIX + name);
      if (raw !== null) value = JSON.parse(raw);
    } catch {
      value = fallback;
    }
    this.memory.set(name, value);
    return value;
  }

  write(name, value) {
    this.memory.set(name, value);
    try {
      if (value === null) this.storage.removeItem(PREFIX + name);
      else this.storage.setItem(PREFIX + name, JSON.stringify(value));
    } catch {
      // Quota or disabled storage: the in-memory copy stands.
    }
  }

  get token() {
    const t = this.read('token', null);
    return typeof t === 'string' && t ? t : null;
  }

  set token(value) {
    this.write('token', value || null);
  }

  get jwks() {
    const j = this.read('jwks', null);
    return j && Array.isArray(j.keys) ? j : null;
  }

  set jwks(value) {
    this.write('jwks', value);
  }

  /** `{hashes: [...], next: "<RFC 3339>"|null, at: <ms>}` */
  get revocations() {
    const r = this.read('revocations', null);
    return r && Array.isArray(r.hashes) ? r : { hashes: [], next: null, at: null };
  }

  /** Adds a feed page's entries to the set and moves the cursor. */
  addRevocations(entries, next, at) {
    const set = new Set(this.revocations.hashes);
    for (const e of entries) if (e && typeof e.oid_sha256 === 'string') set.add(e.oid_sha256);
    this.write('revocations', { hashes: [...set], next: next || null, at });
    return set;
  }

  revokedSet() {
    return new Set(this.revocations.hashes);
  }

  /** `{oid: {at, scanner}}`, insertion-ordered. */
  get redeemedHere() {
    const r = this.read('redeemed', null);
    return r && typeof r === 'object' ? r : {};
  }

  rememberRedeemed(oid, at, scanner) {
    const all = { ...this.redeemedHere, [oid]: { at, scanner } };
    const keys = Object.keys(all);
    for (const k of keys.slice(0, Math.max(0, keys.length - MAX_REDEEMED_HERE))) delete all[k];
    this.write('redeemed', all);
  }

  redeemedHereFor(oid) {
    return this.redeemedHere[oid] || null;
  }

  get queue() {
    const q = this.read('queue', []);
    return Array.isArray(q) ? q : [];
  }

  set queue(items) {
    this.write('queue', items);
  }

  get flagged() {
    const f = this.read('flagged', []);
    return Array.isArray(f) ? f : [];
  }

  set flagged(items) {
    this.write('flagged', items);
  }
}

/** An in-memory Storage, for tests and for browsers with storage turned off. */
export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }

  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }

  setItem(k, v) {
    this.map.set(k, String(v));
  }

  removeItem(k) {
    this.map.delete(k);
  }
}
