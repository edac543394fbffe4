// The scanner page at /scan: a QR from the camera (or typed) becomes one
// `POST /v1/redemptions` with a fresh nonce; the answer fills the screen,
// green or red. Without a network the code is judged here (verify.js) from
// the JWKS and the cancellations cached while online, accepted scans are
// queued with their nonce (queue.js) and uploaded once the network is back.
import { ScannerStore, MemoryStorage } from './store.js';
import { judgeOffline } from './verify.js';
import { enqueue, flush } from './queue.js';
import { fromServer, fromOffline, when } from './answer.js';
import { startCamera } from './camera.js';
import { jsonBody } from '../http.js';

/** An online answer slower than this is given up for the offline judgement. */
const ONLINE_TIMEOUT_MS = 3000;
const REFRESH_MS = 60_000;
const UPLOAD_MS = 5000;
/** After "Next customer", the camera ignores the code just shown for this long. */
const SAME_CODE_QUIET_MS = 2500;

const $ = (id) => document.getElementById(id);

function localStorageOrMemory() {
  try {
    const s = window.localStorage;
    s.getItem('drop.scanner.probe');
    return s;
  } catch {
    return new MemoryStorage();
  }
}

const store = new ScannerStore(localStorageOrMemory());
const state = {
  busy: false,
  showing: false,
  lastCode: null,
  lastDismissed: 0,
  timers: [],
  camera: null,
  uploading: false,
  /**
   * `online` once a request got an HTTP answer, `offline` once one failed to
   * get any. Not navigator.onLine: a device on a Wi-Fi whose uplink is down
   * says it is online, and one with only a loopback says it is not.
   */
  net: 'unknown',
};

// ------------------------------------------------------------------ HTTP

async function api(method, path, { body, token, timeoutMs } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let timer = null;
  if (timeoutMs) {
    const ctrl = new AbortController();
    init.signal = ctrl.signal;
    timer = setTimeout(() => ctrl.abort(), timeoutMs);
  }
  try {
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      state.net = 'offline';
      throw e;
    }
    state.net = 'online';
    return { status: res.status, body: await jsonBody(res) };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

const redeem = (item, timeoutMs) =>
  api('POST', '/v1/redemptions', { body: { code: item.code, nonce: item.nonce }, token: store.token, timeoutMs });

// ------------------------------------------------------------------ view

function setNet() {
  const el = $('net');
  el.dataset.state = state.net;
  const rev = store.revocations;
  const keys = store.jwks ? store.jwks.keys.length : 0;
  const updated = rev.at ? new Date(rev.at).toLocaleTimeString('en-GB') : 'never';
  if (state.net === 'offline') {
    el.textContent = `Offline: codes are checked by their signature and uploaded later · cancellations from ${updated}`;
  } else if (state.net === 'online') {
    el.textContent = `Online · ${keys} signing key(s) cached · cancellations updated ${updated}`;
  } else {
    el.textContent = 'Connecting…';
  }
}

function renderQueue() {
  const waiting = store.queue.length;
  const q = $('queue-status');
  q.hidden = waiting === 0;
  q.dataset.count = String(waiting);
  q.textContent = `${waiting} scan${waiting === 1 ? '' : 's'} waiting to upload`;

  const flagged = store.flagged;
  $('flagged').hidden = flagged.length === 0;
  const list = $('flagged-list');
  list.replaceChildren(
    ...flagged.map((f) => {
      const li = document.createElement('li');
      li.dataset.error = f.error;
      const said = fromServer(f.status, f.answer);
      const who = said.name ? `${said.name}: ` : '';
      li.textContent = `${who}accepted offline on ${when(f.scanned_at)}, but ${said.title.toLowerCase()}. ${said.reason}`;
      return li;
    }),
  );
}

function showAnswer(a) {
  state.showing = true;
  const box = $('result');
  box.dataset.verdict = a.verdict;
  box.dataset.outcome = a.outcome;
  box.dataset.source = a.source;
  $('result-title').textContent = a.title;
  $('result-name').textContent = a.name;
  $('result-product').textContent = a.product;
  $('result-reason').textContent = a.reason;
  box.hidden = false;
  $('next').focus();
}

function dismissAnswer() {
  state.showing = false;
  state.lastDismissed = Date.now();
  $('result').hidden = true;
  $('manual-code').value = '';
}

function showSetup(message) {
  $('scan-view').hidden = true;
  $('setup').hidden = false;
  const err = $('setup-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('token').focus();
}

// ------------------------------------------------------------------ scanning

async function handleCode(raw, fromCamera) {
  const code = String(raw).trim();
  if (!code || state.busy || state.showing || !store.token) return;
  const quiet = Date.now() - state.lastDismissed < SAME_CODE_QUIET_MS;
  if (fromCamera && quiet && code === state.lastCode) return;
  state.busy = true;
  state.lastCode = code;
  $('scanner').setAttribute('aria-busy', 'true');
  try {
    const item = { code, nonce: crypto.randomUUID(), scanned_at: new Date().toISOString() };
    let res = null;
    try {
      res = await redeem(item, ONLINE_TIMEOUT_MS);
    } catch {
      res = null; // No network (or too slow): judge it here.
    }
    if (res && res.status === 401) {
      tokenRefused();
      return;
    }
    if (res && res.status < 500 && res.status !== 429) {
      const a = fromServer(res.status, res.body);
      if (res.status === 200 && res.body) {
        store.rememberRedeemed(res.body.order_id, res.body.redeemed_at, res.body.scanner);
      }
      showAnswer(a);
      return;
    }
    const judged = await judgeOffline(code, {
      jwks: store.jwks,
      revoked: store.revokedSet(),
      redeemedHere: (oid) => store.redeemedHereFor(oid),
    });
    if (judged.outcome === 'accepted') {
      enqueue(store, item);
      store.rememberRedeemed(judged.claims.oid, item.scanned_at, 'this counter, offline');
      renderQueue();
    }
    showAnswer(fromOffline(judged));
  } finally {
    state.busy = false;
    $('scanner').setAttribute('aria-busy', 'false');
    setNet();
  }
}

/** The queue's upload; with nothing queued but no network, a cheap look for its return. */
async function uploadQueue() {
  if (state.net === 'offline' && store.queue.length === 0) {
    refreshCaches();
    return;
  }
  if (state.uploading || store.queue.length === 0 || !store.token) return;
  state.uploading = true;
  try {
    const result = await flush(store, (item) => redeem(item, 10_000));
    if (result.unauthorized) tokenRefused();
  } finally {
    state.uploading = false;
    renderQueue();
    setNet();
  }
}

async function refreshCaches() {
  try {
    const keys = await api('GET', '/v1/voucher-keys', { timeoutMs: 10_000 });
    if (keys.status === 200 && keys.body && Array.isArray(keys.body.keys)) store.jwks = keys.body;
    const since = store.revocations.next;
    const path = since ? `/v1/scanners/revocations?since=${encodeURIComponent(since)}` : '/v1/scanners/revocations';
    const rev = await api('GET', path, { token: store.token, timeoutMs: 10_000 });
    if (rev.status === 401) {
      tokenRefused();
      return;
    }
    if (rev.status === 200 && rev.body && Array.isArray(rev.body.revoked)) {
      store.addRevocations(rev.body.revoked, rev.body.next, Date.now());
    }
  } catch {
    // Offline: what is cached stands until the next try.
  } finally {
    setNet();
  }
}

function tokenRefused() {
  stopTimers();
  store.token = null;
  showSetup('This scanner token is not valid or was revoked. Ask the operator for a new one.');
}

/** Stops what runs for a token: the refresh and upload timers, and the camera. */
function stopTimers() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  if (state.camera) toggleCamera();
}

async function startScanning() {
  $('setup').hidden = true;
  $('scan-view').hidden = false;
  renderQueue();
  setNet();
  stopTimers();
  state.timers.push(setInterval(refreshCaches, REFRESH_MS), setInterval(uploadQueue, UPLOAD_MS));
  await refreshCaches();
  uploadQueue();
}

/**
 * The camera runs from the clerk's tap until the next one: browsers grant
 * camera access more readily to a gesture, and a counter between customers
 * need not keep reading whatever is in front of it.
 */
async function toggleCamera() {
  const button = $('camera-toggle');
  const status = $('camera-status');
  if (state.camera) {
    state.camera();
    state.camera = null;
    $('camera').hidden = true;
    button.textContent = 'Start camera';
    status.textContent = 'The camera is off.';
    status.dataset.state = 'off';
    return;
  }
  button.disabled = true;
  try {
    $('camera').hidden = false;
    state.camera = await startCamera($('camera'), {
      onCode: (text) => handleCode(text, true),
      isPaused: () => state.busy || state.showing || $('scan-view').hidden,
    });
    button.textContent = 'Stop camera';
    status.textContent = 'Hold the voucher\u2019s QR code in front of the camera.';
    status.dataset.state = 'running';
  } catch (e) {
    $('camera').hidden = true;
    status.textContent = `No camera (${e && e.name ? e.name : 'unavailable'}): type or paste the code below.`;
    status.dataset.state = 'unavailable';
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ start

function main() {
  $('setup-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (!token) {
      showSetup('Enter the scanner token.');
      return;
    }
    store.token = token;
    $('token').value = '';
    startScanning();
  });
  $('manual-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    handleCode($('manual-code').value, false);
  });
  $('next').addEventListener('click', dismissAnswer);
  $('camera-toggle').addEventListener('click', toggleCamera);
  $('flagged-clear').addEventListener('click', () => {
    store.flagged = [];
    renderQueue();
  });
  $('forget-token').addEventListener('click', () => {
    stopTimers();
    store.token = null;
    showSetup('');
  });
  // A hint only (see state.net): the next request tells.
  window.addEventListener('online', () => refreshCaches().then(uploadQueue));
  $('scanner').setAttribute('aria-busy', 'false');
  if (store.token) startScanning();
  else showSetup('');
}

main();
