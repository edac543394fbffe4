// The browser user's least privilege, checked from outside with the same STOMP
// client the page uses (@stomp/stompjs over the `ws` package), connecting as
// the page does: without credentials, with the settings order-api hands out
// at /v1/client-config. The broker logs such a CONNECT in as its browser
// user, whose password nobody outside the broker knows: so a real AMQP client
// cannot log in as that user with anything the page or the API reveals.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import amqp from 'amqplib';
import { BASE_URL, required } from './helpers.mjs';

// Where pdf-generator's notifier publishes voucher.<id>: the browsers' vhost.
const FANOUT_AMQP_URL = required('FANOUT_AMQP_URL');
let config;

before(async () => {
  config = await (await fetch(`${BASE_URL}/v1/client-config`)).json();
  assert.deepEqual(Object.keys(config).sort(), ['stomp_url', 'stomp_vhost'], 'no credentials handed out');
});

/**
 * Connects, runs `action(client, receipt)` once connected, and settles with
 * "accepted" when the broker sends the RECEIPT, or "refused" when it answers
 * with an ERROR frame or drops the session (RabbitMQ may close the socket
 * before its ERROR frame leaves). `onReady` sees the client after the receipt.
 */
function attempt(action, { login = null, passcode = null, onReady } = {}) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const connectHeaders = { host: config.stomp_vhost };
    if (login !== null) Object.assign(connectHeaders, { login, passcode });
    const client = new Client({
      webSocketFactory: () => new WebSocket(config.stomp_url, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
      connectHeaders,
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
    });
    const done = async (outcome, detail = '') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ outcome, detail, client });
    };
    const timer = setTimeout(() => {
      settled = true;
      client.deactivate();
      reject(new Error('the broker neither accepted nor refused within 15 s'));
    }, 15_000);
    client.onConnect = () => {
      if (!action) {
        done('accepted', 'connected');
        return;
      }
      const receipt = `r-${randomBytes(4).toString('hex')}`;
      client.watchForReceipt(receipt, async () => {
        if (onReady) {
          try {
            await onReady(client);
          } catch (e) {
            settled = true;
            clearTimeout(timer);
            reject(e);
            return;
          }
        }
        done('accepted', 'receipt');
      });
      action(client, { receipt });
    };
    client.onStompError = (frame) => done('refused', `ERROR ${frame.headers.message || ''}`);
    client.onWebSocketClose = (evt) => done('refused', `closed ${evt.code}`);
    client.activate();
  }).then(async (r) => {
    await r.client.deactivate();
    return r;
  });
}

const subscribe = (destination, onReady) =>
  attempt((client, headers) => client.subscribe(destination, () => {}, headers), { onReady });

const refusedSubscriptions = [
  '/exchange/amq.topic/voucher.#',
  '/exchange/amq.topic/voucher.*',
  '/exchange/amq.topic/#',
  '/exchange/amq.topic/*.*',
  '/topic/voucher.#',
  `/exchange/amq.topic/voucher.${randomBytes(16).toString('hex').toUpperCase()}`,
  '/exchange/orders/#',
  '/exchange/orders/order.reserved',
  '/exchange/s3.events/voucher-events',
  '/exchange/amq.direct/x',
  '/queue/pdf-generator.orders',
  '/amq/queue/pdf-generator.orders',
  '/amq/queue/orders.dead',
  '/queue/browser-test',
];

for (const destination of refusedSubscriptions) {
  test(`refused: SUBSCRIBE ${destination}`, async () => {
    const { outcome, detail } = await subscribe(destination);
    assert.equal(outcome, 'refused', detail);
  });
}

const refusedSends = [
  `/exchange/amq.topic/voucher.${randomBytes(16).toString('hex')}`,
  '/exchange/amq.topic/stock.SNEAKER-42',
  '/exchange/orders/order.reserved',
  '/queue/browser-test',
  '/topic/voucher.x',
];

for (const destination of refusedSends) {
  test(`refused: SEND ${destination}`, async () => {
    const { outcome, detail } = await attempt((client, headers) =>
      client.publish({
        destination,
        headers,
        body: JSON.stringify({ order_id: 'x', status: 'voucher_ready', voucher_url: 'http://evil.example/' }),
      }),
    );
    assert.equal(outcome, 'refused', detail);
  });
}

test('CONNECT without credentials is accepted; the browser login with a guessed passcode is refused', async () => {
  const anonymous = await attempt(null);
  assert.equal(anonymous.outcome, 'accepted', anonymous.detail);
  for (const passcode of guesses()) {
    const wrong = await attempt(null, { login: 'browser', passcode });
    assert.equal(wrong.outcome, 'refused', `passcode ${JSON.stringify(passcode)}: ${wrong.detail}`);
  }
});

/** Every passcode the page or the API could give away, and the old public one. */
function guesses() {
  return [...new Set(['browser', 'guest', '', ...Object.values(config).map(String)])];
}

/** How an AMQP 0-9-1 login (amqplib, PLAIN) as `user` ends. */
async function amqpLogin(user, passcode, vhost) {
  const url = new URL(FANOUT_AMQP_URL);
  url.username = encodeURIComponent(user);
  url.password = encodeURIComponent(passcode);
  url.pathname = `/${encodeURIComponent(vhost)}`;
  try {
    const conn = await amqp.connect(url.toString());
    await conn.close();
    return 'accepted';
  } catch (e) {
    return `refused: ${e.message}`;
  }
}

test('refused: AMQP (5672) login as the browser user with anything the page or the API reveals', async () => {
  for (const vhost of [config.stomp_vhost, '/']) {
    for (const passcode of guesses()) {
      const outcome = await amqpLogin('browser', passcode, vhost);
      assert.match(outcome, /^refused: .*ACCESS_REFUSED/, `vhost ${vhost}, passcode ${JSON.stringify(passcode)}`);
    }
  }
  // The check is real: the publisher's own login does work there.
  const publisher = new URL(FANOUT_AMQP_URL);
  const own = await amqpLogin(decodeURIComponent(publisher.username), decodeURIComponent(publisher.password), config.stomp_vhost);
  assert.equal(own, 'accepted');
});

test('accepted: SUBSCRIBE to its own voucher.<32 hex> and receive what the app publishes there', async () => {
  const orderId = randomBytes(16).toString('hex');
  const other = randomBytes(16).toString('hex');
  const message = { order_id: orderId, status: 'voucher_ready', voucher_url: 'http://127.0.0.1:7480/vouchers/x.pdf' };
  const received = [];
  let gotIt;
  const arrived = new Promise((r) => {
    gotIt = r;
  });
  const { outcome, detail } = await attempt(
    (client, headers) =>
      client.subscribe(
        `/exchange/amq.topic/voucher.${orderId}`,
        (msg) => {
          received.push(JSON.parse(msg.body));
          gotIt();
        },
        headers,
      ),
    {
      onReady: async () => {
        // Published by the application user over AMQP into the browsers'
        // vhost, as pdf-generator's notifier does; the other order's message
        // must not arrive here.
        const conn = await amqp.connect(FANOUT_AMQP_URL);
        try {
          const ch = await conn.createConfirmChannel();
          ch.publish('amq.topic', `voucher.${other}`, Buffer.from(JSON.stringify({ ...message, order_id: other })), {
            contentType: 'application/json',
          });
          ch.publish('amq.topic', `voucher.${orderId}`, Buffer.from(JSON.stringify(message)), {
            contentType: 'application/json',
          });
          await ch.waitForConfirms();
        } finally {
          await conn.close();
        }
        await Promise.race([
          arrived,
          new Promise((_, reject) => setTimeout(() => reject(new Error('no message within 15 s')), 15_000)),
        ]);
      },
    },
  );
  assert.equal(outcome, 'accepted', detail);
  assert.deepEqual(received, [message]);
});

test('accepted: SUBSCRIBE to stock.<sku>', async () => {
  const { outcome, detail } = await subscribe('/exchange/amq.topic/stock.SNEAKER-42');
  assert.equal(outcome, 'accepted', detail);
});
