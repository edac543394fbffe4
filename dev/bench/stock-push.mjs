// dev/bench/stock-push.mjs: the two ways a visitor without an order can learn
// of a sell-out, side by side on one order-api (issue #21, "Fewer
// connections"): N clients on the Server-Sent Events stream
// (GET /v1/products/{sku}/events) against N clients polling
// GET /v1/products/{sku} at the page's interval. For each: order-api's CPU
// and memory per client while they wait, and the time from the 201 that
// takes the last unit is sent until every client knows.
//
//   node dev/bench/stock-push.mjs BASE_URL ADMIN_TOKEN ORDER_API_PID [N] [POLL_MS]
// Prints one JSON object. Run by dev/bench/stock-push.sh.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomBytes, randomInt } from 'node:crypto';

const [BASE, TOKEN, PID, N = '1000', POLL = '1000'] = process.argv.slice(2);
const CLIENTS = Number(N);
const POLL_MS = Number(POLL);
const WINDOW_MS = 10_000;
const TICK = 100; // USER_HZ on Linux
const base = new URL(BASE);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cpuSeconds() {
  const f = readFileSync(`/proc/${PID}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK; // utime + stime
}

function rssKiB() {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${PID}/status`, 'utf8'))[1]);
}

async function call(method, path, body, headers = {}) {
  const res = await fetch(new URL(path, base), {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function putStock(sku, stock) {
  const r = await call('PUT', `/v1/products/${sku}`, { name: 'Bench', stock }, { authorization: `Bearer ${TOKEN}` });
  if (r.status !== 200 && r.status !== 201) throw new Error(`PUT product: ${r.status}`);
}

async function takeLast(sku) {
  const phone = `+358 40 ${String(randomInt(0, 10_000_000)).padStart(7, '0')}`;
  // From the moment the reservation is sent: an SSE client may hear of the
  // sell-out before the 201 is back, since the flip is sent at commit.
  const sent = performance.now();
  const r = await call('POST', '/v1/orders', { sku, first_name: 'Bench', last_name: 'Last', phone });
  if (r.status !== 201) throw new Error(`POST order: ${r.status} ${JSON.stringify(r.body)}`);
  return sent;
}

/** One SSE client: resolves `ready` on the first event; records when it sees sold out. */
function sseClient(sku, agent) {
  const c = { ready: null, soldOutAt: null, req: null };
  c.ready = new Promise((resolve, reject) => {
    c.req = http.get(new URL(`/v1/products/${sku}/events`, base), { agent, headers: { accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`SSE ${res.statusCode}`));
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = frame.split('\n').find((l) => l.startsWith('data:'));
          if (!data) continue;
          const { available } = JSON.parse(data.slice(5));
          resolve();
          if (available === false && c.soldOutAt === null) c.soldOutAt = performance.now();
        }
      });
    });
    c.req.on('error', reject);
  });
  c.close = () => c.req.destroy();
  return c;
}

/** One polling client on a keep-alive connection of its own, every POLL_MS. */
function pollClient(sku, agent) {
  const c = { soldOutAt: null, stopped: false };
  const once = () =>
    new Promise((resolve, reject) => {
      http
        .get(new URL(`/v1/products/${sku}`, base), { agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (body += d));
          res.on('end', () => {
            if (res.statusCode === 200 && JSON.parse(body).available === false && c.soldOutAt === null) {
              c.soldOutAt = performance.now();
            }
            resolve();
          });
        })
        .on('error', reject);
    });
  c.ready = once();
  c.loop = (async () => {
    await c.ready;
    // Spread over the interval, as independent pages are.
    await sleep(Math.random() * POLL_MS);
    while (!c.stopped) {
      const t = performance.now();
      await once().catch(() => {});
      await sleep(Math.max(0, POLL_MS - (performance.now() - t)));
    }
  })();
  c.close = () => {
    c.stopped = true;
  };
  return c;
}

const quantile = (xs, q) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function measure(name, make) {
  const sku = `PUSH-${randomBytes(4).toString('hex')}`;
  await putStock(sku, 1);
  await sleep(1000);
  const rss0 = rssKiB();
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const clients = Array.from({ length: CLIENTS }, () => make(sku, agent));
  await Promise.all(clients.map((c) => c.ready));
  await sleep(2000);
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  await sleep(WINDOW_MS);
  const cpu = (cpuSeconds() - cpu0) / ((performance.now() - t0) / 1000);
  const rss = rssKiB();
  const committed = await takeLast(sku);
  const deadline = performance.now() + 10_000 + POLL_MS;
  while (clients.some((c) => c.soldOutAt === null) && performance.now() < deadline) await sleep(20);
  const lags = clients.filter((c) => c.soldOutAt !== null).map((c) => c.soldOutAt - committed).sort((a, b) => a - b);
  for (const c of clients) c.close();
  agent.destroy();
  await sleep(1500);
  return {
    design: name,
    clients: CLIENTS,
    order_api_cpu_cores: Number(cpu.toFixed(4)),
    cpu_us_per_client_per_s: Number(((cpu * 1e6) / CLIENTS).toFixed(1)),
    rss_kib_before: rss0,
    rss_kib_with_clients: rss,
    rss_kib_per_client: Number(((rss - rss0) / CLIENTS).toFixed(2)),
    reached: lags.length,
    sell_out_ms_p50: Math.round(quantile(lags, 0.5)),
    sell_out_ms_max: Math.round(lags[lags.length - 1]),
  };
}

const sse = await measure('sse', sseClient);
const poll = await measure(`poll_${POLL_MS}ms`, pollClient);
console.log(JSON.stringify({ poll_interval_ms: POLL_MS, window_ms: WINDOW_MS, rows: [sse, poll] }, null, 2));
