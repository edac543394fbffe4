// The full flow: open the page, reserve, see the voucher link pushed over
// Web-STOMP, download it, and get a valid PDF.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE_URL, VOUCHER_TIMEOUT_MS, sharedBrowser, uniqueSku, putProduct, openPage, waitLive,
  fillForm, submit, screenshot, downloadVoucher, getOrder,
} from './helpers.mjs';

const browser = sharedBrowser();

test('full flow: reserve, voucher link appears, the download is a valid PDF', async () => {
  const sku = uniqueSku('FLOW');
  await putProduct(sku, 'Limited sneaker', 5);
  const context = await browser.newContext({ acceptDownloads: true });
  const requests = [];
  const sockets = [];
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    page.on('request', (r) => requests.push(r.url()));
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(`${BASE_URL}/?sku=${sku}`);

    await assert.doesNotReject(page.getByRole('heading', { level: 1, name: 'Limited sneaker' }).waitFor());
    assert.equal(await page.locator('#availability').textContent(), 'In stock – reserve yours now');
    await waitLive(page);

    await fillForm(page, { first: 'Zoë', last: 'Ñúñez' });
    await submit(page);

    const orderSection = page.getByRole('region', { name: 'You have reserved one' });
    await orderSection.waitFor();
    const orderId = (await page.locator('#order-id').textContent()).trim();
    assert.match(orderId, /^[0-9a-f]{32}$/);
    assert.equal(await page.locator('#reserve').isHidden(), true, 'the form is gone after a reservation');

    const link = page.getByRole('link', { name: 'Download your voucher (PDF)' });
    await link.waitFor({ timeout: VOUCHER_TIMEOUT_MS });
    assert.equal(await link.getAttribute('href'), `/v1/orders/${orderId}/voucher`);
    assert.equal(await page.locator('#order-status').textContent(), 'Your voucher is ready.');
    assert.equal((await getOrder(orderId)).status, 'voucher_ready');

    // Everything the page loaded came from order-api's origin; its only socket
    // is the Web-STOMP endpoint from /v1/client-config. Nothing from a CDN.
    // (A voucher that is ready when the page first asks needs no socket at
    // all; reconnect.test.mjs has the page wait on one.)
    const config = await (await fetch(`${BASE_URL}/v1/client-config`)).json();
    assert.ok(requests.length >= 4, `requests seen: ${requests.join(', ')}`);
    for (const url of requests) assert.ok(url.startsWith(`${BASE_URL}/`), `loaded from elsewhere: ${url}`);
    for (const url of new Set(sockets)) assert.equal(url, config.stomp_url, 'a socket to elsewhere');

    await screenshot(page, 'flow-voucher-ready');
    await downloadVoucher(page, `flow-voucher`);
  } finally {
    await context.close();
  }
});
