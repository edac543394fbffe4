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


def wrk_json(path):
    line = next(line for line in path.read_text().splitlines() if line.startswith("WRK_JSON "))
    return json.loads(line[len("WRK_JSON "):])


def merged_quantiles(slices):
    """The latency percentiles of slices taken together: each slice's
    distribution is known at the percentiles wrk_count.lua prints, linearly in
    between; the slices' mixture, weighted by requests, is inverted by
    bisection. None if a slice lacks them (raw outputs of older runs)."""
    if not all(d.get("quantiles_us") for d in slices):
        return None

    def cdf(points, x):  # share of the slice's requests at or below x µs
        if x < points[0][1]:
            return 0.0
        for (p0, v0), (p1, v1) in zip(points, points[1:]):
            if x < v1:
                return (p0 + (p1 - p0) * ((x - v0) / (v1 - v0) if v1 > v0 else 1.0)) / 100
        return points[-1][0] / 100 if x < points[-1][1] else 1.0

    curves = [(d["requests"], [(p, v) for p, v in d["quantiles_us"]]) for d in slices]
    total = sum(w for w, _ in curves) or 1

    def at(q):
        lo, hi = 0.0, float(max(d["latency_us"]["max"] for d in slices))
        for _ in range(60):
            mid = (lo + hi) / 2
            if sum(w * cdf(pts, mid) for w, pts in curves) / total >= q / 100:
                hi = mid
            else:
                lo = mid
        return round(hi)

    return at


def wrk_data(name):
    """One row's wrk totals: its one run, or the sum of its slices
    (wrk_NAME_s1.txt, _s2...), with their percentiles merged; None if the row
    did not run."""
    whole = raw / f"wrk_{name}.txt"
    if whole.exists():
        return wrk_json(whole)
    slices = [wrk_json(p) for p in sorted(raw.glob(f"wrk_{name}_s*.txt"))]
    if not slices:
        return None
    codes = {}
    for d in slices:
        for k, v in d["codes"].items():
            codes[k] = codes.get(k, 0) + v
    requests = sum(d["requests"] for d in slices)
    lat = [d["latency_us"] for d in slices]
    merged = merged_quantiles(slices)
    return {
        "duration_us": sum(d["duration_us"] for d in slices),
        "requests": requests,
        "codes": codes,
        "socket_errors": {k: sum(d["socket_errors"][k] for d in slices) for k in slices[0]["socket_errors"]},
        "latency_us": {
            "p50": merged(50) if merged else sorted(x["p50"] for x in lat)[len(lat) // 2],
            "p95": merged(95) if merged else max(x["p95"] for x in lat),
            "p99": merged(99) if merged else max(x["p99"] for x in lat),
            "max": max(x["max"] for x in lat),
            "mean": sum(x["mean"] * d["requests"] for x, d in zip(lat, slices)) / max(requests, 1),
        },
        "slices": len(slices),
    }


def wrk(name, success):
    data = wrk_data(name)
    if data is None:
        return None
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
    if "slices" in data:
        out["slices"] = data["slices"]
    orders_file = raw / f"wrk_{name}.orders"
    if orders_file.exists():
        out["orders_in_db"] = int(orders_file.read_text().strip() or 0)
    return out


def read_or(path, default):
    return path.read_text().strip() if path.exists() else default


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


def prom_mean(text, name):
    """Mean of a Prometheus histogram over all its label sets, and its count."""
    total = sum(float(x) for x in re.findall(rf"^{name}_sum(?:\{{[^}}]*\}})? ([\d.e+-]+)$", text, re.M))
    count = sum(float(x) for x in re.findall(rf"^{name}_count(?:\{{[^}}]*\}})? ([\d.e+-]+)$", text, re.M))
    return (total / count if count else None), int(count)


def drop_row(name):
    """One drop's report, with where its CPU went and pdf-generator's timings."""
    path = raw / f"{name}.json"
    if not path.exists():
        return None
    out = json.loads(path.read_text())
    status = raw / f"{name}.status"
    out["exit_status"] = int(status.read_text().strip()) if status.exists() else None
    delivered = (out.get("vouchers") or {}).get("delivered") or 0
    cpu_path = raw / f"{name}.cpu.json"
    if cpu_path.exists() and delivered:
        cpu = json.loads(cpu_path.read_text())
        out["cpu_ms_per_voucher"] = {k: round(v * 1000 / delivered, 2) for k, v in cpu.items() if v * 1000 / delivered >= 0.05}
        out["cpu_ms_per_voucher_total"] = round(sum(cpu.values()) * 1000 / delivered, 2)
    metrics = raw / f"{name}.pdf-generator.metrics"
    if metrics.exists():
        text = metrics.read_text()
        timings = {}
        for key, metric in [
            ("render", "render_duration_seconds"),
            ("upload_attempt", "upload_duration_seconds"),
            ("notify_publish", "notifier_publish_duration_seconds"),
            ("handle_message", "message_handle_duration_seconds"),
            ("end_to_end", "voucher_end_to_end_seconds"),
        ]:
            mean, count = prom_mean(text, metric)
            timings[key] = {"mean_ms": round(mean * 1000, 3) if mean is not None else None, "count": count}
        out["pdf_generator_timings"] = timings
        stamped = re.findall(r'^voucher_renders_total\{how="(\w+)"\} ([\d.e+]+)$', text, re.M)
        out["renders"] = {how: int(float(n)) for how, n in stamped}
    return out


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
        "reservations_after_history": wrk("reserve_history", ["201"]),
        "reservations_history_reference": wrk("reserve_history_ref", ["201"]),
        "reservations_ha_c64": wrk("reserve_ha", ["201"]) if (raw / "wrk_reserve_ha.txt").exists() else None,
    },
    "ha": {
        "sync_standbys": int(read_or(raw / "ha.sync_standbys", "0")),
        "synchronous_commit": read_or(raw / "ha.synchronous_commit", None),
    },
    "history": {
        "orders_before": int((raw / "history.orders_before").read_text().strip() or 0),
        "database_bytes": int((raw / "history.db_bytes").read_text().strip() or 0),
        "load_secs": int((raw / "history_load.secs").read_text().strip() or 0),
    },
    "renderer": json.loads((raw / "render_ab.json").read_text()),
    "reservation_batch_size": batch_size(),
    "memory": rss_mib(),
}
result["full_drop"] = drop_row("drop")
result["full_drop_exit_status"] = (result["full_drop"] or {}).get("exit_status")
result["big_drop"] = drop_row("big_drop")
browsers_path = raw / "browsers.json"
result["browsers"] = json.loads(browsers_path.read_text()) if browsers_path.exists() else None

ceiling = result["http"]["ceiling_healthz"]["answers_per_s"]
single = result["pgbench"]["single_statement"]["tps"]
acc64 = result["http"]["reservations_c64"]["answers_per_s"]
acc256 = result["http"]["reservations_c256"]["answers_per_s"]
sold = result["http"]["sold_out"]["answers_per_s"]
p99_64 = result["http"]["reservations_c64"]["latency_ms"]["p99"]
acc_hist = result["http"]["reservations_after_history"]["answers_per_s"]
# Row 4c's reference: the empty database, in slices alternating with the
# history's (dev/bench.sh), not row 4a minutes earlier. Raw outputs from before
# that reference existed fall back to row 4a.
hist_ref_row = result["http"]["reservations_history_reference"]
acc_hist_ref = hist_ref_row["answers_per_s"] if hist_ref_row else acc64


def slice_ratios():
    """History ÷ empty database, slice by slice (each pair ran back to back)."""
    out = []
    for hist_path in sorted(raw.glob("wrk_reserve_history_s*.txt"), key=lambda p: int(p.stem.rsplit("_s", 1)[1])):
        ref_path = raw / hist_path.name.replace("reserve_history_s", "reserve_history_ref_s")
        if ref_path.exists():
            h, r = wrk_json(hist_path)["codes"].get("201", 0), wrk_json(ref_path)["codes"].get("201", 0)
            out.append(round(h / r, 3) if r else None)
    return out


result["history"]["slice_ratios"] = slice_ratios()
ha_row = result["http"]["reservations_ha_c64"]
acc_ha = ha_row["answers_per_s"] if ha_row else None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


result["ratios"] = {
    "accepted_c64_over_http_ceiling": ratio(acc64, ceiling),
    "accepted_c64_over_pgbench_single": ratio(acc64, single),
    "sold_out_over_http_ceiling": ratio(sold, ceiling),
    "accepted_c256_over_http_ceiling": ratio(acc256, ceiling),
    "accepted_c64_after_history_over_empty": ratio(acc_hist, acc_hist_ref),
    "accepted_c64_after_history_over_row_4a": ratio(acc_hist, acc64),
    "accepted_c64_ha_over_single_node": ratio(acc_ha, acc64),
    "render_whole_over_stamped_mix": result["renderer"].get("speedup_mix"),
}
bd = result["big_drop"] or {}
bv = bd.get("vouchers") or {}
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
    ("Reservations after the history ≥ 0.9× the empty table (C=64, issue 21)",
     f"{result['ratios']['accepted_c64_after_history_over_empty']}×", (result["ratios"]["accepted_c64_after_history_over_empty"] or 0) >= 0.9),
    (f"{bd.get('units') or 0:,}-unit drop: ≥ 500 vouchers/s from the first 201 (issue 21)",
     f"{bv.get('throughput_after_first_201_per_s')}/s", (bv.get("throughput_after_first_201_per_s") or 0) >= 500),
    (f"{bd.get('units') or 0:,}-unit drop delivers 100% of its vouchers", f"{bv.get('delivered')}/{bv.get('expected')}",
     bool(bv) and bv.get("delivered") == bv.get("expected") and (bv.get("expected") or 0) > 0),
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
    (f"reservations C={result['concurrency']}, after history", acc_hist, "accepted/s", "#c44e52"),
    (f"reservations C={result['concurrency']}, replicated (sync)", acc_ha, "accepted/s", "#c44e52"),
    (f"{bd.get('units') or 0:,}-unit drop: vouchers", bv.get("throughput_after_first_201_per_s"), "vouchers/s", "#dd8452"),
    ("renderer alone: whole", 1e6 / (result["renderer"]["whole"]["us_per_voucher"] or 1e9), "vouchers/s", "#8172b3"),
    ("renderer alone: stamped (mix)", 1e6 / (result["renderer"]["mix"]["us_per_voucher"] or 1e9), "vouchers/s", "#8172b3"),
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
hist = result["history"]
hr = http["reservations_after_history"]
lines.insert(
    len(lines) - 1,
    f"| 4c | reservations after {f(hist['orders_before'])} earlier orders | wrk | {C} | {f(acc_hist)} accepted/s | {hr['latency_ms']['p50']} ms | {hr['latency_ms']['p99']} ms | "
    f"{result['ratios']['accepted_c64_after_history_over_empty']}× the empty database side by side "
    f"({f(acc_hist_ref)} accepted/s, slice by slice {', '.join(str(x) for x in hist['slice_ratios']) or '–'}), "
    f"{result['ratios']['accepted_c64_after_history_over_row_4a']}× row 4a; "
    f"database {f(hist['database_bytes'] / 2**20)} MiB; answers {hr['answers']}; {f(hr.get('orders_in_db'))} orders written |",
)
ha = result["ha"]
lines.insert(
    len(lines) - 1,
    f"| 4h | reservations on the replicated topology (Patroni, {ha['sync_standbys']} synchronous standby, HAProxy) | wrk | {C} | "
    f"{f(acc_ha)} accepted/s | {ha_row['latency_ms']['p50']} ms | {ha_row['latency_ms']['p99']} ms | "
    f"{result['ratios']['accepted_c64_ha_over_single_node']}× row 4a; synchronous_commit = {ha['synchronous_commit']}; "
    f"answers {ha_row['answers']}; {f(ha_row.get('orders_in_db'))} orders read back through :5432 |"
    if ha_row else "| 4h | reservations on the replicated topology | wrk | – | did not run | – | – | see the raw outputs (ha.txt) |",
)
if bd:
    e2e = bv.get("e2e_ms") or {}
    lines.append(
        f"| 5b | large drop: S={bd.get('units')}, N={bd.get('customers')} | drop simulator | {bd.get('concurrency')} | "
        f"{f(bv.get('throughput_after_first_201_per_s'))} vouchers/s from the first 201 | e2e {f(e2e.get('p50'))} ms | e2e {f(e2e.get('p99'))} ms | "
        f"first 201 to last voucher_ready {bv.get('first_201_to_last_voucher_s')} s; vouchers {bv.get('delivered')}/{bv.get('expected')}; "
        f"{f(bd.get('accepted_per_s'))} accepted/s; invariants {'hold' if bd.get('ok') else 'FAILED'} |"
    )
r = result["renderer"]
lines.append(
    f"| 6 | renderer alone, one thread: whole / stamped (drop's mix of scripts) / stamped (Latin) | pdf-generator bench-render | 1 | "
    f"{r['whole']['us_per_voucher']} / {r['mix']['us_per_voucher']} / {r['latin']['us_per_voucher']} µs per voucher | – | – | "
    f"{r['speedup_mix']}× and {r['speedup_latin']}× faster than whole; {f(r['whole']['bytes_per_voucher'])} / {f(r['mix']['bytes_per_voucher'])} / "
    f"{f(r['latin']['bytes_per_voucher'])} bytes; {round(100 * r['mix']['stamped_share'])}% of the mix stamped |"
)
br = result["browsers"]
for step in (br or {}).get("steps", []):
    lines.append(
        f"| 7 | open pages: {f(step['connections'])} Web-STOMP connections, each subscribed to `stock.<sku>` | dev/bench/browsers.py | – | "
        f"stock message to all in {f(step['stock_fanout_ms'])} ms ({f(step['stock_delivered'])} got it) | – | – | "
        f"broker {f(step['broker_memory_mib'])} MiB ({step['broker_kib_per_connection']} KiB per connection), "
        f"{step['broker_cpu_ms_per_connection_opened']} ms CPU per connection opened, idle {round(100 * step['broker_idle_cpu_share'], 1)}% of a core; "
        f"one voucher.<id> message to its page in {step['voucher_ms']} ms; {step['refused']} refused |"
    )
if br is None:
    lines.append("| 7 | open pages | dev/bench/browsers.py | – | did not run | – | – | see browsers.txt in the raw outputs |")
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
    f"| accepted orders/s (C={C}) after the history ÷ on an empty database, in alternating slices | {result['ratios']['accepted_c64_after_history_over_empty']} |",
    f"| accepted orders/s (C={C}) after the history ÷ row 4a | {result['ratios']['accepted_c64_after_history_over_row_4a']} |",
    f"| accepted orders/s (C={C}) on the replicated topology ÷ single node | {result['ratios']['accepted_c64_ha_over_single_node']} |",
    f"| renderer: whole ÷ stamped, µs per voucher (the drop's mix) | {result['ratios']['render_whole_over_stamped_mix']} |",
    "",
    "## Targets (issues 7 and 21)",
    "",
    "| target | measured | |",
    "|---|---|---|",
]
for t in result["targets"]:
    lines.append(f"| {t['target']} | {t['measured']} | {'met' if t['met'] else '**missed**'} |")
if br and br.get("steps"):
    last = br["steps"][-1]
    visitors = 100_000
    per_conn_kib = last["broker_kib_per_connection"]
    mem_gib = per_conn_kib * visitors / 2**20
    idle_cores = last["broker_idle_cpu_us_per_connection_s"] * visitors / 1e6
    open_core_s = last["broker_cpu_ms_per_connection_opened"] * visitors / 1000
    # A node may use 40% of its memory before RabbitMQ's default high watermark
    # blocks publishers; size 8 GiB nodes to stay at half of that.
    node_gib, usable = 8, 0.4 * 0.5
    nodes = max(1, math.ceil(mem_gib / (node_gib * usable)))
    fanout_per_conn_us = last["stock_fanout_ms"] * 1000 / max(last["connections"], 1)
    result["browsers"]["extrapolated_100k"] = {
        "broker_memory_gib": round(mem_gib, 1),
        "idle_cores": round(idle_cores, 2),
        "core_seconds_to_open_all": round(open_core_s),
        "stock_fanout_s_one_node": round(fanout_per_conn_us * visitors / 1e6, 1),
        "nodes_8gib": nodes,
    }
    x = result["browsers"]["extrapolated_100k"]
    lines += [
        "",
        "## Open pages at 100,000 visitors (extrapolated from row 7)",
        "",
        f"From the last step ({f(last['connections'])} connections), linearly: {f(visitors)} open pages would hold "
        f"**{x['broker_memory_gib']} GiB** of broker memory ({per_conn_kib} KiB each), keep **{x['idle_cores']} cores** busy "
        f"with heart-beats and bookkeeping when nothing happens, cost about {f(x['core_seconds_to_open_all'])} core-seconds "
        f"to open (a drop's opening minute, if they all arrive at once), and one `stock.<sku>` message would take about "
        f"{x['stock_fanout_s_one_node']} s to reach them all from one node. With 8 GiB nodes kept at half of RabbitMQ's "
        f"default memory high watermark (0.4), that is **{x['nodes_8gib']} node(s)** for the browsers alone. "
        "That is the design not kept, every visitor on the broker: the page opens Web-STOMP only once it holds "
        "an order, so the broker holds at most one connection per unit on offer, and a visitor holds one of "
        "order-api's event streams instead (the SSE section of the notes below; docs/operations.md, "
        "\"The browsers' broker\").",
    ]

if bd.get("cpu_ms_per_voucher"):
    t = bd.get("pdf_generator_timings") or {}
    lines += [
        "",
        "## Where a voucher's time goes (row 5b)",
        "",
        f"CPU per delivered voucher over the {f(bd.get('units'))}-unit drop, by process ({bd['cpu_ms_per_voucher_total']} ms in all, "
        f"on {m.get('cpus')} cores; from /proc, dev/bench/cpu.py), and pdf-generator's own timings (wall clock, means of its histograms):",
        "",
        "| process | CPU ms per voucher |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in bd["cpu_ms_per_voucher"].items()]
    lines += [
        "",
        "| pdf-generator step | mean | count |",
        "|---|---|---|",
    ]
    for key, label in [
        ("render", "render one voucher (in the blocking pool)"),
        ("upload_attempt", "one S3 PUT attempt"),
        ("handle_message", "one orders or event message, taken to settled"),
        ("notify_publish", "one voucher_ready publish to its confirm"),
        ("end_to_end", "order commit to voucher_ready publish"),
    ]:
        lines.append(f"| {label} | {(t.get(key) or {}).get('mean_ms')} ms | {f((t.get(key) or {}).get('count'))} |")
    lines.append("")
    lines.append(f"Renders: {bd.get('renders')}.")
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
    "are listed. The 4a/4b order counts are read back from PostgreSQL. RSS is sampled from /proc every 200 ms during 4b. "
    f"Rows 2, 3 and 4a, whose ratios are targets, run in turn in {http['ceiling_healthz'].get('slices', 1)} slices each "
    "(together as long as one row), so that each ratio compares runs of the same minute on a host whose speed drifts; "
    "a reservation slice starts once the outbox relay has published the slice before it. A sliced row's throughput "
    "is its slices' total, and its percentiles are of the slices' merged latency distributions (each known at the "
    "percentiles wrk_count.lua prints, linearly in between).",
    "- **5**: the `drop` simulator (order-api/src/bin/drop.rs) against a fresh order-api and pdf-generator (release, "
    f"`PREFETCH={m.get('drop_prefetch', '32')}` uploads in flight), on a fresh database. Accepted orders/s is over the window from the first request to the last 201; sold-out/s from "
    "the first sold-out answer to the last answer; voucher latency from each 201 to its `voucher_ready` on "
    "`voucher.<order_id>`; voucher throughput is delivered vouchers over the window from the first request to the last voucher.",
    f"- **4c**: as 4a, on a database that already holds {f(result['history']['orders_before'])} orders of earlier drops "
    "(dev/bench/history.sql: sold-out products of 10,000 orders each, bulk-loaded with one `INSERT ... SELECT generate_series` "
    "and the keys built after; the database is kept between runs, named for the schema and the load). "
    f"This run's load took {result['history']['load_secs']} s (0: kept from an earlier run). "
    "Because this host's speed drifts within minutes, 4c is measured side by side: two order-apis run at once, one on "
    "the history and one on a fresh database, each after a 2 s warm-up and a `CHECKPOINT` (the history's tables "
    "vacuumed first, after the earlier runs' orders were deleted); wrk alternates between them in "
    f"{result['http']['reservations_after_history'].get('slices', '–')} slices of each, the empty database first, and the ratio is of their totals; the percentiles are merged "
    "as for the sliced rows above.",
    "- **4h**: as 4a, on the replicated topology of `make up-ha` in a private network namespace (dev/bench/ha.sh): "
    "order-api reaches PostgreSQL through HAProxy's read-write entry point on the Patroni leader, whose commits wait "
    "for a synchronous standby (`synchronous_mode_strict`), and RabbitMQ's three clustered nodes through HAProxy. "
    "The order count is read back through the entry point. Its ratio to 4a is what a 201 that survives a failover costs.",
    "- **5b**: as 5, with 10,000 units; vouchers/s over the window from the first 201 to the last `voucher_ready`. "
    "The CPU of every process in the bench's network namespace is read from /proc before and after the drop.",
    "- **6**: `pdf-generator bench-render N` (pdf-generator/src/bench.rs): the same N orders rendered whole (the renderer "
    "before templates) and stamped onto the product's template, on one thread, after a warm-up.",
    "- **7**: dev/bench/browsers.py opens Web-STOMP connections as the page does (STOMP 1.2 as the stack's browser "
    "user and vhost, heart-beats 10 s both ways, one subscription to `/exchange/amq.topic/stock.<sku>`), in cumulative "
    "steps, 200 at a time. Broker memory is the management API's `mem_used` less the value before the first step; CPU "
    "is the broker's from /proc, while opening and over 10 idle seconds. Fan-out is from the AMQP publish to the last "
    "page's MESSAGE frame; the voucher message goes to one extra page subscribed to its own `voucher.<id>`.",
    "",
]
notes = Path(__file__).with_name("notes.md")
if notes.exists():
    lines += notes.read_text().rstrip().splitlines() + [""]
(docs / "benchmarks.md").write_text("\n".join(lines))
print(f"report: wrote {docs / 'benchmarks.md'}, benchmarks.json, benchmarks.svg")
