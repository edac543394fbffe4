#!/usr/bin/env python3
"""dev/bench/browsers.py OUT.json STEP [STEP...]: the cost of open pages.

Opens Web-STOMP connections to the stack's RabbitMQ, each as the customer
page does it (res/web/src/app.js: STOMP 1.2 over WebSocket as the browser
user, heart-beats 10 s both ways, one SUBSCRIBE to
/exchange/amq.topic/stock.<sku>), in cumulative steps (e.g. 1000 5000 10000).
After each step it measures, and writes to OUT.json:
- RabbitMQ's memory (management API, `mem_used`) and its CPU (/proc of the
  broker in this network namespace): while connecting, and over an idle
  window in which only heart-beats flow;
- the time from publishing one stock.<sku> message (AMQP, pika) until every
  connection has it;
- the time for one voucher.<id> message to reach the one extra connection
  subscribed to it, with all the others connected.
Then it closes everything and exits: bounded by its steps and timeouts.

The WebSocket client is written here on asyncio (RFC 6455: the upgrade, and
masked client frames) so that ten thousand connections fit one process
without a dependency beyond the stack's venv (pika). Run it with that venv's
python ($STACK_PYTHON), inside the stack's network namespace.
Environment: STOMP_URL, STOMP_VHOST, FANOUT_AMQP_URL (where the app publishes
what browsers receive), RABBITMQ_MANAGEMENT_URL (what dev/stack.sh writes to
its env file). Pages CONNECT without credentials, as the page does: the
broker logs them in as its browser user. STOMP_LOGIN and STOMP_PASSCODE, if
set, are sent instead.
"""

import asyncio
import base64
import concurrent.futures
import json
import os
import sys
import time
import urllib.parse
import urllib.request

import pika

URL = urllib.parse.urlparse(os.environ.get("STOMP_URL", "ws://127.0.0.1:15674/ws"))
CREDENTIALS = ({"login": os.environ["STOMP_LOGIN"], "passcode": os.environ.get("STOMP_PASSCODE", "")}
               if os.environ.get("STOMP_LOGIN") else {})
VHOST = os.environ.get("STOMP_VHOST", "browser")
AMQP_URL = os.environ.get("FANOUT_AMQP_URL", "amqp://drop:drop@127.0.0.1:5672/browser")
MGMT = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
HEARTBEAT_S = 10
OPEN_AT_ONCE = 200
IDLE_S = 10
DELIVERY_TIMEOUT_S = 60
SKU = f"BROWSERS-{os.getpid()}"
TICK = os.sysconf("SC_CLK_TCK")


def ws_frame(payload, opcode=1):
    """One masked client frame (RFC 6455, 5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def stomp(command, headers, body=b""):
    lines = [command] + [f"{k}:{v}" for k, v in headers.items()]
    return ("\n".join(lines) + "\n\n").encode() + body + b"\0"


class Page:
    """One open page: a Web-STOMP connection with one subscription."""

    def __init__(self, key, on_message):
        self.key = key
        self.on_message = on_message
        self.reader = self.writer = None
        self.tasks = []

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(URL.hostname, URL.port or 80)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                f"GET {URL.path or '/'} HTTP/1.1\r\nHost: {URL.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: v12.stomp\r\n\r\n"
            ).encode()
        )
        status = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"upgrade refused: {status!r}")
        self.send(stomp("CONNECT", {"accept-version": "1.2", "host": VHOST, **CREDENTIALS,
                                    "heart-beat": f"{HEARTBEAT_S * 1000},{HEARTBEAT_S * 1000}"}))
        if not (await self.stomp_frame()).startswith(b"CONNECTED"):
            raise ConnectionError("STOMP CONNECT refused")
        self.send(stomp("SUBSCRIBE", {"id": "sub-0", "destination": f"/exchange/amq.topic/{self.key}",
                                      "ack": "auto", "receipt": "subscribed"}))
        if not (await self.stomp_frame()).startswith(b"RECEIPT"):
            raise ConnectionError("SUBSCRIBE not confirmed")
        self.tasks = [asyncio.create_task(self.read()), asyncio.create_task(self.beat())]

    def send(self, data):
        self.writer.write(ws_frame(data))

    async def ws_message(self):
        data = b""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await self.reader.readexactly(n)  # server frames are not masked
            opcode = b0 & 0x0F
            if opcode == 9:
                self.writer.write(ws_frame(payload, 10))
                continue
            if opcode == 8:
                raise ConnectionError("closed by the server")
            data += payload
            if b0 & 0x80:
                return data

    async def stomp_frame(self):
        while True:
            data = (await self.ws_message()).lstrip(b"\r\n")
            if data:  # a bare newline is a heart-beat
                return data

    async def read(self):
        try:
            while True:
                frame = await self.stomp_frame()
                if frame.startswith(b"MESSAGE"):
                    body = frame.split(b"\n\n", 1)[1].split(b"\0", 1)[0]
                    self.on_message(self, json.loads(body))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async def beat(self):
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self.send(b"\n")

    async def close(self):
        for t in self.tasks:
            t.cancel()
        if self.writer:
            self.writer.close()


def broker_pid():
    mine = os.stat("/proc/self/ns/net").st_ino
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == mine and open(f"/proc/{pid}/comm").read().strip() == "beam.smp":
                return pid
        except OSError:
            continue
    raise SystemExit("no RabbitMQ (beam.smp) in this network namespace")


def cpu_secs(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def mgmt(path):
    # As guest, which the local stack lets in from loopback only (dev/stack/rabbitmq.sh).
    request = urllib.request.Request(MGMT + path)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def memory_mib():
    return round(sum(n["mem_used"] for n in mgmt("/api/nodes")) / 2**20, 1)


class Publisher:
    """Publishes to amq.topic over AMQP, on one thread of its own, on a
    connection opened for each message: between two steps it would sit idle
    for minutes, and a blocking pika connection answers no heart-beats while
    idle, so the broker closes it (at 10,000 pages the opening alone took
    longer than the heart-beat timeout)."""

    def __init__(self):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    async def connect(self):
        """A channel on a new connection (not timed: the delivery is)."""
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, lambda: pika.BlockingConnection(pika.URLParameters(AMQP_URL)).channel())

    async def publish(self, channel, key, body):
        """Publishes on `channel`, then closes its connection."""
        def send():
            try:
                channel.basic_publish("amq.topic", key, json.dumps(body).encode())
            finally:
                channel.connection.close()
        await asyncio.get_running_loop().run_in_executor(self.pool, send)


async def main(out, steps):
    beam = broker_pid()
    publisher = Publisher()
    got = {}
    waiting = {}

    def on_message(page, body):
        seq = body["seq"]
        got[seq] = got.get(seq, 0) + 1
        if seq in waiting and got[seq] >= waiting[seq][0]:
            waiting[seq][1].set()

    async def deliver(key, expected, seq):
        done = asyncio.Event()
        waiting[seq] = (expected, done)
        channel = await publisher.connect()
        started = time.monotonic()
        await publisher.publish(channel, key, {"seq": seq, "sku": SKU, "stock": "sold_out"})
        try:
            await asyncio.wait_for(done.wait(), DELIVERY_TIMEOUT_S)
        except asyncio.TimeoutError:
            pass
        return round((time.monotonic() - started) * 1000, 1), got.get(seq, 0)

    voucher_key = f"voucher.{os.urandom(16).hex()}"
    voucher_page = Page(voucher_key, on_message)
    await voucher_page.open()
    pages, refused, report = [], 0, {"sku": SKU, "heartbeat_s": HEARTBEAT_S, "steps": []}
    report["baseline_mib"] = memory_mib()
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one():
        nonlocal refused
        page = Page(f"stock.{SKU}", on_message)
        async with gate:
            try:
                await page.open()
                pages.append(page)
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                refused += 1
                await page.close()

    seq = 0
    for target in steps:
        cpu0, t0 = cpu_secs(beam), time.monotonic()
        await asyncio.gather(*(open_one() for _ in range(target - len(pages))))
        open_s = time.monotonic() - t0
        opened_cpu = cpu_secs(beam) - cpu0
        await asyncio.sleep(2)
        cpu1 = cpu_secs(beam)
        await asyncio.sleep(IDLE_S)
        idle_cpu = (cpu_secs(beam) - cpu1) / IDLE_S
        mem = memory_mib()
        seq += 1
        stock_ms, stock_got = await deliver(f"stock.{SKU}", len(pages), seq)
        seq += 1
        voucher_ms, voucher_got = await deliver(voucher_key, 1, seq)
        n = len(pages)
        report["steps"].append({
            "connections": n,
            "refused": refused,
            "open_s": round(open_s, 1),
            "broker_memory_mib": mem,
            "broker_kib_per_connection": round((mem - report["baseline_mib"]) * 1024 / max(n, 1), 1),
            "broker_cpu_ms_per_connection_opened": round(opened_cpu * 1000 / max(n - sum(s["connections"] for s in report["steps"][-1:]), 1), 3),
            "broker_idle_cpu_share": round(idle_cpu, 3),
            "broker_idle_cpu_us_per_connection_s": round(idle_cpu * 1e6 / max(n, 1), 2),
            "stock_fanout_ms": stock_ms,
            "stock_delivered": stock_got,
            "voucher_ms": voucher_ms,
            "voucher_delivered": voucher_got,
        })
        print(json.dumps(report["steps"][-1]), flush=True)
    await asyncio.gather(*(p.close() for p in pages + [voucher_page]))
    with open(out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], [int(s) for s in sys.argv[2:]]))
