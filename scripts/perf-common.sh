# What the perf scripts share: where they write, the PostgreSQL database they benchmark on (made afresh by
# fresh_pg), and run NAME FLAGS…, one bench run into $out/NAME.json. Sourced by perf-sweep.sh and perf-round2.sh.
bench=target/release/kit-webhooks
out=docs/perf
mkdir -p "$out"
pg_admin=${KIT_BENCH_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/test}
pg_bench=${KIT_BENCH_PG:-postgres://postgres@127.0.0.1:5432/kit_bench}

fresh_pg() {
    psql "$pg_admin" -qc "DROP DATABASE IF EXISTS kit_bench WITH (FORCE)" 2>/dev/null
    psql "$pg_admin" -qc "CREATE DATABASE kit_bench"
}

run() { # name, then bench flags
    local name=$1
    shift
    echo "== $name: $*"
    "$bench" bench --json "$out/$name.json" "$@" | tail -n 14
}
