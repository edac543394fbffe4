// Shared by the browser tests. dev/browser-test.sh sets the environment:
// BASE_URL (order-api), ADMIN_TOKEN, PDF_GENERATOR_PID, ARTIFACTS_DIR, and the
// stack's AMQP_URL / STOMP_* variables.
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes, randomInt } from 'node:crypto';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { PDFDocument } from 'pdf-lib';
import assert from 'node:assert/strict';
import { before, after } from 'node:test';

export const BASE_URL = required('BASE_URL');
export const ADMIN_TOKEN = required('ADMIN_TOKEN');
export const ARTIFACTS_DIR =
  process.env.ARTIFACTS_DIR || join(dirname(fileURLToPath(import.meta.url)), '../../../artifacts/browser');
/** Long enough for a cold pdf-generator on a busy 2-core machine; a correct run is far quicker. */
export const VOUCHER_TIMEOUT_MS = 90_000;

export function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests through dev/browser-test.sh`);
  return v;
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Root in a container: Chromium's sandbox needs user namespaces it may not have.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/**
 * One Chromium for the calling test file: launched before its tests, closed
 * after them. Call at the file's top level; use the result's `newContext`.
 */
export function sharedBrowser() {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });
  return { newContext: (options) => browser.newContext(options) };
}

export function uniqueSku(prefix = 'BT') {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** A valid Finnish mobile number nobody else in this run uses. */
export function uniquePhone() {
  return `+358 40 ${String(randomInt(0, 10_000_000)).padStart(7, '0')}`;
}

export async function putProduct(sku, name, stock) {
  const res = await fetch(`${BASE_URL}/v1/products/${sku}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name, stock }),
  });
  assert.ok(res.status === 200 || res.status === 201, `PUT product: HTTP ${res.status} ${await res.text()}`);
}

/** Reserves a unit as another customer, through the API. */
export async function reserveViaApi(sku, phone = uniquePhone()) {
  const res = await fetch(`${BASE_URL}/v1/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sku, first_name: 'Other', last_name: 'Customer', phone }),
  });
  const body = await res.json();
  assert.equal(res.status, 201, `reserve via API: ${JSON.stringify(body)}`);
  return body.order_id;
}

export async function getOrder(orderId) {
  const res = await fetch(`${BASE_URL}/v1/orders/${orderId}`);
  assert.equal(res.status, 200);
  return res.json();
}

export async function openPage(context, sku) {
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(`${BASE_URL}/?sku=${encodeURIComponent(sku)}`);
  return page;
}

/** Live updates are on: the stock subscription is confirmed by the broker. */
export async function waitLive(page) {
  await page.locator('#live[data-state="connected"]').waitFor();
}

export async function fillForm(page, { first = 'Zoë', last = 'Ñúñez', phone = uniquePhone() } = {}) {
  await page.getByLabel('First name').fill(first);
  await page.getByLabel('Last name').fill(last);
  await page.getByLabel('Phone number').fill(phone);
  return phone;
}

export async function submit(page) {
  await page.getByRole('button', { name: 'Reserve' }).click();
}

export async function screenshot(page, name) {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS_DIR, `${name}.png`), fullPage: true });
}

/**
 * Follows the voucher link the way the browser does and checks the file.
 *
 * A click navigates through order-api's 302 to the presigned object URL; the
 * browser must get a 200 application/pdf there (headless Chromium then shows
 * it in its PDF viewer instead of raising a download event). The bytes are
 * fetched through the same browser context's HTTP client (same redirect),
 * saved under artifacts/ and parsed as a PDF.
 */
export async function downloadVoucher(page, name) {
  const link = page.getByRole('link', { name: 'Download your voucher (PDF)' });
  const href = await link.getAttribute('href');
  const voucherUrl = new URL(href, page.url()).toString();
  const orderId = href.match(/^\/v1\/orders\/([0-9a-f]{32})\/voucher$/)[1];
  const bytes = Buffer.from(await (async () => {
    const res = await page.request.get(voucherUrl);
    assert.equal(res.status(), 200, `GET ${href} (after redirects): HTTP ${res.status()}`);
    assert.match(res.headers()['content-type'] || '', /^application\/pdf/);
    return res.body();
  })());
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  await writeFile(join(ARTIFACTS_DIR, `${name}.pdf`), bytes);
  await assertPdf(bytes);

  const [response] = await Promise.all([
    // order-api's 302 leads to the object <order_id>.pdf in the voucher bucket.
    page.waitForResponse((r) => new URL(r.url()).pathname.endsWith(`/${orderId}.pdf`)),
    link.click(),
  ]);
  assert.equal(response.status(), 200, `the browser followed the link to HTTP ${response.status()}`);
  assert.match(response.headers()['content-type'] || '', /^application\/pdf/);
  return bytes;
}

export async function assertPdf(bytes) {
  assert.ok(bytes.length > 100, `a PDF of ${bytes.length} bytes`);
  assert.equal(bytes.subarray(0, 5).toString('latin1'), '%PDF-', 'starts with the %PDF- header');
  assert.match(bytes.subarray(-64).toString('latin1'), /%%EOF\s*$/, 'ends with the %%EOF trailer');
  const doc = await PDFDocument.load(bytes);
  assert.ok(doc.getPageCount() >= 1, 'has at least one page');
  const { width, height } = doc.getPage(0).getSize();
  assert.ok(width > 0 && height > 0, 'its first page has a size');
}

export async function saveJson(name, value) {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  await writeFile(join(ARTIFACTS_DIR, name), JSON.stringify(value, null, 2));
}
