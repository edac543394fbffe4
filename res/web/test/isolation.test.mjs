// Browsers cannot stall the pipeline (issue #21): the browser side is filled
// to its connection limit and beyond (refused connections) while a drop runs,
// and every voucher still reaches the customers who are connected.
//
// The browser side is the browser user in the browsers' vhost, where
// pdf-generator's notifier publishes voucher.<id> on a login of its own (the
// vhost keeps headroom above the browser user's limit for it). For the test,
// the browser user's max-connections is lowered to what is open plus a few,
// through the management API, and put back afterwards; the same mechanism as
// the production limit (BROWSER_MAX_CONNECTIONS), at a size one machine can
// fill. A single node cannot show the other half, a memory alarm caused by
// browsers, because alarms are per node: the e2e test
// a_memory_alarm_on_the_browsers_broker_stops_only_its_announcements does,
// on a second node (docs/operations.md, "Browsers and the pipeline").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import {
  BASE_URL, VOUCHER_TIMEOUT_MS, required, uniqueSku, putProduct, reserveViaApi, getOrder,
} from './helpers.mjs';

const MGMT_URL = required('RABBITMQ_MANAGEMENT_URL');
const PDF_GENERATOR_PID = Number(required('PDF_GENERATOR_PID'));
const CUSTOMERS = 6;
const FLOOD = 12;
const BEYOND = 8;

const auth = { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` };

async function mgmt(method, path, body) {
  const res = await fetch(`${MGMT_URL}${path}`, {
    method,
    headers: { ...auth, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(res.ok, `${method} ${path}: HTTP ${res.status}`);
  return res.status === 204 ? null : res.json().catch(() => null);
}

async function browserConnectionLimit() {
  const limits = await mgmt('GET', '/api/user-limits/browser');
  return limits[0].value['max-connections'];
}

async function browserConnectionCount() {
  const all = await mgmt('GET', '/api/connections?columns=user');
  return all.filter((c) => c.user === 'browser').length;
}

/**
 * A Web-STOMP session as the page opens it (no credentials, the browsers'
 * vhost). Resolves to the client once CONNECTED, or to null when the broker
 * refuses it.
 */
function open(config) {
  return new Promise((resolve) => {
    let settled = false;
    const client = new Client({
      webSocketFactory: () => new WebSocket(config.stomp_url, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
      connectHeaders: { host: config.stomp_vhost },
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
    });
    const done = (value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (value === null) client.deactivate();
      resolve(value);
    };
    const timer = setTimeout(() => done(null), 15_000);
    client.onConnect = () => done(client);
    client.onStompError = () => done(null);
    client.onWebSocketClose = () => done(null);
    client.activate();
  });
}

/** Subscribes as the page does; resolves once the broker confirms it. */
function watchVoucher(client, orderId, onMessage) {
  return new Promise((resolve) => {
    const receipt = `r-${orderId.slice(-8)}`;
    client.watchForReceipt(receipt, resolve);
    client.subscribe(`/exchange/amq.topic/voucher.${orderId}`, (msg) => onMessage(JSON.parse(msg.body)), {
      receipt,
      exclusive: 'true',
    });
  });
}

test('a browser flood at the connection limit does not stop vouchers', async () => {
  const config = await (await fetch(`${BASE_URL}/v1/client-config`)).json();
  const sku = uniqueSku('ISO');
  await putProduct(sku, 'Isolation tee', CUSTOMERS * 2);
  const original = await browserConnectionLimit();
  const sessions = [];
  process.kill(PDF_GENERATOR_PID, 'SIGSTOP');
  let paused = true;
  try {
    // A drop: customers reserve while pdf-generator waits, and each opens the
    // page's connection for their voucher.
    const received = new Map();
    const orders = [];
    for (let i = 0; i < CUSTOMERS; i += 1) orders.push(await reserveViaApi(sku));
    for (const orderId of orders) {
      const client = await open(config);
      assert.ok(client, 'a customer connects');
      sessions.push(client);
      await watchVoucher(client, orderId, (body) => {
        if (body.order_id === orderId && body.status === 'voucher_ready') received.set(orderId, body);
      });
    }

    // The browser side fills up: the limit is what is open now plus FLOOD.
    const limit = (await browserConnectionCount()) + FLOOD;
    await mgmt('PUT', '/api/user-limits/browser/max-connections', { value: limit });
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < FLOOD + BEYOND; i += 1) {
      const flood = await open(config);
      if (flood) {
        accepted += 1;
        sessions.push(flood);
      } else {
        refused += 1;
      }
    }
    assert.ok(refused >= BEYOND, `connections beyond the limit are refused (${accepted} accepted, ${refused} refused)`);
    assert.ok(accepted <= FLOOD, `no more than the limit is accepted (${accepted})`);
    const refusedNow = await open(config);
    assert.equal(refusedNow, null, 'the browser side is full');

    // Meanwhile the shop keeps taking orders, and the pipeline runs.
    const more = [];
    for (let i = 0; i < CUSTOMERS; i += 1) more.push(await reserveViaApi(sku));
    process.kill(PDF_GENERATOR_PID, 'SIGCONT');
    paused = false;

    const deadline = Date.now() + VOUCHER_TIMEOUT_MS;
    while (received.size < orders.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual([...received.keys()].sort(), [...orders].sort(), 'every connected customer got their voucher');
    for (const orderId of [...orders, ...more]) {
      while ((await getOrder(orderId)).status !== 'voucher_ready' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal((await getOrder(orderId)).status, 'voucher_ready', 'every order of the drop has its voucher');
    }
  } finally {
    if (paused) process.kill(PDF_GENERATOR_PID, 'SIGCONT');
    await mgmt('PUT', '/api/user-limits/browser/max-connections', { value: original });
    await Promise.all(sessions.map((c) => c.deactivate()));
  }
});
