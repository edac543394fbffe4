// The form's messages: invalid fields (named), already reserved, sold out on
// submit, sold out on arrival, unknown product.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  sharedBrowser, uniqueSku, uniquePhone, putProduct, openPage, waitLive, fillForm, submit, screenshot,
  reserveViaApi,
} from './helpers.mjs';

const browser = sharedBrowser();

async function withPage(sku, fn, { blockPush = false } = {}) {
  const context = await browser.newContext();
  try {
    if (blockPush) {
      // No live updates for this page: it cannot learn of a flip by push,
      // neither from the stock event stream nor over Web-STOMP.
      await context.route(/\/v1\/products\/[^/]+\/events$/, (route) => route.abort());
      await context.routeWebSocket(/.*/, (ws) => ws.close());
    }
    const page = await openPage(context, sku);
    await fn(page);
  } finally {
    await context.close();
  }
}

test('an invalid field is named next to the field and in the alert', async () => {
  const sku = uniqueSku('MSG');
  await putProduct(sku, 'Field test', 3);
  await withPage(sku, async (page) => {
    await waitLive(page);
    await fillForm(page, { phone: '040 123' });
    await submit(page);
    const phoneError = page.locator('#phone-error');
    await phoneError.waitFor();
    assert.match(await phoneError.textContent(), /^Phone number must be in international E\.164 form/);
    assert.equal(await page.getByLabel('Phone number').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.getByLabel('First name').getAttribute('aria-invalid'), null);
    const alert = page.getByRole('alert');
    assert.match(await alert.textContent(), /Please check the field “Phone number”/);
    // Focus goes to the field to fix; the form stays for another try.
    assert.equal(await page.evaluate(() => document.activeElement.id), 'phone');
    assert.equal(await page.locator('#order').isHidden(), true);
    await screenshot(page, 'messages-invalid-phone');

    // Empty required fields are caught before any request, also named.
    await page.getByLabel('First name').fill('');
    await page.getByLabel('Phone number').fill(uniquePhone());
    await submit(page);
    await page.locator('#first_name-error').waitFor();
    assert.equal(await page.locator('#first_name-error').textContent(), 'First name is required.');
    assert.equal(await page.locator('#phone-error').isHidden(), true);
  });
});

test('already reserved: the same phone on another page', async () => {
  const sku = uniqueSku('MSG');
  await putProduct(sku, 'Once per person', 5);
  const phone = uniquePhone();
  await reserveViaApi(sku, phone);
  await withPage(sku, async (page) => {
    await waitLive(page);
    await fillForm(page, { phone });
    await submit(page);
    const alert = page.getByRole('alert');
    await page.locator('#message:not([hidden])').waitFor();
    assert.match(await alert.textContent(), /^Already reserved: this phone number already holds a reservation/);
    assert.equal(await page.getByLabel('Phone number').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.locator('#order').isHidden(), true);
    await screenshot(page, 'messages-already-reserved');
  });
});

test('sold out on submit: a page that missed the flip is told so and the form goes', async () => {
  const sku = uniqueSku('MSG');
  await putProduct(sku, 'Last one', 1);
  await withPage(
    sku,
    async (page) => {
      await page.locator('#availability[data-state="available"]').waitFor();
      await reserveViaApi(sku); // someone else takes the last unit
      await fillForm(page);
      await submit(page);
      await page.locator('#message:not([hidden])').waitFor();
      assert.match(await page.getByRole('alert').textContent(), /sold out/);
      assert.equal(await page.locator('#availability').textContent(), 'Sold out');
      assert.equal(await page.locator('#reserve').isHidden(), true);
      await screenshot(page, 'messages-sold-out-on-submit');
    },
    { blockPush: true },
  );
});

test('sold out on arrival: no form, the status says sold out', async () => {
  const sku = uniqueSku('MSG');
  await putProduct(sku, 'Gone already', 0);
  await withPage(sku, async (page) => {
    await waitLive(page);
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Gone already');
    assert.equal(await page.getByRole('status').first().textContent(), 'Sold out');
    assert.equal(await page.locator('#reserve').isHidden(), true);
    await screenshot(page, 'messages-sold-out-on-arrival');
  });
});

test('an unknown product is named as such', async () => {
  const sku = uniqueSku('NOPE');
  await withPage(sku, async (page) => {
    await page.locator('#availability[data-state="error"]').waitFor();
    assert.equal(await page.locator('#availability').textContent(), `There is no product with the code ${sku}.`);
    assert.equal(await page.locator('#reserve').isHidden(), true);
    await screenshot(page, 'messages-unknown-product');
  });
});
