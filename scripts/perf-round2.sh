#!/usr/bin/env bash
# Runs the second round's scenarios of docs/PERFORMANCE.md (the production shape over HTTPS, noisy neighbours,
# an idle daemon after 20,000 webhooks, requests outstanding over HTTP/1.1 and HTTP/2), writing one JSON file each to docs/perf/round2-*.json, then draws
# docs/perf/round2.png. Takes about forty minutes on a 2-core machine.
#
#   scripts/perf-round2.sh           # SQLite and PostgreSQL (postgres://postgres@127.0.0.1:5432)
#
# Needs a release build (`cargo build --release --workspace`) and, for the plot, Python with matplotlib
# (`PYTHON=path/to/python` to choose one).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/perf-common.sh

# The production shape: 2,000 accounts of 2 webhooks on 200 hosts, HTTPS; one event per call, then ten.
shape=(--tls --events 20000 --accounts 2000 --webhooks-per-account 2 --receivers 200 --hosts)
run round2-production-shape-tls-sqlite "${shape[@]}"
run round2-production-shape-tls-batch10-sqlite "${shape[@]}" --batch 10
fresh_pg
run round2-production-shape-tls-postgres "${shape[@]}" --database-url "$pg_bench"
fresh_pg
run round2-production-shape-tls-batch10-postgres "${shape[@]}" --batch 10 --database-url "$pg_bench"

# Latency at a steady 1,000 events/s (2,000 deliveries/s) in the same shape.
run round2-latency-1000-sqlite "${shape[@]}" --rate 1000
fresh_pg
run round2-latency-1000-postgres "${shape[@]}" --rate 1000 --database-url "$pg_bench"

# Noisy neighbours: the same shape without and with 20 accounts of 5 endpoints that never answer, in
# alternating pairs (the machine drifts between runs; compare the pairs' medians).
for n in 1 2 3 4 5 6 7 8 9 10; do
    run "round2-noisy-without-$n" "${shape[@]}"
    run "round2-noisy-with-$n" "${shape[@]}" --slow-accounts 20 --slow-webhooks-per-account 5 --slow-latency hang
done
# The same, six times as long (25-35 s a run): the hung requests time out (15 s) and their retries are sent
# during the run, as in production. The target is judged on these pairs.
timeout=(--tls --events 120000 --accounts 2000 --webhooks-per-account 2 --receivers 200 --hosts)
for n in 1 2 3 4 5 6 7 8; do
    run "round2-noisy-timeout-without-$n" "${timeout[@]}"
    run "round2-noisy-timeout-with-$n" "${timeout[@]}" --slow-accounts 20 --slow-webhooks-per-account 5 --slow-latency hang
done

# The endpoint set's scale: 20,000 webhooks on 2,000 hosts, about one delivery each, then 150 s idle.
run round2-idle-daemon-sqlite --tls --events 10000 --accounts 10000 --webhooks-per-account 2 --receivers 2000 \
    --hosts --ceiling-duration 1s --linger 150s

# Memory per outstanding request: 10,000 requests outstanding at once over HTTPS (receivers answering after 3 s).
run round2-inflight-10000-tls-sqlite --tls --events 1000 --webhooks 10 --receivers 4 --latency 3s \
    --concurrency 10000 --max-connections-per-host 10000 --ceiling-duration 0s
# The same on 100 hosts (a webhook each), to endpoints speaking HTTP/1.1, then HTTP/2 (a hyper endpoint takes
# 200 streams at once on a connection, so each host gets 100).
outstanding=(--tls --events 100 --webhooks 100 --receivers 100 --hosts --latency 3s --concurrency 10000
    --max-connections-per-host 10000 --ceiling-duration 0s)
run round2-inflight-10000-tls-100hosts-sqlite "${outstanding[@]}"
run round2-inflight-10000-http2-sqlite "${outstanding[@]}" --http2

# The production shape to endpoints that speak HTTP/2 (the ceiling's client speaks it too).
run round2-production-shape-http2-sqlite "${shape[@]}" --http2

"${PYTHON:-python3}" scripts/plot-round2.py "$out"
