"""Draws docs/perf/throughput.png from the JSON files scripts/perf-sweep.sh writes: end-to-end deliveries/s
against the size of the delivery history (both databases) and against fan-out (SQLite), each next to the raw
ceiling measured in the same run."""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/perf")


def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


fig, (backlog_ax, fanout_ax) = plt.subplots(1, 2, figsize=(11, 4.2))

for database, style in (("sqlite", "o-"), ("postgres", "s-")):
    points = [(r["backlog"], r) for r in (load(f"{database}-backlog-{n}") for n in (0, 100000, 1000000)) if r]
    if points:
        xs = [max(b, 1) for b, _ in points]
        backlog_ax.plot(xs, [r["deliveries_per_second"] for _, r in points], style, label=f"{database}: end to end")
        backlog_ax.plot(xs, [r["raw_ceiling_per_second"] for _, r in points], style, alpha=0.3,
                        label=f"{database} run: raw ceiling")
backlog_ax.set_xscale("log")
backlog_ax.set_yscale("log")
backlog_ax.set_xlabel("deliveries already in the database (0 plotted at 1)")
backlog_ax.set_ylabel("deliveries / s")
backlog_ax.set_title("Throughput against history size (10 webhooks)")
backlog_ax.legend(fontsize=8)
backlog_ax.grid(True, which="both", alpha=0.3)

fanout = [(n, load(f"sqlite-fanout-{n}") if n != 10 else load("sqlite-backlog-0")) for n in (1, 5, 10, 20)]
fanout = [(n, r) for n, r in fanout if r]
if fanout:
    fanout_ax.plot([n for n, _ in fanout], [r["deliveries_per_second"] for _, r in fanout], "o-", label="end to end")
    fanout_ax.plot([n for n, _ in fanout], [r["raw_ceiling_per_second"] for _, r in fanout], "o-", alpha=0.3,
                   label="raw ceiling (same run)")
fanout_ax.set_yscale("log")
fanout_ax.set_xlabel("webhooks per event (fan-out)")
fanout_ax.set_ylabel("deliveries / s")
fanout_ax.set_title("Throughput against fan-out (SQLite, 40,000 deliveries)")
fanout_ax.legend(fontsize=8)
fanout_ax.grid(True, which="both", alpha=0.3)

fig.tight_layout()
fig.savefig(out / "throughput.png", dpi=110)
print(f"wrote {out / 'throughput.png'}")
