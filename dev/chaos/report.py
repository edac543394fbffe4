"""Writes docs/reliability.md and docs/reliability.json from a `make chaos` run.

dev/chaos.sh calls it after its drops, with the directory holding each drop's
checker output (<drop>.check.json, from dev/chaos/check.py) and simulator
report (<drop>.drop.json). One row per drop: the counts that must be zero,
the orders acknowledged and held, the errors clients retried through, and the
time from each fault to the first 201 of a request sent after it. Nothing here
is typed by hand: every figure comes from the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys

WHAT = {
    "pg-primary-lost": "PostgreSQL primary node lost: SIGKILL to the leader's Patroni and postmaster",
    "pg-postmaster-killed": "PostgreSQL primary process crashed: SIGKILL to the postmaster alone",
    "pg-primary-paused": "PostgreSQL primary paused: SIGSTOP to Patroni and every PostgreSQL process "
                         "for TTL + 5 s, then SIGCONT",
    "rabbit-leader-killed": "RabbitMQ node leading pdf-generator.orders: SIGKILL, then restarted",
    "order-api-killed": "order-api replica: SIGKILL with requests in flight, then restarted",
    "pdf-generator-killed": "pdf-generator replica: SIGKILL; the other replica's notifier carries on",
    "redis-stopped": "Redis stopped, then started",
    "s3-stopped": "S3 gateway stopped, then started",
    "all": "every fault above in turn, in one drop",
}

ZERO = [
    ("lost_acknowledged", "lost 201s"),
    ("oversold", "oversold"),
    ("reserved_mismatch", "reserved ≠ orders"),
    ("duplicate_phones", "duplicate phones"),
    ("replay_mismatches", "retries not replayed"),
    ("committed_but_refused", "held but refused"),
    ("missing_voucher_ready_status", "not voucher_ready"),
    ("missing_voucher_ready_message", "no voucher_ready message"),
    ("missing_pdfs", "no PDF"),
    ("unparseable_pdfs", "PDF does not parse"),
    ("vouchers_without_order", "PDF without order"),
    ("messages_without_order", "message without order"),
]


def git(*args: str) -> str:
    r = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return r.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--faults", required=True, help="the drops, space-separated, in run order")
    ap.add_argument("--seconds", type=int, required=True, help="the drops' wall time, topology start included")
    ap.add_argument("--up-seconds", type=int, required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    rows = []
    for name in a.faults.split():
        path = os.path.join(a.dir, f"{name}.check.json")
        if not os.path.exists(path):
            rows.append({"drop": name, "ok": False, "missing": True})
            continue
        check = json.load(open(path, encoding="utf-8"))
        drop = json.load(open(os.path.join(a.dir, f"{name}.drop.json"), encoding="utf-8"))
        rows.append({
            "drop": name,
            "ok": check["ok"],
            "failures": check["failures"],
            "units": drop["units"],
            "customers": drop["customers"],
            "drop_duration_s": drop["duration_s"],
            "counts": check["counts"],
            "errors_by_kind": check["errors_by_kind"],
            "faults": [{k: f.get(k) for k in ("fault", "target", "recovery_s", "healed_after_s")}
                       for f in check["faults"]],
            "settle_s": check["settle_s"],
        })
    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    load = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
    report = {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "machine": {"cpus": os.cpu_count(), "loadavg_1_5_15_at_end": [float(x) for x in load]},
        "total_s": a.seconds,
        "topology_up_s": a.up_seconds,
        "must_be_zero": [k for k, _ in ZERO],
        "rows": rows,
        "ok": all(r["ok"] for r in rows),
    }
    with open(a.json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(a.md, "w", encoding="utf-8") as f:
        f.write(markdown(report))
    print(f"report: wrote {a.md} and {a.json}")
    return 0


def fmt_s(x) -> str:
    return "-" if x is None else f"{x:.1f} s"


def markdown(r: dict) -> str:
    rows = [x for x in r["rows"] if not x.get("missing")]
    lost = sum(x["counts"]["lost_acknowledged"] for x in rows)
    over = sum(x["counts"]["oversold"] for x in rows)
    dup = sum(x["counts"]["duplicate_phones"] for x in rows)
    miss = sum(x["counts"]["missing_voucher_ready_status"] + x["counts"]["missing_voucher_ready_message"]
               + x["counts"]["missing_pdfs"] for x in rows)
    acked = sum(x["counts"]["acknowledged_orders"] for x in rows)
    single = [f for x in rows if x["drop"] != "all" for f in x["faults"]]
    worst = max(single, key=lambda f: f["recovery_s"] or 0, default=None)
    out = [
        "# Reliability: the fault harness's last run",
        "",
        "Written by `make chaos` (dev/chaos.sh, dev/chaos/check.py, dev/chaos/report.py); do not edit by hand.",
        f"Run {r['date_utc']} at commit {r['commit']}, on {r['machine']['cpus']} CPUs "
        f"(load average {', '.join(map(str, r['machine']['loadavg_1_5_15_at_end']))} at the end). The numbers are in "
        "[reliability.json](reliability.json).",
        "",
        "## Headline",
        "",
        f"{'Every' if r['ok'] else 'NOT every'} count holds: over {len(rows)} drops and "
        f"{acked} acknowledged orders, {lost} acknowledged orders lost, {over} oversold, "
        f"{dup} duplicate phones, {miss} missing vouchers."
        + (f" The slowest recovery from a single fault: {worst['fault']}, {fmt_s(worst['recovery_s'])} "
           "from the fault to the first 201 of a request sent after it." if worst else ""),
        f"The whole run took {r['total_s']} s ({r['topology_up_s']} s of it starting the topology).",
        "",
        "## What ran",
        "",
        "The replicated topology of `make up-ha` (three PostgreSQL instances under Patroni with "
        "`synchronous_mode_strict`, HAProxy on `GET /primary`, three clustered RabbitMQ nodes with "
        "three-member quorum queues, two order-api and two pdf-generator replicas) in a private network "
        "namespace. For each fault a paced drop of the simulator (`drop --rate`): every customer holds an "
        "Idempotency-Key and retries 503s, 5xx and timeouts with it (at most 40 times, honouring "
        "`Retry-After`), as the page does, and every request and answer is recorded (`drop --history`). "
        "Each fault strikes once a share of the units sold, lasts as the table says, and is healed "
        "(`dev/stack.sh ha-heal`, `dev/run.sh ha-heal`) before the next one. Then the checker compares "
        "the history with PostgreSQL (through the read-write entry point, so whichever member leads now), "
        "the S3 bucket (every voucher downloaded and parsed by poppler's `pdfinfo`) and a three-member "
        "quorum queue bound to `voucher.*` that collected every `voucher_ready` the notifiers published.",
        "",
        "| drop | fault |",
        "|---|---|",
    ]
    out += [f"| {x['drop']} | {WHAT.get(x['drop'], '')} |" for x in r["rows"]]
    out += [
        "",
        "## Counts (each of the last twelve must be 0)",
        "",
        "| drop | S / N | requests | 201 ids | in PG | errors retried | recovery | "
        + " | ".join(label for _, label in ZERO) + " | ok |",
        "|---|---|---|---|---|---|---|" + "---|" * len(ZERO) + "---|",
    ]
    for x in r["rows"]:
        if x.get("missing"):
            out.append(f"| {x['drop']} | did not run |" + " |" * (len(ZERO) + 6))
            continue
        c = x["counts"]
        rec = (", ".join(f"{fmt_s(f['recovery_s'])} (healed {fmt_s(f['healed_after_s'])})" for f in x["faults"])
               if x["drop"] != "all" else "below")
        out.append(
            f"| {x['drop']} | {x['units']} / {x['customers']} | {c['requests']} | {c['acknowledged_orders']} | "
            f"{c['pg_orders']} | {c['errors']} | {rec} | "
            + " | ".join(str(c[k]) for k, _ in ZERO) + f" | {'yes' if x['ok'] else 'NO'} |")
    allrow = next((x for x in rows if x["drop"] == "all"), None)
    if allrow:
        out += ["", "## Recovery in the drop with every fault", "",
                "| fault | hit | first 201 after it | healed after |", "|---|---|---|---|"]
        out += [f"| {f['fault']} | {f['target']} | {fmt_s(f['recovery_s'])} | {fmt_s(f['healed_after_s'])} |"
                for f in allrow["faults"]]
    out += [
        "",
        "## How to read it",
        "",
        "- *recovery* is the time from the moment the fault took effect to the first 201 answering a "
        "request sent after it. Faults that do not stop reservations (a broker node, a replica, Redis, "
        "S3) recover in the time of one request; a PostgreSQL failover takes Patroni's TTL and a "
        "promotion. `-` means no request was sent after the fault while stock remained. *healed* is "
        "the time from the fault until the harness had made the topology whole again (every member, "
        "node and replica back, a synchronous standby streaming): it includes the fault's own length.",
        "- *errors retried* are the answers clients retried with their key: 503 `unavailable` (from "
        "order-api or HAProxy when no replica is ready), timeouts and refused connections. None of them "
        "is a lost order: the counts after the retries are what the table checks.",
        "- *held but refused*: an order PostgreSQL holds whose customer was last told `sold_out` or "
        "`already_reserved`. *retries not replayed*: a request with a key that had succeeded that did not "
        "return the same order id.",
        "- The checker waits (bounded) until every order of the drop is `voucher_ready` and announced; "
        "duplicate `voucher_ready` messages are allowed (at-least-once delivery) and counted in the JSON.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
