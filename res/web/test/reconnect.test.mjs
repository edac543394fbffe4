// A reconnect while the voucher is generated: the voucher_ready message is
// published while the page's socket is down (so its auto-delete subscription
// loses it), and the link still appears after the page reconnects, because
// the page asks GET /v1/orders/{id} once after every (re)connect.
// And a push that is lost while the page is subscribed: the page asks again
// on its own while it waits, so the link appears all the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE_URL, VOUCHER_TIMEOUT_MS, required, sharedBrowser, uniqueSku, putProduct, waitLive, fillForm, submit,
  screenshot, downloadVoucher, getOrder,
} from './helpers.mjs';

const PDF_GENERATOR_PID = Number(required('PDF_GENERATOR_PID'));

const browser = sharedBrowser();

async function waitFor(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('a reconnect while the voucher is generated: the link still appears', async () => {
  const sku = uniqueSku('RECO');
  await putProduct(sku, 'Reconnect hoodie', 5);
  const context = await browser.newContext({ acceptDownloads: true });
  let paused = false;
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);

    // The page's Web-STOMP socket goes through a pass-through route, so the
    // test can cut it and refuse reconnects for a while.
    let blocked = false;
    const open = new Set();
    let connects = 0;
    await page.routeWebSocket(/\/ws$/, (ws) => {
      if (blocked) {
        ws.close({ code: 1011, reason: 'blocked by the test' });
        return;
      }
      connects += 1;
      ws.connectToServer();
      open.add(ws);
    });

    await page.goto(`${BASE_URL}/?sku=${sku}`);
    await waitLive(page);
    // Stock comes from order-api's event stream: no broker connection yet.
    assert.equal(connects, 0, 'no Web-STOMP socket before an order');

    // pdf-generator stops: the order waits in its queue.
    process.kill(PDF_GENERATOR_PID, 'SIGSTOP');
    paused = true;

    await fillForm(page, { first: 'Mika', last: 'Häkkinen' });
    // The page's voucher subscription reaches the broker: its receipt is
    // followed by one GET of the order (which still says "reserved").
    const checked = page.waitForResponse((r) => /\/v1\/orders\/[0-9a-f]{32}$/.test(r.url()));
    await submit(page);
    await page.locator('#order').waitFor();
    const orderId = (await page.locator('#order-id').textContent()).trim();
    assert.match(orderId, /^[0-9a-f]{32}$/);
    assert.equal((await checked).url(), `${BASE_URL}/v1/orders/${orderId}`);
    assert.equal((await getOrder(orderId)).status, 'reserved');
    // The order opened the page's one Web-STOMP socket for its voucher.
    await waitLive(page);
    assert.equal(connects, 1);

    // The socket drops and reconnects are refused.
    blocked = true;
    for (const ws of open) await ws.close({ code: 1001, reason: 'cut by the test' });
    open.clear();
    await page.locator('#live[data-state="disconnected"]').waitFor();

    // pdf-generator resumes and finishes the voucher while the page is offline:
    // the voucher_ready message is published to no one.
    process.kill(PDF_GENERATOR_PID, 'SIGCONT');
    paused = false;
    await waitFor('the voucher', async () => (await getOrder(orderId)).status === 'voucher_ready', VOUCHER_TIMEOUT_MS);
    assert.equal(await page.locator('#voucher').isHidden(), true, 'no link while offline');

    // Reconnects are let through again: the page catches up by itself.
    blocked = false;
    const link = page.getByRole('link', { name: 'Download your voucher (PDF)' });
    await link.waitFor({ timeout: VOUCHER_TIMEOUT_MS });
    assert.ok(connects >= 2, 'the page reconnected once the socket was let through');
    await waitLive(page);
    assert.equal(await link.getAttribute('href'), `/v1/orders/${orderId}/voucher`);
    await screenshot(page, 'reconnect-voucher-ready');
    await downloadVoucher(page, 'reconnect-voucher');
  } finally {
    if (paused) process.kill(PDF_GENERATOR_PID, 'SIGCONT');
    await context.close();
  }
});

test('a voucher_ready push that never arrives: the page asks again while it waits, and shows the link', async () => {
  const sku = uniqueSku('MISS');
  await putProduct(sku, 'Missed push cap', 5);
  const context = await browser.newContext();
  let paused = false;
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    // Pass-through Web-STOMP, except that no MESSAGE frame reaches the page:
    // the subscription and its receipt work, the push is lost on the way.
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((frame) => server.send(frame));
      server.onMessage((frame) => {
        if (typeof frame === 'string' && frame.startsWith('MESSAGE')) return;
        ws.send(frame);
      });
    });
    await page.goto(`${BASE_URL}/?sku=${sku}`);
    await waitLive(page);

    // The voucher waits until the page is subscribed and its GET after the
    // receipt has answered "reserved": only a later question can find it.
    const answers = [];
    page.on('response', async (r) => {
      if (/\/v1\/orders\/[0-9a-f]{32}$/.test(r.url())) answers.push((await r.json()).status);
    });
    process.kill(PDF_GENERATOR_PID, 'SIGSTOP');
    paused = true;
    await fillForm(page, { first: 'Noor', last: 'Van Dijk' });
    await submit(page);
    await page.locator('#order').waitFor();
    const orderId = (await page.locator('#order-id').textContent()).trim();
    await waitLive(page);
    // One GET before connecting, one after the subscription's receipt.
    await waitFor('the check after the receipt', async () => answers.length >= 2, 30_000);
    assert.deepEqual(answers.slice(0, 2), ['reserved', 'reserved']);
    process.kill(PDF_GENERATOR_PID, 'SIGCONT');
    paused = false;

    await waitFor('the voucher', async () => (await getOrder(orderId)).status === 'voucher_ready', VOUCHER_TIMEOUT_MS);
    const link = page.getByRole('link', { name: 'Download your voucher (PDF)' });
    await link.waitFor({ timeout: VOUCHER_TIMEOUT_MS });
    assert.equal(await link.getAttribute('href'), `/v1/orders/${orderId}/voucher`);
    // No MESSAGE frame reached the page (the route cuts them all): the link
    // came from a GET after the first two, the re-check.
    await waitFor('the re-check that found the voucher', async () => answers.includes('voucher_ready'), 10_000);
    assert.ok(answers.length >= 3, `GETs of the order: ${answers.join(', ')}`);
  } finally {
    if (paused) process.kill(PDF_GENERATOR_PID, 'SIGCONT');
    await context.close();
  }
});
