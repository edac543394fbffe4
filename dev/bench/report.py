#!/usr/bin/env python3
"""dev/bench/report.py RAW_DIR DOCS_DIR

Reads the raw outputs of one `make bench` run (dev/bench.sh) and writes
DOCS_DIR/benchmarks.json, DOCS_DIR/benchmarks.svg and DOCS_DIR/benchmarks.md.
Every number comes from RAW_DIR; the ratios use references measured in the
same run. Standard library only.
"""

import json
import math
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

raw = Path(sys.argv[1])
docs = Path(sys.argv[2])


def meta():
    out = {}
    for line in (raw / "meta.txt").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def pgbench(name, batch):
    text = (raw / f"pgbench_{name}.txt").read_text()
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
    lat = re.search(r"latency average = ([\d.]+) ms", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    aborted = "aborted" in text
    orders_file = raw / f"pgbench_{name}.orders"
    orders = int(orders_file.read_text().strip() or 0) if orders_file.exists() else None
    tps_v = float(tps.group(1)) if tps else None
    return {
        "tps": round(tps_v, 1) if tps_v else None,
        "orders_per_tx": batch,
        "orders_per_s": round(tps_v * batch, 1) if tps_v else None,
        "latency_avg_ms": float(lat.group(1)) if lat else None,
        "transactions": int(done.group(1)) if done else None,
        "failed_transactions": int(failed.group(1)) if failed else None,
        "orders_in_db": orders,
        "aborted": aborted,
    }


def wrk(name, success):
    text = (raw / f"wrk_{name}.txt").read_text()
    line = next(line for line in text.splitlines() if line.startswith("WRK_JSON "))
    data = json.loads(line[len("WRK_JSON "):])
    secs = data["duration_us"] / 1e6
    ok = sum(v for k, v in data["codes"].items() if k in success)
    out = {
        "duration_s": round(secs, 3),
        "requests": data["requests"],
        "requests_per_s": round(data["requests"] / secs, 1),
        "answers": data["codes"],
        "counted_answers": success,
        "answers_per_s": round(ok / secs, 1),
        "socket_errors": data["socket_errors"],
        "latency_ms": {k: round(v / 1000, 3) for k, v in data["latency_us"].items()},
    }
    orders_file = raw / f"wrk_{name}.orders"
    if orders_file.exists():
        out["orders_in_db"] = int(orders_file.read_text().strip() or 0)
    return out


def batch_size():
    path = raw / "order-api.metrics"
    if not path.exists():
        return None
    text = path.read_text()
    s = re.search(r"^reservation_batch_size_sum(?:\{[^}]*\})? ([\d.e+]+)$", text, re.M)
    c = re.search(r"^reservation_batch_size_count(?:\{[^}]*\})? ([\d.e+]+)$", text, re.M)
    if not (s and c) or float(c.group(1)) == 0:
        return None
    return {"mean": round(float(s.group(1)) / float(c.group(1)), 1), "batches": int(float(c.group(1)))}


def rss_mib():
    path = raw / "rss_c256.kib"
    samples = [int(x) for x in path.read_text().split() if x.isdigit()] if path.exists() else []
    hwm = raw / "order-api.vmhwm.kib"
    hwm_v = int(hwm.read_text().strip()) if hwm.exists() and hwm.read_text().strip() else None
    return {
        "c256_peak_sampled_mib": round(max(samples) / 1024, 1) if samples else None,
        "samples": len(samples),
        "process_peak_vmhwm_mib": round(hwm_v / 1024, 1) if hwm_v else None,
    }


m = meta()
result = {
    "date_utc": m.get("date_utc"),
    "machine": {"cpus": m.get("cpus"), "cpu_model": m.get("cpu_model")},
    "versions": {"postgres": m.get("postgres"), "wrk": m.get("wrk"), "git": m.get("git")},
    "seconds_per_row": int(m.get("secs", 0)),
    "concurrency": int(m.get("c", 64)),
    "build_secs": int(m.get("build_secs", 0)),
    "total_secs": int(m.get("total_secs", 0)) if m.get("total_secs") else None,
    "pgbench": {
        "single_statement": pgbench("single", 1),
        "order_api_tx_1": pgbench("tx1", 1),
        "order_api_tx_50": pgbench("tx50", 50),
    },
    "http": {
        "ceiling_healthz": wrk("ceiling", ["200"]),
        "sold_out": wrk("sold_out", ["409"]),
        "reservations_c64": wrk("reserve_c64", ["201"]),
        "reservations_c256": wrk("reserve_c256", ["201"]),
    },
    "reservation_batch_size": batch_size(),
    "memory": rss_mib(),
}
drop_path = raw / "drop.json"
result["full_drop"] = json.loads(drop_path.read_text()) if drop_path.exists() else None
status = raw / "drop.status"
result["full_drop_exit_status"] = int(status.read_text().strip()) if status.exists() else None

ceiling = result["http"]["ceiling_healthz"]["answers_per_s"]
single = result["pgbench"]["single_statement"]["tps"]
acc64 = result["http"]["reservations_c64"]["answers_per_s"]
acc256 = result["http"]["reservations_c256"]["answers_per_s"]
sold = result["http"]["sold_out"]["answers_per_s"]
p99_64 = result["http"]["reservations_c64"]["latency_ms"]["p99"]


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


result["ratios"] = {
    "accepted_c64_over_http_ceiling": ratio(acc64, ceiling),
    "accepted_c64_over_pgbench_single": ratio(acc64, single),
    "sold_out_over_http_ceiling": ratio(sold, ceiling),
    "accepted_c256_over_http_ceiling": ratio(acc256, ceiling),
}
d = result["full_drop"] or {}
v = d.get("vouchers") or {}
rss = result["memory"]["c256_peak_sampled_mib"]
targets = [
    ("Reservations ≥ 5× pgbench single-statement TPS (C=64)",
     f"{result['ratios']['accepted_c64_over_pgbench_single']}×", result["ratios"]["accepted_c64_over_pgbench_single"] is not None and result["ratios"]["accepted_c64_over_pgbench_single"] >= 5),
    ("Reservations ≥ 15% of the HTTP ceiling (C=64)",
     f"{round(100 * (result['ratios']['accepted_c64_over_http_ceiling'] or 0), 1)}%", (result["ratios"]["accepted_c64_over_http_ceiling"] or 0) >= 0.15),
    ("Reservations p99 ≤ 25 ms (C=64)", f"{p99_64} ms", p99_64 <= 25),
    ("Sold-out answers ≥ 60% of the HTTP ceiling (C=64)",
     f"{round(100 * (result['ratios']['sold_out_over_http_ceiling'] or 0), 1)}%", (result["ratios"]["sold_out_over_http_ceiling"] or 0) >= 0.60),
    ("Voucher throughput ≥ 200 vouchers/s (full drop)", f"{v.get('throughput_per_s')}/s", (v.get("throughput_per_s") or 0) >= 200),
    ("Full drop delivers 100% of its vouchers", f"{v.get('delivered')}/{v.get('expected')}", bool(v) and v.get("delivered") == v.get("expected") and (v.get("expected") or 0) > 0),
    ("Voucher end-to-end p99 ≤ 10 s", f"{(v.get('e2e_ms') or {}).get('p99')} ms", ((v.get("e2e_ms") or {}).get("p99") or 1e18) <= 10_000),
    ("order-api RSS ≤ 64 MiB at C=256", f"{rss} MiB", rss is not None and rss <= 64),
]
result["targets"] = [{"target": t, "measured": mval, "met": bool(ok)} for t, mval, ok in targets]
docs.mkdir(parents=True, exist_ok=True)
(docs / "benchmarks.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")

# ---- the plot: throughput of every row, log scale ------------------------------
bars = [
    ("pgbench: single-statement reservation", single, "TPS", "#8c8c8c"),
    ("pgbench: order-api tx, 1 order", result["pgbench"]["order_api_tx_1"]["orders_per_s"], "orders/s", "#8c8c8c"),
    ("pgbench: order-api tx, 50 orders", result["pgbench"]["order_api_tx_50"]["orders_per_s"], "orders/s", "#8c8c8c"),
    ("HTTP ceiling: GET /healthz", ceiling, "req/s", "#4c72b0"),
    ("sold out: POST /v1/orders", sold, "answers/s", "#55a868"),
    (f"reservations C={result['concurrency']}", acc64, "accepted/s", "#c44e52"),
    ("reservations C=256", acc256, "accepted/s", "#c44e52"),
    ("full drop: accepted", d.get("accepted_per_s"), "accepted/s", "#dd8452"),
    ("full drop: sold-out answers", d.get("sold_out_per_s"), "answers/s", "#dd8452"),
    ("full drop: vouchers", v.get("throughput_per_s"), "vouchers/s", "#dd8452"),
]
bars = [b for b in bars if b[1]]
W, left, right, row_h, top = 900, 290, 130, 30, 50
H = top + row_h * len(bars) + 50
lo, hi = 1.0, math.log10(max(b[1] for b in bars) * 1.5)
scale = lambda x: (math.log10(max(x, 10)) - lo) / (hi - lo) * (W - left - right)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       '<rect width="100%" height="100%" fill="white"/>',
       f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">make bench {escape(str(result["date_utc"]))}: throughput per row (log scale, C={result["concurrency"]} unless noted)</text>']
for exp in range(1, int(hi) + 1):
    x = left + scale(10 ** exp)
    svg.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{H - 40}" stroke="#ddd"/>')
    svg.append(f'<text x="{x:.1f}" y="{H - 25}" text-anchor="middle" fill="#555">{10 ** exp:,}/s</text>')
for i, (label, value, unit, color) in enumerate(bars):
    y = top + i * row_h
    w = scale(value)
    svg.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
    svg.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{color}"/>')
    svg.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}">{value:,.0f} {unit}</text>')
svg.append("</svg>")
(docs / "benchmarks.svg").write_text("\n".join(svg) + "\n")

# ---- the page -----------------------------------------------------------------------


def f(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


pg = result["pgbench"]
http = result["http"]
C = result["concurrency"]
lines = [
    "# Benchmarks",
    "",
    f"Written by `make bench` (dev/bench.sh) on **{result['date_utc']}**, commit `{m.get('git')}`, "
    f"on {m.get('cpus')} × {m.get('cpu_model')}, with the load tools on the same machine. "
    f"Each row ran {result['seconds_per_row']} s. PostgreSQL {m.get('postgres')}, wrk {m.get('wrk')}. "
    f"The run took {result['total_secs']} s, of which {result['build_secs']} s building. "
    "Raw numbers: [benchmarks.json](benchmarks.json). Do not edit this file by hand: "
    "run `make bench` again (the notes at the end come from dev/bench/notes.md).",
    "",
    "![throughput per row](benchmarks.svg)",
    "",
    "## Rows",
    "",
    "| # | row | tool | C | throughput | p50 | p99 | notes |",
    "|---|---|---|---|---|---|---|---|",
    f"| 1a | single-statement hot-row reservation (reference) | pgbench | {C} | {f(pg['single_statement']['tps'])} TPS | – | – | avg {pg['single_statement']['latency_avg_ms']} ms; {f(pg['single_statement']['orders_in_db'])} orders written |",
    f"| 1b | order-api's reservation transaction, 1 order per tx | pgbench | {C} | {f(pg['order_api_tx_1']['orders_per_s'])} orders/s | – | – | avg {pg['order_api_tx_1']['latency_avg_ms']} ms |",
    f"| 1c | order-api's reservation transaction, 50 orders per tx | pgbench | {C} | {f(pg['order_api_tx_50']['orders_per_s'])} orders/s | – | – | {f(pg['order_api_tx_50']['tps'])} TPS, avg {pg['order_api_tx_50']['latency_avg_ms']} ms |",
    f"| 2 | HTTP ceiling: `GET /healthz` | wrk | {C} | {f(ceiling)} req/s | {http['ceiling_healthz']['latency_ms']['p50']} ms | {http['ceiling_healthz']['latency_ms']['p99']} ms | |",
    f"| 3 | sold out: `POST /v1/orders` after sell-out | wrk | {C} | {f(sold)} answers/s | {http['sold_out']['latency_ms']['p50']} ms | {http['sold_out']['latency_ms']['p99']} ms | answers {http['sold_out']['answers']} |",
    f"| 4a | reservations: `POST /v1/orders`, every customer accepted | wrk | {C} | {f(acc64)} accepted/s | {http['reservations_c64']['latency_ms']['p50']} ms | {http['reservations_c64']['latency_ms']['p99']} ms | answers {http['reservations_c64']['answers']}; {f(http['reservations_c64'].get('orders_in_db'))} orders in the database |",
    f"| 4b | reservations, C=256 | wrk | 256 | {f(acc256)} accepted/s | {http['reservations_c256']['latency_ms']['p50']} ms | {http['reservations_c256']['latency_ms']['p99']} ms | answers {http['reservations_c256']['answers']}; peak RSS {f(rss, 1)} MiB |",
]
if d:
    lat = d.get("latency_ms", {})
    lines.append(
        f"| 5 | full drop: S={d.get('units')}, N={d.get('customers')}, 5% duplicates, 5% keyed retries, vouchers | drop simulator | {d.get('concurrency')} | "
        f"{f(d.get('attempts_per_s'))} attempts/s; {f(d.get('accepted_per_s'))} accepted/s; {f(d.get('sold_out_per_s'))} sold-out/s | "
        f"reserved {lat.get('reserved', {}).get('p50')} ms; sold out {lat.get('sold_out', {}).get('p50')} ms | "
        f"reserved {lat.get('reserved', {}).get('p99')} ms; sold out {lat.get('sold_out', {}).get('p99')} ms | "
        f"sold out after {d.get('time_to_sell_out_s')} s; vouchers {v.get('delivered')}/{v.get('expected')}, "
        f"e2e p50 {f((v.get('e2e_ms') or {}).get('p50'))} ms, p99 {f((v.get('e2e_ms') or {}).get('p99'))} ms, {f(v.get('throughput_per_s'))} vouchers/s; "
        f"invariants {'hold' if d.get('ok') else 'FAILED'} |"
    )
else:
    lines.append("| 5 | full drop | drop simulator | – | did not run | – | – | see the raw outputs |")
bs = result["reservation_batch_size"]
lines += [
    "",
    f"Mean reservation batch in rows 4a–4b: {bs['mean']} requests per transaction over {f(bs['batches'])} transactions (order-api's `reservation_batch_size`)."
    if bs else "order-api's batch size metric was not available.",
    "",
    "## Ratios (same run)",
    "",
    "| ratio | value |",
    "|---|---|",
    f"| accepted orders/s (C={C}) ÷ HTTP ceiling | {result['ratios']['accepted_c64_over_http_ceiling']} |",
    f"| accepted orders/s (C={C}) ÷ pgbench single-statement TPS | {result['ratios']['accepted_c64_over_pgbench_single']} |",
    f"| sold-out answers/s ÷ HTTP ceiling | {result['ratios']['sold_out_over_http_ceiling']} |",
    f"| accepted orders/s (C=256) ÷ HTTP ceiling | {result['ratios']['accepted_c256_over_http_ceiling']} |",
    "",
    "## Targets (issue 7)",
    "",
    "| target | measured | |",
    "|---|---|---|",
]
for t in result["targets"]:
    lines.append(f"| {t['target']} | {t['measured']} | {'met' if t['met'] else '**missed**'} |")
lines += [
    "",
    "## How each row is measured",
    "",
    f"- **1a–1c**: `pgbench -M prepared -c {C} -j 2` on the stack's PostgreSQL, a fresh database with order-api's schema "
    "(order-api/migrations). 1a is the single-statement hot-row reservation (dev/bench/pgbench_single.sql: guarded "
    "`UPDATE products` + order + outbox row in one statement). 1b and 1c run the statements of order-api's reservation "
    "transaction (dev/bench/pgbench_batch.sql, from order-api/src/reserve.rs) for batches of 1 and 50 requests.",
    f"- **2–4**: wrk (`-t2 -c{C}`, and `-c256` for 4b) with dev/bench/wrk_count.lua, against one release order-api "
    "replica on a fresh database. Throughput counts only the expected answers (200, 409 `sold_out`, 201); the others "
    "are listed. The 4a/4b order counts are read back from PostgreSQL. RSS is sampled from /proc every 200 ms during 4b.",
    "- **5**: the `drop` simulator (order-api/src/bin/drop.rs) against a fresh order-api and pdf-generator (release, "
    f"`PREFETCH={m.get('drop_prefetch', '32')}` uploads in flight), on a fresh database. Accepted orders/s is over the window from the first request to the last 201; sold-out/s from "
    "the first sold-out answer to the last answer; voucher latency from each 201 to its `voucher_ready` on "
    "`voucher.<order_id>`; voucher throughput is delivered vouchers over the window from the first request to the last voucher.",
    "",
]
notes = Path(__file__).with_name("notes.md")
if notes.exists():
    lines += notes.read_text().rstrip().splitlines() + [""]
(docs / "benchmarks.md").write_text("\n".join(lines))
print(f"report: wrote {docs / 'benchmarks.md'}, benchmarks.json, benchmarks.svg")
