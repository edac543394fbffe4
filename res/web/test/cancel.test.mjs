// The customer page's later life of an order: "cancel my reservation" with
// its confirmation (DELETE /v1/orders/{id}), the unit back on sale at once,
// the phone free to reserve again; and an order collected at the counter
// shown as collected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  VOUCHER_TIMEOUT_MS, sharedBrowser, uniqueSku, uniquePhone, putProduct, openPage, waitLive, fillForm,
  submit, screenshot, getOrder,
} from './helpers.mjs';
import { createScanner, redeemViaApi } from './scan-helpers.mjs';

const browser = sharedBrowser();

async function reserveOnPage(page, phone) {
  await waitLive(page);
  await fillForm(page, { phone });
  await submit(page);
  await page.getByRole('heading', { name: 'You have reserved one' }).waitFor();
  return (await page.locator('#order-id').textContent()).trim();
}

test('cancel: asks first, "keep it" keeps it; "yes" cancels, the unit is back on sale, the phone may reserve again', async () => {
  const sku = uniqueSku('CANCEL');
  await putProduct(sku, 'Last pair', 1);
  const context = await browser.newContext();
  try {
    const page = await openPage(context, sku);
    const phone = uniquePhone();
    const orderId = await reserveOnPage(page, phone);
    await page.getByRole('link', { name: 'Download your voucher (PDF)' }).waitFor({ timeout: VOUCHER_TIMEOUT_MS });
    await page.locator('#availability[data-state="sold_out"]').waitFor();

    // The confirmation: nothing happens until it is answered yes.
    await page.getByRole('button', { name: 'Cancel my reservation' }).click();
    const dialog = page.getByRole('alertdialog', { name: 'Cancel this reservation?' });
    await dialog.waitFor();
    await screenshot(page, 'cancel-confirm');
    await dialog.getByRole('button', { name: 'No, keep it' }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal((await getOrder(orderId)).status, 'voucher_ready');
    assert.equal(await page.getByRole('link', { name: 'Download your voucher (PDF)' }).isVisible(), true);

    await page.getByRole('button', { name: 'Cancel my reservation' }).click();
    await dialog.getByRole('button', { name: 'Yes, cancel it' }).click();
    await page.getByRole('heading', { name: 'Reservation cancelled' }).waitFor();
    assert.match(await page.locator('#order-status').textContent(), /^Cancelled on .+\. The unit went back on sale/);
    assert.equal(await page.locator('#voucher').isHidden(), true, 'no voucher link for a cancelled order');
    assert.equal(await page.getByRole('button', { name: 'Cancel my reservation' }).isHidden(), true);
    const order = await getOrder(orderId);
    assert.equal(order.status, 'cancelled');
    assert.ok(order.cancelled_at, 'cancelled_at is set');

    // Back on sale, told over stock.<sku>; the same phone reserves again.
    await page.locator('#availability[data-state="available"]').waitFor();
    await screenshot(page, 'cancel-done');
    const again = await reserveOnPage(page, phone);
    assert.notEqual(again, orderId);
    assert.ok(['reserved', 'voucher_ready'].includes((await getOrder(again)).status));
  } finally {
    await context.close();
  }
});

test('an order collected at the counter shows as collected, and can no longer be cancelled', async () => {
  const sku = uniqueSku('COLLECT');
  await putProduct(sku, 'Collected sneaker', 3);
  const scanner = await createScanner('Counter 9');
  const context = await browser.newContext();
  try {
    const page = await openPage(context, sku);
    const orderId = await reserveOnPage(page, uniquePhone());
    await page.getByRole('link', { name: 'Download your voucher (PDF)' }).waitFor({ timeout: VOUCHER_TIMEOUT_MS });
    // Collected while the page is open: its cancel answer is 409 already_redeemed.
    const bare = await redeemViaApi(scanner.token, orderId);
    assert.equal(bare.status, 200, JSON.stringify(bare.body));
    await page.getByRole('button', { name: 'Cancel my reservation' }).click();
    await page.getByRole('button', { name: 'Yes, cancel it' }).click();
    await page.getByRole('heading', { name: 'Collected', exact: true }).waitFor();
    assert.match(await page.locator('#message').textContent(), /already collected/);
    assert.equal((await getOrder(orderId)).status, 'redeemed');

    // A reload asks the API: still collected, with the time.
    await page.reload();
    await page.getByRole('heading', { name: 'Collected', exact: true }).waitFor();
    assert.match(await page.locator('#order-status').textContent(), /^You collected it on .+\. Enjoy!$/);
    assert.equal(await page.getByRole('button', { name: 'Cancel my reservation' }).isHidden(), true);
    await screenshot(page, 'collected');
  } finally {
    await context.close();
  }
});
