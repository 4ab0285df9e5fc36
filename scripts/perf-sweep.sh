#!/usr/bin/env bash
# Runs the benchmark harness over the configurations docs/PERFORMANCE.md reports, writing one JSON file each
# to docs/perf/, then draws the plots. Takes about ten minutes on a 2-core machine.
#
#   scripts/perf-sweep.sh            # SQLite and PostgreSQL (postgres://postgres@127.0.0.1:5432)
#
# Needs a release build (`cargo build --release --workspace`) and, for the plots, Python with matplotlib
# (`PYTHON=path/to/python` to choose one).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/perf-common.sh

throughput=(--events 4000 --concurrency 128 --publishers 64)

# Throughput, 10 webhooks, and how it holds as the history grows.
for backlog in 0 100000 1000000; do
    run "sqlite-backlog-$backlog" "${throughput[@]}" --webhooks 10 --backlog "$backlog"
    fresh_pg
    run "postgres-backlog-$backlog" "${throughput[@]}" --webhooks 10 --backlog "$backlog" --database-url "$pg_bench"
done

# Fan-out: the same number of deliveries spread over more webhooks per event.
for webhooks in 1 5 20; do
    run "sqlite-fanout-$webhooks" --events $((40000 / webhooks)) --concurrency 128 --publishers 64 --webhooks "$webhooks"
done

# Latency at a steady 1,000 events/s to one webhook.
run sqlite-latency-1000 --events 10000 --webhooks 1 --rate 1000 --concurrency 32
fresh_pg
run postgres-latency-1000 --events 10000 --webhooks 1 --rate 1000 --concurrency 32 --database-url "$pg_bench"

# Memory: 10,000 deliveries in flight to slow receivers (no ceiling run: its 10,000 connections would need
# 20,000 file descriptors in the bench process). First with the daemon's default cap of 256 requests at once
# per host, then with no effective cap, one connection per delivery.
run sqlite-inflight-10000 --events 1000 --webhooks 10 --concurrency 10000 --latency 3s --publishers 64 \
    --ceiling-duration 0s
run sqlite-inflight-10000-uncapped --events 1000 --webhooks 10 --concurrency 10000 --latency 3s \
    --publishers 64 --ceiling-duration 0s --max-connections-per-host 10000

"${PYTHON:-python3}" scripts/plot-perf.py "$out"
