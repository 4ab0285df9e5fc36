"""Draws docs/perf/round2.png from the round-2 JSON files (scripts/perf-round2.sh writes them): one panel per
scenario of docs/PERFORMANCE.md's second round. The production shape's ratio to the HTTPS ceiling of the same run,
one event per call and ten (PublishEvents), against the targets; the noisy neighbours' effect on the other
accounts' throughput and p99, pair by pair, step by step; the latency at a steady 1,000 events/s; the daemon's memory as a
run of 20,000 webhooks ends and after it has been idle; where an outstanding request's heap goes; the daemon's
memory with 10,000 requests outstanding, to endpoints speaking HTTP/1.1 and HTTP/2."""

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


fig, axes = plt.subplots(2, 3, figsize=(18, 8.8))
(shape_ax, noisy_ax, latency_ax), (idle_ax, heap_ax, outstanding_ax) = axes

# Production shape: ratio to the HTTPS ceiling, per database and calls.
bars = []
for database, target in (("sqlite", 25), ("postgres", 15)):
    for label, name in (("1 / call", f"round2-production-shape-tls-{database}"),
                        ("10 / call", f"round2-production-shape-tls-batch10-{database}")):
        run = load(name)
        if run:
            bars.append((f"{database}\n{label}", run["ratio_to_ceiling"] * 100, target))
shape_ax.bar([b[0] for b in bars], [b[1] for b in bars], color=["C0", "C0", "C1", "C1"][: len(bars)])
for index, (_, _, target) in enumerate(bars):
    shape_ax.hlines(target, index - 0.4, index + 0.4, colors="k", linestyles="dashed")
shape_ax.set_ylabel("% of the HTTPS ceiling (same run)")
shape_ax.set_title("Production shape (2,000 accounts × 2, 200 hosts)\ndashed: target")
shape_ax.grid(True, axis="y", alpha=0.3)

# Noisy neighbours: pair by pair (alternating runs without and with 20 accounts' hung endpoints, long enough for
# the hung requests to time out, 15 s, and be retried), how the other accounts' throughput and p99 moved, for the
# steps that measured the target: step 58's runs (throughput only), and steps 71 and 72's.
def noisy_pairs(prefix):
    pairs = [(load(f"{prefix}without-{n}"), load(f"{prefix}with-{n}")) for n in range(1, 11)]
    return [(a, b) for a, b in pairs if a and b]


p99_ax = noisy_ax.twinx()
for colour, (label, prefix) in enumerate((("step 58", "round2-noisy-timeout-"),
                                          ("step 71", "round2-noisy-timeout-step71-"),
                                          ("step 72", "round2-noisy-timeout-step72-"))):
    pairs = noisy_pairs(prefix)
    if not pairs:
        continue
    xs = range(1, len(pairs) + 1)
    noisy_ax.plot(xs, [(b["deliveries_per_second"] / a["deliveries_per_second"] - 1) * 100 for a, b in pairs],
                  "o-", color=f"C{colour}", label=f"throughput, {label}")
    if label != "step 58":  # before step 59's fix its p99 moved 0.7-8.2x: off this scale
        p99_ax.plot(xs, [b["latency_ms"]["p99"] / a["latency_ms"]["p99"] for a, b in pairs], "^:",
                    color=f"C{colour}", label=f"p99, {label}")
noisy_ax.axhline(-10, color="k", linestyle="dashed", label="target: throughput within 10 %")
noisy_ax.axhline(0, color="grey", linewidth=0.5)
noisy_ax.set_ylabel("others' deliveries/s, with against without (%)")
noisy_ax.set_ylim(-30, 10)
p99_ax.axhline(2, color="k", linestyle="dotted", label="target: p99 within 2×")
p99_ax.set_ylabel("others' p99, with / without (×)")
p99_ax.set_ylim(0, 4)
handles = noisy_ax.get_legend_handles_labels()[0] + p99_ax.get_legend_handles_labels()[0]
noisy_ax.legend(handles=handles, fontsize=6, loc="lower left", ncol=2)
noisy_ax.set_xlabel("pair of runs (alternating)")
noisy_ax.set_title("Noisy neighbours: 20 accounts × 5 hung endpoints, timeout in the run\n(SQLite, production shape, HTTPS, 120,000 events)")
noisy_ax.grid(True, alpha=0.3)

# Latency at a steady 1,000 events/s: p50 and p99 per database, against the targets.
steady = [(database, load(f"round2-latency-1000-{database}")) for database in ("sqlite", "postgres")]
steady = [(database, run) for database, run in steady if run]
if steady:
    xs = range(len(steady))
    latency_ax.bar([x - 0.2 for x in xs], [run["latency_ms"]["p50"] for _, run in steady], 0.4, label="p50")
    latency_ax.bar([x + 0.2 for x in xs], [run["latency_ms"]["p99"] for _, run in steady], 0.4, label="p99")
    latency_ax.set_xticks(list(xs), [database for database, _ in steady])
latency_ax.axhline(5, color="C0", linestyle="dashed", label="target p50: 5 ms")
latency_ax.axhline(25, color="C1", linestyle="dashed", label="target p99: 25 ms")
latency_ax.set_ylabel("publish → receipt (ms)")
latency_ax.set_title("Latency at 1,000 events/s\n(production shape, HTTPS)")
latency_ax.legend(fontsize=8)
latency_ax.grid(True, axis="y", alpha=0.3)

# The daemon's memory once idle.
scale = load("round2-idle-daemon-sqlite")
if scale and scale.get("daemon_idle"):
    idle = scale["daemon_idle"]
    idle_ax.bar(["peak", "run ended", f"after {idle['linger_seconds']:.0f} s idle"],
                [scale["daemon"]["peak_rss_mib"], idle["daemon_rss_at_end_mib"], idle["daemon_rss_after_mib"]],
                color=["C3", "C3", "C2"])
idle_ax.axhline(150 / 1.048576, color="k", linestyle="dashed", label="target: 150 MB")
idle_ax.set_ylabel("daemon resident memory (MiB)")
idle_ax.set_title("Idle daemon: 20,000 webhooks on 2,000 hosts\n(SQLite, HTTPS, about one delivery each)")
idle_ax.legend(fontsize=8)
idle_ax.grid(True, axis="y", alpha=0.3)

# Where an outstanding request's heap goes (heaptrack), against the target: over HTTP/1.1 a connection each
# (2,000 outstanding), over HTTP/2 streams of a connection per host (10,000 outstanding, after step 57).
colour = 0
for bar, name in (("HTTP/1.1\nstep 53\n(2,000 out)", "round2-inflight-heap-2000-tls"),
                  ("HTTP/2\nstep 57\n(10,000 out)", "round2-inflight-heap-10000-http2"),
                  ("HTTP/1.1\nstep 62\n(2,000 out)", "round2-inflight-heap-2000-tls-step62"),
                  ("HTTP/1.1\nstep 66\n(10,000 out)", "round2-inflight-heap-10000-tls-step66")):
    heap = load(name)
    if not heap:
        continue
    bottom = 0.0
    protocol = " ".join(bar.split("\n")[:2])
    for what, kb in heap["per_request_kb"].items():
        # Only the latest profile's parts are named, or the legend would cover the bars.
        latest = name == "round2-inflight-heap-10000-tls-step66"
        heap_ax.bar([bar], [kb], bottom=bottom, color=f"C{colour % 10}",
                    label=f"{protocol}: {what}" if latest else None)
        bottom += kb
        colour += 1
heap_ax.axhline(12.0, color="k", linestyle="dashed", label="target: 120 MB / 10,000")
heap_ax.legend(fontsize=6, loc="upper right")
heap_ax.set_xlim(-0.6, 7.5)
heap_ax.tick_params(axis="x", labelsize=7)
heap_ax.set_ylabel("KB per outstanding request")
heap_ax.set_title("Memory per outstanding request over HTTPS\n(heap profiles; steps 60-66 trimmed HTTP/1.1's)")
heap_ax.grid(True, axis="y", alpha=0.3)

# 10,000 requests outstanding over HTTPS on 100 hosts: the daemon's peak memory by the endpoints' protocol.
outstanding = [(label, load(name)) for label, name in (
    ("HTTP/1.1\nstep 57", "round2-inflight-10000-tls-100hosts-step57-sqlite"),
    ("HTTP/2\nstep 57", "round2-inflight-10000-http2-step57-sqlite"),
    ("HTTP/1.1\nstep 60", "round2-inflight-10000-tls-100hosts-step60-sqlite"),
    ("HTTP/2\nstep 60", "round2-inflight-10000-http2-step60-sqlite"),
    ("HTTP/1.1\nstep 62", "round2-inflight-10000-tls-100hosts-step62-sqlite"),
    ("HTTP/2\nstep 62", "round2-inflight-10000-http2-step62-sqlite"),
    ("HTTP/1.1\nstep 63", "round2-inflight-10000-tls-100hosts-step63-sqlite"),
    ("HTTP/2\nstep 63", "round2-inflight-10000-http2-step63-sqlite"),
    ("HTTP/1.1\nstep 66", "round2-inflight-10000-tls-100hosts-sqlite"),
    ("HTTP/2\nstep 66", "round2-inflight-10000-http2-sqlite"))]
outstanding = [(label, run) for label, run in outstanding if run]
if outstanding:
    outstanding_ax.bar([label for label, _ in outstanding], [run["daemon"]["peak_rss_mib"] for _, run in outstanding],
                       color=(["C3", "C0"] * 5)[: len(outstanding)])
    outstanding_ax.tick_params(axis="x", labelsize=6)
    # The earlier steps', faded: before step 60 hyper gave every HTTP/1.1 connection ~25 KB of buffers it never
    # used; before step 62 HTTP/1.1 requests went through hyper-util's pooled client; step 63 halved an
    # attempt's boxed send; steps 64-66 freed rustls's idle buffers and held each value once.
    for bar in outstanding_ax.patches[: len(outstanding) - 2]:
        bar.set_alpha(0.45)
outstanding_ax.axhline(120 / 1.048576, color="k", linestyle="dashed", label="target: 120 MB")
outstanding_ax.set_ylabel("daemon peak resident memory (MiB)")
outstanding_ax.set_title("10,000 requests outstanding over HTTPS, 100 hosts\n(SQLite, receivers answering after 3 s)")
outstanding_ax.legend(fontsize=8)
outstanding_ax.grid(True, axis="y", alpha=0.3)

fig.tight_layout()
fig.savefig(out / "round2.png", dpi=110)
print(f"wrote {out / 'round2.png'}")
