// A reservation whose answer is lost: the shop commits it, the page sees a 503
// instead (as when the connection died during COMMIT). The page must retry
// with the same Idempotency-Key after Retry-After, show the one order it got,
// and show that same order after a reload; an attempt that never got an
// answer keeps its key and its form across a reload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './helpers.mjs';

const browser = h.sharedBrowser();
const ORDER = { name: 'You have reserved one' };

/**
 * A page on a fresh product of 5 units, waiting for live updates, whose
 * POST /v1/orders go through `onPost(route, keys)`; `keys` holds each
 * request's Idempotency-Key, in order.
 */
async function routedPage(name, onPost) {
  const sku = h.uniqueSku('RETRY');
  await h.putProduct(sku, name, 5);
  const context = await browser.newContext();
  const page = await h.openPage(context, sku);
  await h.waitLive(page);
  const keys = [];
  await page.route('**/v1/orders', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    keys.push(route.request().headers()['idempotency-key']);
    return onPost(route, keys);
  });
  return { sku, context, page, keys };
}

/** What order-api answers when PostgreSQL is unavailable. */
function unavailable(route, retryAfter) {
  return route.fulfill({
    status: 503,
    headers: { 'retry-after': String(retryAfter), 'content-type': 'application/json' },
    body: JSON.stringify({ error: 'unavailable', message: 'PostgreSQL is unavailable' }),
  });
}

test('a 503 after a commit, then the retry: one order, the same after a reload', async () => {
  let committed = null;
  const { sku, context, page, keys } = await routedPage('Retried sneaker', async (route, seen) => {
    if (seen.length > 1) return route.continue();
    // The shop decides this first request; the page never sees that answer.
    const real = await route.fetch();
    assert.equal(real.status(), 201);
    committed = (await real.json()).order_id;
    return unavailable(route, 1);
  });
  try {
    await h.fillForm(page, { first: 'Aino', last: 'Virtanen' });
    await h.submit(page);

    await page.getByRole('region', ORDER).waitFor();
    const shown = (await page.locator('#order-id').textContent()).trim();
    assert.equal(keys.length, 2, 'one retry after the 503');
    assert.match(keys[0], /^[0-9a-f]{32}$/);
    assert.equal(keys[1], keys[0], 'the retry sends the same Idempotency-Key');
    assert.equal(shown, committed, 'the page shows the order the shop committed, not a second one');
    assert.equal((await h.getOrder(shown)).sku, sku);
    const left = await page.evaluate((s) => localStorage.getItem(`drop.attempt.${s}`), sku);
    assert.equal(left, null, 'a decided attempt leaves no key behind');
    await h.screenshot(page, 'retry-after-503');

    await page.reload();
    await page.getByRole('region', ORDER).waitFor();
    assert.equal((await page.locator('#order-id').textContent()).trim(), committed);
    assert.equal(await page.locator('#reserve').isHidden(), true, 'no form for a second reservation');
  } finally {
    await context.close();
  }
});

test('an attempt that never got an answer survives a reload with its key and its form', async () => {
  let down = true;
  const { context, page, keys } = await routedPage('Reloaded sneaker', (route) =>
    down ? unavailable(route, 0) : route.continue(),
  );
  try {
    const phone = await h.fillForm(page, { first: 'Mikko', last: 'Kowalski' });
    await h.submit(page);
    // Every retry fails: the page gives up and says so, keeping the attempt.
    await page.locator('#message', { hasText: 'The shop is busy right now' }).waitFor();
    assert.ok(keys.length > 1, `retried: ${keys.length} requests`);
    assert.equal(new Set(keys).size, 1, 'every retry sends the same key');

    await page.reload();
    assert.equal(await page.getByLabel('Phone number').inputValue(), phone, 'the form is kept');
    down = false;
    await h.waitLive(page);
    await h.submit(page);
    await page.getByRole('region', ORDER).waitFor();
    assert.equal(keys.at(-1), keys[0], 'after the reload, the same key');
  } finally {
    await context.close();
  }
});
