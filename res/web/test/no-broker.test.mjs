// A visitor without an order holds no broker connection (issue #21: one
// Web-STOMP connection per buyer, not per visitor) and still sees a sell-out
// within a second: the stock comes from order-api's event stream
// (GET /v1/products/{sku}/events). Checked two ways: the page's own
// WebSockets, and RabbitMQ's connection list (management API) for the
// browsers' vhost, with a buyer's page as the control that the list does see
// a page's connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  required, sharedBrowser, uniqueSku, uniquePhone, putProduct, openPage, waitLive, fillForm, submit, screenshot,
} from './helpers.mjs';

const MGMT_URL = required('RABBITMQ_MANAGEMENT_URL');
const PDF_GENERATOR_PID = Number(required('PDF_GENERATOR_PID'));
const VHOST = required('STOMP_VHOST');

const browser = sharedBrowser();

/** The browser user's connections in the browsers' vhost, by name. */
async function browserConnections() {
  const res = await fetch(`${MGMT_URL}/api/connections?columns=name,vhost,user`, {
    headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
  });
  assert.equal(res.status, 200, 'management API');
  const all = await res.json();
  return new Set(all.filter((c) => c.vhost === VHOST && c.user === 'browser').map((c) => c.name));
}

async function eventually(what, fn, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Records in the page when #availability turns to sold out (epoch ms). */
async function stampSoldOut(page) {
  await page.evaluate(() => {
    const el = document.getElementById('availability');
    new MutationObserver(() => {
      if (el.dataset.state === 'sold_out' && !window.soldOutAt) window.soldOutAt = Date.now();
    }).observe(el, { attributes: true, childList: true });
  });
}

test('a visitor without an order opens no broker connection and sees the sell-out within a second', async () => {
  const sku = uniqueSku('NOWS');
  await putProduct(sku, 'Two-unit cap', 2);
  const visitorCtx = await browser.newContext();
  const buyerCtx = await browser.newContext();
  // pdf-generator waits while the buyer's connection is looked for: a voucher
  // ready at once would close it before the broker's list shows it.
  process.kill(PDF_GENERATOR_PID, 'SIGSTOP');
  let paused = true;
  try {
    const before = await browserConnections();
    const visitor = await openPage(visitorCtx, sku);
    const sockets = [];
    visitor.on('websocket', (ws) => sockets.push(ws.url()));
    let navigations = 0;
    visitor.on('framenavigated', (f) => {
      if (f === visitor.mainFrame()) navigations += 1;
    });
    await waitLive(visitor);
    assert.equal(await visitor.locator('#availability').textContent(), 'In stock – reserve yours now');

    // The control: a buyer's page opens its one connection once it holds an
    // order, and the broker's list shows it.
    const buyer = await openPage(buyerCtx, sku);
    await waitLive(buyer);
    await fillForm(buyer, { first: 'Ilona', last: 'Kask' });
    await submit(buyer);
    await buyer.locator('#order').waitFor();
    await waitLive(buyer); // now also the voucher subscription
    const withBuyer = await eventually('the buyer page\'s connection in the list', async () => {
      const now = await browserConnections();
      return [...now].some((c) => !before.has(c)) ? now : null;
    });
    const opened = [...withBuyer].filter((c) => !before.has(c));
    assert.equal(opened.length, 1, `one new broker connection, the buyer's: ${opened}`);
    process.kill(PDF_GENERATOR_PID, 'SIGCONT');
    paused = false;

    // The last unit goes: the visitor's page says so by itself, within a second.
    await stampSoldOut(visitor);
    const res = await fetch(new URL('/v1/orders', visitor.url()), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sku, first_name: 'Last', last_name: 'Unit', phone: uniquePhone() }),
    });
    const committedAt = Date.now();
    assert.equal(res.status, 201, await res.text());
    await visitor.locator('#availability[data-state="sold_out"]').waitFor({ timeout: 5_000 });
    const soldOutAt = await visitor.evaluate(() => window.soldOutAt);
    assert.ok(soldOutAt, 'the page recorded the change');
    const lag = soldOutAt - committedAt;
    assert.ok(lag < 1000, `the sell-out reached the page ${lag} ms after the 201`);
    assert.equal(await visitor.locator('#reserve').isHidden(), true);
    assert.equal(navigations, 0, 'no reload');

    // All the while, the visitor's page held no broker connection.
    assert.deepEqual(sockets, [], 'the visitor page opened no WebSocket');
    const after = await browserConnections();
    const visitorOnes = [...after].filter((c) => !before.has(c) && !opened.includes(c));
    assert.deepEqual(visitorOnes, [], 'no broker connection but the buyer\'s');
    await screenshot(visitor, 'no-broker-visitor-sold-out');
  } finally {
    if (paused) process.kill(PDF_GENERATOR_PID, 'SIGCONT');
    await visitorCtx.close();
    await buyerCtx.close();
  }
});
