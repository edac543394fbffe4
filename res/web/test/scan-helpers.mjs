// For the scanner page's tests: scanners, vouchers made by the real
// pipeline, and fake camera videos rendered from them.
//
// A voucher's PDF (from pdf-generator, through order-api's redirect to the
// bucket) becomes a PNG with pdftoppm, is checked with zbarimg (the QR must
// hold a code for that order), and becomes a Y4M video with ffmpeg, which
// Chromium plays as its camera (--use-file-for-fake-video-capture).
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { ADMIN_TOKEN, ARTIFACTS_DIR, BASE_URL, VOUCHER_TIMEOUT_MS, assertPdf } from './helpers.mjs';

const run = promisify(execFile);

/** A browser whose camera plays `y4m` (and whose permission prompt says yes). */
export function launchWithCamera(y4m) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-dev-shm-usage',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-video-capture=${y4m}`,
    ],
  });
}

export async function createScanner(name) {
  const res = await fetch(`${BASE_URL}/v1/scanners`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  const body = await res.json();
  assert.equal(res.status, 201, `POST /v1/scanners: ${JSON.stringify(body)}`);
  assert.match(body.token, /^scn_[0-9a-f]{64}$/);
  return body;
}

export async function redeemViaApi(token, code, nonce = `n-${Date.now()}-${Math.random()}`) {
  const res = await fetch(`${BASE_URL}/v1/redemptions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ code, nonce }),
  });
  return { status: res.status, body: await res.json() };
}

export async function cancelViaApi(orderId) {
  const res = await fetch(`${BASE_URL}/v1/orders/${orderId}`, { method: 'DELETE' });
  const body = await res.json();
  assert.equal(res.status, 200, `DELETE order: ${JSON.stringify(body)}`);
  return body;
}

/** GET /v1/orders/{id} until `done(body)`, or fail after `timeoutMs`. */
export async function waitOrder(orderId, done, timeoutMs = VOUCHER_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let body;
  while (Date.now() < deadline) {
    const res = await fetch(`${BASE_URL}/v1/orders/${orderId}`);
    body = await res.json();
    if (res.status === 200 && done(body)) return body;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`order …${orderId.slice(-6)}: still ${JSON.stringify(body)} after ${timeoutMs} ms`);
}

/** The claims of a compact JWS, unverified (the page and the server verify). */
export function claimsOf(code) {
  return JSON.parse(Buffer.from(code.split('.')[1], 'base64url').toString('utf8'));
}

/**
 * The order's voucher as the customer gets it, its page as a PNG, and the
 * code its QR holds (read by zbarimg, not by the code under test).
 */
export async function voucherImage(orderId, name) {
  await waitOrder(orderId, (o) => o.status === 'voucher_ready');
  const res = await fetch(`${BASE_URL}/v1/orders/${orderId}/voucher`);
  assert.equal(res.status, 200, `voucher download: HTTP ${res.status}`);
  const pdf = Buffer.from(await res.arrayBuffer());
  await assertPdf(pdf);
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const pdfPath = join(ARTIFACTS_DIR, `${name}.pdf`);
  await writeFile(pdfPath, pdf);
  const base = join(ARTIFACTS_DIR, name);
  // A5 at 800 px wide: the 60 mm QR is about 320 px, as a phone held close sees it.
  await run('pdftoppm', ['-png', '-singlefile', '-scale-to-x', '800', '-scale-to-y', '-1', pdfPath, base]);
  const png = `${base}.png`;
  const { stdout } = await run('zbarimg', ['--quiet', '--raw', '-Sdisable', '-Sqrcode.enable', png]);
  const code = stdout.trim();
  assert.equal(claimsOf(code).oid, orderId, 'the QR holds a signed code for this order');
  return { png, code };
}

/** A short Y4M video of the still image, which Chromium loops as its camera. */
export async function cameraVideo(png) {
  const y4m = png.replace(/\.png$/, '.y4m');
  await run('ffmpeg', [
    '-loglevel', 'error', '-y', '-framerate', '10', '-loop', '1', '-i', png,
    // Even dimensions, 4:2:0 (what Chromium's Y4M reader takes), on white.
    '-vf', 'scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p', '-frames:v', '10', y4m,
  ]);
  return y4m;
}

/** Forges `code`: another order's claims under the original signature. */
export function forge(code, oid) {
  const [header, , signature] = code.split('.');
  const claims = { ...claimsOf(code), oid };
  return [header, Buffer.from(JSON.stringify(claims)).toString('base64url'), signature].join('.');
}

/** Opens /scan and enters the scanner token. */
export async function openScanner(context, token) {
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(`${BASE_URL}/scan`);
  await page.getByLabel('Scanner token').fill(token);
  await page.getByRole('button', { name: 'Save token' }).click();
  await page.locator('#scan-view').waitFor();
  // Keys and cancellations are cached before the first scan.
  await page.locator('#net[data-state="online"]', { hasText: /[1-9]\d* signing key/ }).waitFor();
  return page;
}

/** The answer on screen, once there is one: its verdict, outcome and words. */
export async function answerOn(page) {
  const box = page.locator('#result');
  await box.waitFor({ state: 'visible' });
  return {
    verdict: await box.getAttribute('data-verdict'),
    outcome: await box.getAttribute('data-outcome'),
    source: await box.getAttribute('data-source'),
    title: (await page.locator('#result-title').textContent()).trim(),
    name: (await page.locator('#result-name').textContent()).trim(),
    reason: (await page.locator('#result-reason').textContent()).trim(),
  };
}

/** "Next customer": the answer goes, and the scanner reads again. */
export async function nextCustomer(page) {
  await page.getByRole('button', { name: 'Next customer' }).click();
  await page.locator('#result').waitFor({ state: 'hidden' });
}

export async function startCamera(page) {
  await page.getByRole('button', { name: 'Start camera' }).click();
  await page.locator('#camera-status[data-state="running"]').waitFor();
}
