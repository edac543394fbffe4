-- wrk script shared by every HTTP row of `make bench`, so each row pays the
-- same per-response cost: it counts answers by status and prints one JSON
-- line ("WRK_JSON {...}") with the totals and latency percentiles.
--
-- BENCH_MODE=get   GET BENCH_PATH (default /healthz)
-- BENCH_MODE=post  POST /v1/orders for BENCH_SKU, a distinct valid phone per
--                  request (BENCH_PHONE_BASE offsets the numbers per row)

local threads = {}

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

function init(args)
    mode = os.getenv("BENCH_MODE") or "get"
    path = os.getenv("BENCH_PATH") or "/healthz"
    sku = os.getenv("BENCH_SKU") or ""
    -- Threads draw from disjoint blocks of 4,000,000 numbers.
    base = tonumber(os.getenv("BENCH_PHONE_BASE") or "0") + tid * 4000000
    counter = 0
    codes = {}
end

function request()
    if mode == "post" then
        counter = counter + 1
        local phone = string.format("+35840%07d", (base + counter) % 10000000)
        local body = '{"sku":"' .. sku .. '","first_name":"Bench","last_name":"Mark","phone":"' .. phone .. '"}'
        return wrk.format("POST", "/v1/orders", { ["Content-Type"] = "application/json" }, body)
    end
    return wrk.format("GET", path)
end

function response(status, headers, body)
    local key = tostring(status)
    codes[key] = (codes[key] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        local c = t:get("codes")
        for k, v in pairs(c) do
            total[k] = (total[k] or 0) + v
        end
    end
    local parts = {}
    for k, v in pairs(total) do
        table.insert(parts, string.format('"%s":%d', k, v))
    end
    -- The latency at these percentiles too, so that the report can merge
    -- the percentiles of a row run in slices (dev/bench/report.py).
    local qs = {}
    for _, p in ipairs({ 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 96, 97, 98, 99, 99.5, 99.9 }) do
        table.insert(qs, string.format("[%s,%d]", tostring(p), latency:percentile(p)))
    end
    local e = summary.errors
    io.write(string.format(
        'WRK_JSON {"duration_us":%d,"requests":%d,"codes":{%s},' ..
        '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
        '"latency_us":{"p50":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f},"quantiles_us":[%s]}\n',
        summary.duration, summary.requests, table.concat(parts, ","),
        e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(95), latency:percentile(99),
        latency.max, latency.mean, table.concat(qs, ",")))
end
