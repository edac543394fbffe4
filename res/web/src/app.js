// The drop page: product and availability, the reservation form, live stock
// as Server-Sent Events from order-api (`/v1/products/<sku>/events`), the
// voucher link pushed over Web-STOMP on `voucher.<order_id>`, and the order's
// later life (collected at the counter, or cancelled with the "cancel my
// reservation" button). A visitor opens the broker connection only once they
// hold an order, and closes it once the voucher is there or the order's life
// has ended (issue #21: one broker connection per buyer, not per visitor).
// Bundled with @stomp/stompjs by esbuild (build.mjs).
import { Client } from '@stomp/stompjs';
import { jsonBody } from './http.js';

/** The product shown when the URL has no `?sku=`. */
export const DEFAULT_SKU = 'SNEAKER-42';

const SKU_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const ORDER_RE = /^[0-9a-f]{32}$/;
const FIELDS = { first_name: 'First name', last_name: 'Last name', phone: 'Phone number' };

const $ = (id) => document.getElementById(id);

const state = {
  sku: DEFAULT_SKU,
  available: null,
  orderId: null,
  voucherReady: false,
  /** `redeemed` or `cancelled` once the order's life has ended, else null. */
  final: null,
  client: null,
  brokerStarting: false,
  voucherSub: null,
  receipts: 0,
  /** The stock event stream has delivered its current value. */
  stockLive: false,
  /** The broker confirmed the voucher subscription. */
  voucherLive: false,
  /** The pending re-check of the order (see scheduleRecheck), its next delay, and
   * a count that stopRecheck bumps, so a re-check in flight then schedules no more. */
  recheckTimer: null,
  recheckDelayMs: 0,
  recheckRound: 0,
};

// ------------------------------------------------------------------ HTTP

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { accept: 'application/json', ...headers }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const json = await jsonBody(res);
  const retryAfter = Number.parseInt(res.headers.get('retry-after') || '', 10);
  return { status: res.status, body: json, retryAfter: Number.isFinite(retryAfter) ? retryAfter : null };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ view

function showMessage(text, kind = 'error', focus = false) {
  const box = $('message');
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  if (focus) box.focus();
}

function clearMessage() {
  const box = $('message');
  box.hidden = true;
  box.textContent = '';
  delete box.dataset.kind;
}

function setFieldError(field, text) {
  const input = $(field);
  const err = $(`${field}-error`);
  if (!input || !err) return;
  if (text) {
    input.setAttribute('aria-invalid', 'true');
    err.textContent = text;
    err.hidden = false;
  } else {
    input.removeAttribute('aria-invalid');
    err.textContent = '';
    err.hidden = true;
  }
}

function clearFieldErrors() {
  for (const f of Object.keys(FIELDS)) setFieldError(f, '');
}

function setAvailable(available) {
  state.available = available;
  const el = $('availability');
  el.dataset.state = available ? 'available' : 'sold_out';
  el.textContent = available ? 'In stock – reserve yours now' : 'Sold out';
  renderSections();
}

function renderSections() {
  // A cancelled order no longer holds a unit: the phone may reserve again.
  const holding = state.orderId !== null && state.final !== 'cancelled';
  $('order').hidden = state.orderId === null;
  $('reserve').hidden = holding || state.available !== true;
}

function setLive(connected) {
  const el = $('live');
  el.dataset.state = connected ? 'connected' : 'disconnected';
  el.textContent = connected ? 'Live updates on' : 'Reconnecting to live updates…';
}

const ORDER_TITLE = 'You have reserved one';
const PREPARING = 'Your voucher is being prepared. It appears here as soon as it is ready; keep this page open.';

/** Live: the stock stream is open and, while a voucher is awaited, so is its subscription. */
function renderLive() {
  const awaitingVoucher = state.orderId !== null && !state.voucherReady && !state.final;
  setLive(state.stockLive && (!awaitingVoucher || state.voucherLive));
}

function showOrder(orderId) {
  state.orderId = orderId;
  state.voucherReady = false;
  state.final = null;
  $('order-id').textContent = orderId;
  $('order-title').textContent = ORDER_TITLE;
  $('order-status').textContent = PREPARING;
  $('order').dataset.status = 'reserved';
  $('voucher').hidden = true;
  $('cancel-area').hidden = false;
  $('cancel-confirm').hidden = true;
  renderSections();
}

const when = (iso) => {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return null;
  return new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short' }).format(d);
};

/** The order was collected at the counter, or cancelled: nothing more to do with it. */
function showFinal(status, at) {
  state.final = status;
  const stamp = when(at);
  $('order').dataset.status = status;
  $('voucher').hidden = true;
  $('cancel-area').hidden = true;
  $('cancel-confirm').hidden = true;
  if (status === 'redeemed') {
    $('order-title').textContent = 'Collected';
    $('order-status').textContent = stamp ? `You collected it on ${stamp}. Enjoy!` : 'You collected it. Enjoy!';
  } else {
    $('order-title').textContent = 'Reservation cancelled';
    $('order-status').textContent = stamp
      ? `Cancelled on ${stamp}. The unit went back on sale, and your voucher no longer works.`
      : 'Cancelled. The unit went back on sale, and your voucher no longer works.';
    forgetOrder();
  }
  closeBroker();
  renderLive();
  renderSections();
}

function showVoucher() {
  if (state.voucherReady || state.final) return;
  state.voucherReady = true;
  const link = $('voucher-link');
  // Our own endpoint: it redirects to a fresh presigned URL every time, so the
  // link keeps working after the one in the message has expired.
  link.href = `/v1/orders/${state.orderId}/voucher`;
  link.setAttribute('download', `voucher-${state.orderId}.pdf`);
  $('voucher').hidden = false;
  $('order').dataset.status = 'voucher_ready';
  $('order-status').textContent = 'Your voucher is ready.';
  closeBroker();
  renderLive();
}

// ------------------------------------------------------------------ product and order

async function loadProduct() {
  let res;
  try {
    res = await api('GET', `/v1/products/${encodeURIComponent(state.sku)}`);
  } catch {
    $('availability').dataset.state = 'error';
    $('availability').textContent = 'Could not reach the shop. Reload the page to try again.';
    return false;
  }
  if (res.status === 200 && res.body) {
    $('product-name').textContent = res.body.name;
    document.title = `${res.body.name} – Drop`;
    setAvailable(Boolean(res.body.available));
    return true;
  }
  $('availability').dataset.state = 'error';
  if (res.status === 404) {
    $('product-name').textContent = 'Product not found';
    $('availability').textContent = `There is no product with the code ${state.sku}.`;
  } else {
    $('product-name').textContent = 'Product unavailable';
    $('availability').textContent = 'The shop is busy right now. Reload the page to try again.';
  }
  return false;
}

function storageKey() {
  return `drop.order.${state.sku}`;
}

function rememberOrder(orderId) {
  try {
    sessionStorage.setItem(storageKey(), orderId);
  } catch {
    // Storage may be disabled; the page still works until it is closed.
  }
}

function forgetOrder() {
  try {
    sessionStorage.removeItem(storageKey());
  } catch {
    // See rememberOrder.
  }
}

// A reservation attempt: its Idempotency-Key, made once, and the form's
// values, kept in localStorage until the shop has decided. A retry after a
// network error, a 503 or a reload sends the same key, so a reservation whose
// answer was lost comes back instead of being made twice.
function attemptStorageKey() {
  return `drop.attempt.${state.sku}`;
}

function newIdempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function storedAttempt() {
  try {
    const a = JSON.parse(localStorage.getItem(attemptStorageKey()));
    const ok = a && typeof a.key === 'string' && a.values && typeof a.values === 'object';
    return ok ? a : null;
  } catch {
    return null;
  }
}

function saveAttempt(attempt) {
  try {
    localStorage.setItem(attemptStorageKey(), JSON.stringify(attempt));
  } catch {
    // Storage may be disabled: the key then lives as long as the page.
  }
}

function clearAttempt() {
  try {
    localStorage.removeItem(attemptStorageKey());
  } catch {
    // See saveAttempt.
  }
}

/** The stored attempt if it is for these values, else a new one. */
function attemptFor(values) {
  const previous = storedAttempt();
  if (previous && Object.keys(FIELDS).every((f) => previous.values[f] === values[f])) return previous;
  return { key: newIdempotencyKey(), values };
}

const RESERVE_RETRIES = 6;

/**
 * POST /v1/orders with the attempt's key. A network error or a 503 is sent
 * again, after `Retry-After` seconds when the answer says, else after a
 * doubling backoff. Returns the first other answer, or the last failure
 * (null for a network error).
 */
async function reserveWithRetries(attempt) {
  let backoff = 1000;
  for (let tries = 0; ; tries += 1) {
    let res;
    try {
      res = await api('POST', '/v1/orders', { sku: state.sku, ...attempt.values }, {
        'Idempotency-Key': attempt.key,
      });
    } catch {
      res = null;
    }
    if ((res !== null && res.status !== 503) || tries >= RESERVE_RETRIES) return res;
    showMessage('The shop is busy; trying again…', 'info');
    const wait = res !== null && res.retryAfter !== null ? res.retryAfter * 1000 : backoff;
    await sleep(Math.min(wait, 10000));
    backoff = Math.min(backoff * 2, 8000);
  }
}

function storedOrder() {
  try {
    const id = sessionStorage.getItem(storageKey());
    return id && ORDER_RE.test(id) ? id : null;
  } catch {
    return null;
  }
}

/**
 * The push says the voucher is in the bucket. The download link goes through
 * order-api, which records the voucher from the renderer's own report, and that
 * report and the bucket's notification race: so the link appears once
 * order-api agrees, asked a few times, a quarter of a second apart.
 */
async function confirmVoucher() {
  for (let i = 0; i < 20 && state.orderId && !state.voucherReady && !state.final; i += 1) {
    await checkOrder();
    if (state.voucherReady || state.final) return;
    await sleep(250);
  }
}

/**
 * Asks once how the order stands: the voucher may be there already (a push
 * may have been missed), or the order collected or cancelled meanwhile.
 */
async function checkOrder() {
  const orderId = state.orderId;
  if (!orderId || state.final) return;
  let res;
  try {
    res = await api('GET', `/v1/orders/${orderId}`);
  } catch {
    return; // The next (re)connect asks again.
  }
  if (orderId !== state.orderId) return;
  if (res.status === 200 && res.body) {
    const { status } = res.body;
    if (status === 'voucher_ready') showVoucher();
    else if (status === 'redeemed') showFinal('redeemed', res.body.redeemed_at);
    else if (status === 'cancelled') showFinal('cancelled', res.body.cancelled_at);
  } else if (res.status === 404) {
    // A remembered order this shop does not know (e.g. a reset): start over.
    forgetOrder();
    state.orderId = null;
    closeBroker();
    renderSections();
    renderLive();
  }
}

// ------------------------------------------------------------------ stock (Server-Sent Events)

/**
 * The product's availability from order-api, pushed as `availability`
 * events, the current value first. No broker connection: order-api feeds the
 * stream from its in-process stock flag. EventSource reconnects by itself
 * when the stream ends (it does, every few minutes, by design) and is sent
 * the current value again; after a refused request it gives up, so the page
 * opens a new one.
 */
function watchStock() {
  const source = new EventSource(`/v1/products/${encodeURIComponent(state.sku)}/events`);
  source.addEventListener('availability', (event) => {
    let body;
    try {
      body = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!body || body.sku !== state.sku || typeof body.available !== 'boolean') return;
    setAvailable(body.available);
    state.stockLive = true;
    renderLive();
  });
  source.onerror = () => {
    state.stockLive = false;
    renderLive();
    if (source.readyState === EventSource.CLOSED) setTimeout(watchStock, 2000);
  };
}

// ------------------------------------------------------------------ STOMP (the voucher)

/**
 * Subscribes to `key` on amq.topic and hands each message's JSON object to
 * `onBody` (anything else is ignored). `onReceipt` runs once the broker
 * confirms the subscription. Returns the subscription.
 *
 * `exclusive` makes the queue behind the subscription this session's own:
 * RabbitMQ 3.10 makes it shared otherwise, and any session that learnt its
 * name could consume from it (issue #20).
 */
function subscribeJson(key, onBody, onReceipt) {
  const client = state.client;
  state.receipts += 1;
  const receipt = `r-${state.receipts}`;
  client.watchForReceipt(receipt, onReceipt);
  return client.subscribe(
    `/exchange/amq.topic/${key}`,
    (msg) => {
      let body;
      try {
        body = JSON.parse(msg.body);
      } catch {
        return;
      }
      if (body && typeof body === 'object') onBody(body);
    },
    { receipt, exclusive: 'true' },
  );
}

// A push can be missed for good: the notifier publishes the moment the
// voucher is stored, and order-api records it a moment later from another
// message, so a subscription confirmed in between finds neither the push nor
// the new status. While subscribed and waiting, the page therefore asks again
// after 2 s, 4 s, 8 s, ... up to once a minute: a handful of GETs for the rare
// page that needs them, and none once the voucher is there. While the socket
// is down the page does not poll: each reconnect asks once and starts again.
const RECHECK_FIRST_MS = 2000;
const RECHECK_MAX_MS = 60_000;

function scheduleRecheck() {
  stopRecheck();
  const round = state.recheckRound;
  state.recheckDelayMs = RECHECK_FIRST_MS;
  const tick = async () => {
    state.recheckTimer = null;
    if (!state.orderId || state.voucherReady || state.final) return;
    await checkOrder();
    if (round !== state.recheckRound || !state.orderId || state.voucherReady || state.final) return;
    state.recheckDelayMs = Math.min(state.recheckDelayMs * 2, RECHECK_MAX_MS);
    state.recheckTimer = setTimeout(tick, state.recheckDelayMs);
  };
  state.recheckTimer = setTimeout(tick, state.recheckDelayMs);
}

function stopRecheck() {
  if (state.recheckTimer) clearTimeout(state.recheckTimer);
  state.recheckTimer = null;
  state.recheckRound += 1;
}

/**
 * Subscribes to this order's voucher key, then asks the API once, and again
 * now and then while it waits (scheduleRecheck).
 */
function watchVoucher() {
  const client = state.client;
  if (!client || !client.connected || !state.orderId || state.voucherReady || state.final) return;
  state.voucherSub = subscribeJson(
    `voucher.${state.orderId}`,
    (body) => {
      if (body.order_id === state.orderId && body.status === 'voucher_ready') confirmVoucher();
    },
    // Subscribed: anything published from now on reaches us. What was
    // published before (while disconnected, or before the 201 arrived) is
    // found by asking the API once.
    () => {
      state.voucherLive = true;
      renderLive();
      checkOrder();
      scheduleRecheck();
    },
  );
}

/**
 * Connects to Web-STOMP without credentials: the broker logs such a CONNECT
 * in as its browser user, whose password only the broker knows, so nothing
 * the page holds is a broker login (issue #20). `host` is the browsers' vhost.
 */
function connect(config) {
  const client = new Client({
    brokerURL: config.stomp_url,
    connectHeaders: { host: config.stomp_vhost },
    reconnectDelay: 1000,
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    onConnect: () => {
      state.voucherSub = null;
      watchVoucher();
    },
    onWebSocketClose: () => {
      // The reconnect asks again (watchVoucher), and re-checks from there.
      stopRecheck();
      state.voucherLive = false;
      renderLive();
    },
    onStompError: () => {
      state.voucherLive = false;
      renderLive();
    },
  });
  state.client = client;
  client.activate();
}

/** Opens the broker connection for an order whose voucher is not there yet. */
async function openBroker() {
  if (state.client || state.brokerStarting || !state.orderId || state.voucherReady || state.final) return;
  state.brokerStarting = true;
  try {
    // A remembered order's voucher may be ready already: then no connection.
    await checkOrder();
    if (!state.orderId || state.voucherReady || state.final) return;
    let config;
    try {
      const res = await api('GET', '/v1/client-config');
      if (res.status !== 200 || !res.body) throw new Error(`client-config: HTTP ${res.status}`);
      config = res.body;
    } catch {
      $('order-status').textContent =
        'Your voucher is being prepared. Live updates are unavailable: reload the page to see it.';
      return;
    }
    if (!state.client && state.orderId && !state.voucherReady && !state.final) connect(config);
  } finally {
    state.brokerStarting = false;
  }
}

/** The voucher is there (or the order is gone): no reason to hold a connection. */
function closeBroker() {
  stopRecheck();
  const client = state.client;
  state.client = null;
  state.voucherSub = null;
  state.voucherLive = false;
  if (client) client.deactivate();
}

// ------------------------------------------------------------------ form

async function onSubmit(event) {
  event.preventDefault();
  clearMessage();
  clearFieldErrors();
  const form = $('reserve-form');
  const values = {};
  let firstInvalid = null;
  for (const [field, label] of Object.entries(FIELDS)) {
    values[field] = form.elements[field].value.trim();
    if (!values[field]) {
      setFieldError(field, `${label} is required.`);
      firstInvalid = firstInvalid || field;
    }
  }
  if (firstInvalid) {
    showMessage(`Please fill in: ${FIELDS[firstInvalid]}.`);
    $(firstInvalid).focus();
    return;
  }

  const button = $('submit');
  button.disabled = true;
  button.textContent = 'Reserving…';
  $('app').setAttribute('aria-busy', 'true');
  const attempt = attemptFor(values);
  saveAttempt(attempt);
  let res;
  try {
    res = await reserveWithRetries(attempt);
  } finally {
    button.disabled = false;
    button.textContent = 'Reserve';
    $('app').setAttribute('aria-busy', 'false');
  }
  // Decided: the next attempt gets a new key. An outage keeps this one, so
  // pressing Reserve again (or reloading) retries with the same key.
  if (res !== null && res.status !== 503) clearAttempt();
  clearMessage();
  handleOrderResponse(res);
}

function handleOrderResponse(res) {
  if (res === null) {
    showMessage('Could not reach the shop. Check your connection and try again.', 'error', true);
    return;
  }
  const code = res.body && res.body.error;
  if (res.status === 201 && res.body && ORDER_RE.test(res.body.order_id)) {
    rememberOrder(res.body.order_id);
    showOrder(res.body.order_id);
    $('reserve-form').reset();
    $('order').focus();
    renderLive();
    openBroker();
    return;
  }
  if (res.status === 409 && code === 'sold_out') {
    setAvailable(false);
    showMessage('Sorry, this product is sold out: the last unit has just been reserved.', 'error', true);
    return;
  }
  if (res.status === 409 && code === 'already_reserved') {
    setFieldError('phone', 'This phone number already holds a reservation for this product.');
    showMessage(
      'Already reserved: this phone number already holds a reservation for this product. Each person may reserve one.',
      'error',
      true,
    );
    return;
  }
  if (res.status === 422 && code === 'invalid_field' && res.body.field in FIELDS) {
    const field = res.body.field;
    const label = FIELDS[field];
    const reason = String(res.body.message || 'is not valid').replace(new RegExp(`^${field}:\\s*`), '');
    setFieldError(field, `${label} ${reason}.`);
    showMessage(`Please check the field “${label}”: it ${reason}.`);
    $(field).focus();
    return;
  }
  if (res.status === 404 && code === 'unknown_sku') {
    showMessage(`There is no product with the code ${state.sku}.`, 'error', true);
    return;
  }
  if (res.status === 503) {
    showMessage('The shop is busy right now. Please try again in a moment.', 'error', true);
    return;
  }
  const detail = res.body && res.body.message ? `: ${res.body.message}` : '';
  showMessage(`The reservation was refused${detail}.`, 'error', true);
}

// ------------------------------------------------------------------ cancel

function askCancel() {
  clearMessage();
  $('cancel-area').hidden = true;
  $('cancel-confirm').hidden = false;
  $('cancel-confirm').focus();
}

function keepOrder() {
  $('cancel-confirm').hidden = true;
  $('cancel-area').hidden = false;
  $('cancel').focus();
}

/** DELETE /v1/orders/{id}: the same answer on every repeat, so a retry is safe. */
async function confirmCancel() {
  const orderId = state.orderId;
  if (!orderId) return;
  const yes = $('cancel-yes');
  yes.disabled = true;
  yes.textContent = 'Cancelling…';
  let res;
  try {
    res = await api('DELETE', `/v1/orders/${orderId}`);
  } catch {
    res = null;
  } finally {
    yes.disabled = false;
    yes.textContent = 'Yes, cancel it';
  }
  if (orderId !== state.orderId) return;
  const code = res && res.body && res.body.error;
  if (res && res.status === 200) {
    showFinal('cancelled', res.body && res.body.cancelled_at);
    showMessage('Your reservation is cancelled.', 'info', true);
  } else if (res && res.status === 409 && code === 'already_redeemed') {
    showFinal('redeemed', res.body.redeemed_at);
    showMessage('This voucher was already collected, so it can no longer be cancelled.', 'error', true);
  } else if (res && res.status === 404) {
    forgetOrder();
    state.orderId = null;
    closeBroker();
    renderSections();
    renderLive();
    showMessage('This reservation no longer exists.', 'error', true);
  } else {
    keepOrder();
    showMessage('Could not cancel right now. Check your connection and try again.', 'error', true);
  }
}

// ------------------------------------------------------------------ start

async function main() {
  const requested = new URLSearchParams(window.location.search).get('sku');
  $('reserve-form').addEventListener('submit', onSubmit);
  $('cancel').addEventListener('click', askCancel);
  $('cancel-no').addEventListener('click', keepOrder);
  $('cancel-yes').addEventListener('click', confirmCancel);
  if (requested !== null && !SKU_RE.test(requested)) {
    $('product-name').textContent = 'Product not found';
    $('availability').dataset.state = 'error';
    $('availability').textContent = 'The product code in the address is not valid.';
    $('app').setAttribute('aria-busy', 'false');
    return;
  }
  state.sku = requested || DEFAULT_SKU;
  $('product-sku').textContent = state.sku;

  const remembered = storedOrder();
  if (remembered) showOrder(remembered);
  const attempt = storedAttempt();
  if (attempt && !remembered) {
    // An undecided attempt from before the reload: the form as it was, and
    // Reserve sends its key again.
    const form = $('reserve-form');
    for (const f of Object.keys(FIELDS)) {
      if (typeof attempt.values[f] === 'string') form.elements[f].value = attempt.values[f];
    }
  }
  const found = await loadProduct();
  $('app').setAttribute('aria-busy', 'false');
  if (!found && !remembered) return;
  setLive(false);
  $('live').textContent = 'Connecting to live updates…';
  if (found) watchStock();
  if (remembered) openBroker();
}

main();
