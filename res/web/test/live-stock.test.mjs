// Live stock: two pages are open on a product with 2 units; when the other
// page takes the last unit, the first page's form turns to "sold out" without
// a reload (stock.<sku> pushed over Web-STOMP).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  sharedBrowser, uniqueSku, putProduct, openPage, waitLive, fillForm, submit, screenshot, reserveViaApi,
} from './helpers.mjs';

const browser = sharedBrowser();

test('two pages: the second unit taken by the other page turns the first to sold out', async () => {
  const sku = uniqueSku('LIVE');
  await putProduct(sku, 'Two-unit jacket', 2);
  // Separate contexts: two customers, two browsers' worth of state.
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  try {
    const pageA = await openPage(ctxA, sku);
    const pageB = await openPage(ctxB, sku);
    await waitLive(pageA);
    await waitLive(pageB);
    let navigations = 0;
    pageA.on('framenavigated', (f) => {
      if (f === pageA.mainFrame()) navigations += 1;
    });

    // The first unit goes to someone else: one is left, both pages still sell.
    await reserveViaApi(sku);
    for (const page of [pageA, pageB]) {
      assert.equal(await page.locator('#availability').textContent(), 'In stock – reserve yours now');
      assert.equal(await page.locator('#reserve').isVisible(), true);
    }
    // A customer on page A has started filling in the form.
    await fillForm(pageA, { first: 'Aino', last: 'Virtanen' });

    // The other page takes the second, last unit.
    await fillForm(pageB, { first: 'Bea', last: 'Nieminen' });
    await submit(pageB);
    await pageB.locator('#order').waitFor();

    // Page A turns to sold out by itself: form gone, status says so.
    await pageA.locator('#availability[data-state="sold_out"]').waitFor();
    assert.equal(await pageA.locator('#availability').textContent(), 'Sold out');
    await pageA.locator('#reserve').waitFor({ state: 'hidden' });
    assert.equal(await pageA.getByRole('button', { name: 'Reserve' }).count(), 0, 'no visible Reserve button');
    assert.equal(navigations, 0, 'page A was not reloaded');
    // Page B keeps its reservation and also knows the product is sold out.
    await pageB.locator('#availability[data-state="sold_out"]').waitFor();
    assert.equal(await pageB.locator('#order').isVisible(), true);

    await screenshot(pageA, 'live-stock-page-a-sold-out');
    await screenshot(pageB, 'live-stock-page-b-reserved');
  } finally {
    await ctxA.close();
    await ctxB.close();
  }
});
