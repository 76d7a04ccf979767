"""The results as JSON and as a Markdown table: each riverops figure next to its target and
as a ratio to the faust baseline and to the in-process limit measured in the same run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "write", "markdown", "merge_section", "guarantees_markdown"]

TARGETS = {
    "scorer": "≥ 30,000 events/s per worker process and ≥ 10x faust",
    "full_loop": "≥ 20,000 labelled events/s, < 100 µs CPU per labelled event",
    "latency": "p99 ≤ 10 ms at 5,000 events/s offered",
    "join": "≤ 500 bytes per pending event",
}


def _rate(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:,.0f} /s"


def _ratio(value: float | None, base: float | None) -> str:
    if not value or not base:
        return "—"
    return f"{value / base:.2f}x"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    faust = _get(results, "faust", "events_per_s")
    per_event = _get(results, "limit", "per_event")
    batched = _get(results, "limit", "batched")
    scorer = _get(results, "scorer", "events_per_s")

    def row(name: str, value: float | None, target: str, ok: bool | None,
            cpu: float | None = None) -> str:
        per_core = f"{cpu:.1f} µs ({1e6 / cpu:,.0f} /s)" if cpu else "—"
        return (f"| {name} | {_rate(value)} | {per_core} | {target} | {_met(ok)} | "
                f"{_ratio(value, faust)} | {_ratio(value, per_event)} | {_ratio(value, batched)} |")

    lines = [
        "# riverops benchmark results",
        "",
        f"{machine['when']} — {machine['cpu_count']} × {machine['cpu_model']}, "
        f"{machine['python']}, broker {machine['broker']}, load average at start "
        f"{machine['load_average_at_start']} (the machine is shared: read the ratios).",
        "",
        "## Throughput",
        "",
        "CPU per event is the worker process's user+system time over the timed events (all",
        "its threads; the limit's is this process's), and in brackets the rate one fully",
        "available core would give: unlike the wall-clock rate it moves little with the other",
        "jobs on the machine. The ratios are of wall-clock rates.",
        "",
        "| figure | value | CPU per event (rate per core) | target | met | vs faust | "
        "vs limit per event | vs limit batched |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if per_event is not None:
        lines += [row("limit: River in-process, predict_proba_one + learn_one", per_event, "—", None,
                      _get(results, "limit", "per_event_cpu_us")),
                  row("limit: River in-process, *_many on 1000-row batches", batched, "—", None,
                      _get(results, "limit", "batched_cpu_us"))]
    if faust is not None:
        lines.append(row("faust-streaming, per event with `await send`", faust, "—", None,
                         _get(results, "faust", "cpu_us_per_event")))
    elif "faust" in results:
        lines.append(f"| faust-streaming baseline | not measured: {_get(results, 'faust', 'error')} "
                     "| — | — | — | — | — | — |")
    if scorer is not None:
        ok = scorer >= 30_000 and (faust is None or scorer >= 10 * faust)
        lines.append(row("riverops scorer, 1 worker process", scorer, TARGETS["scorer"], ok,
                         _get(results, "scorer", "cpu_us_per_event")))
    quix = results.get("quix") or {}
    quix_name = f"Quix Streams {_get(quix, 'packages', 'quixstreams') or ''}".rstrip()
    for variant, title in QUIX_VARIANTS.items():
        measured = quix.get(variant) or {}
        if "events_per_s" in measured:
            lines.append(row(f"{quix_name}, {title}, 1 app process", measured["events_per_s"],
                             "—", None, measured.get("cpu_us_per_event")))
        elif "error" in measured:
            lines.append(f"| {quix_name}, {title} | not measured: {measured['error']} "
                         "| — | — | — | — | — | — |")
    typed = _get(results, "scorer_typed", "events_per_s")
    if typed is not None:
        lines.append(row("riverops scorer, the same events as typed feature records (20 doubles; "
                         "RIVEROPS_FEATURE_SCHEMAS)", typed, "—", None,
                         _get(results, "scorer_typed", "cpu_us_per_event")))
    explained = _get(results, "scorer_explained", "events_per_s")
    if explained is not None:
        lines.append(row("riverops scorer, explanations on (top 5 contributions; off is the row "
                         "above)", explained, "—", None, _get(results, "scorer_explained", "cpu_us_per_event")))
    for key, name in (("full_loop", "riverops full loop (scorer+joiner+monitor, learner alongside), labelled"),
                      ("full_loop_typed", "riverops full loop, typed feature records (typed FeedbackEvent)")):
        rate = _get(results, key, "events_per_s")
        if rate is None:
            continue
        loop_cpu = _get(results, key, "cpu_us_per_event") or {}
        total = sum(loop_cpu.values()) or None
        lines.append(row(name, rate, TARGETS["full_loop"], rate >= 20_000 and total is not None and total < 100,
                         total))
        if loop_cpu:
            lines += ["", f"{name}: CPU per labelled event by process (the sum bounds the "
                      "loop at cores × 1e6 / sum events/s):", "",
                      "| " + " | ".join(loop_cpu) + " | sum |",
                      "|" + "---|" * (len(loop_cpu) + 1),
                      "| " + " | ".join(f"{v:.0f} µs" for v in loop_cpu.values())
                      + f" | {total or 0:.0f} µs |", ""]
    lines += _quix_comparison(results)
    measured = [m for m in (results.get("latency"),) if m]
    if measured:
        lines += [
            "",
            "## Scoring latency (feature produced → prediction readable)",
            "",
            "| service's producer | offered | achieved | events | p50 | p90 | p99 | max | scorer CPU per event | target | met |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for latency in measured:
            cpu = latency.get("scorer_cpu_us_per_event")  # not in runs before 2026-12-06
            lines.append(
                f"| `{latency.get('producer_config') or 'riverops default'}` | "
                f"{latency['offered_per_s']:,.0f} /s | {latency['achieved_per_s']:,.0f} /s | "
                f"{latency['events']:,} | {latency['p50_ms']:.1f} ms | {latency['p90_ms']:.1f} ms | "
                f"{latency['p99_ms']:.1f} ms | {latency['max_ms']:.1f} ms | "
                f"{'' if cpu is None else f'{cpu:.1f} µs'} | {TARGETS['latency']} | "
                f"{_met(latency['p99_ms'] <= 10.0)} |")
    floors = results.get("broker_floor") or []
    if floors:
        lines += ["", "Broker floor (one produce → consume hop, no scorer, same offered load):", "",
                  "| producer overrides | consumer overrides | p50 | p99 |", "|---|---|---|---|"]
        for floor in floors:
            lines.append(f"| `{floor['producer'] or 'riverops default'}` | "
                         f"`{floor['consumer'] or 'riverops default'}` | {floor['p50_ms']:.1f} ms | "
                         f"{floor['p99_ms']:.1f} ms |")
    joins = _get(results, "memory", "join") or []
    workers = _get(results, "memory", "workers") or {}
    if joins or workers:
        lines += ["", "## Memory", ""]
    if joins:
        lines += ["| pending join events | method | bytes per pending event | core's estimate | "
                  "target | met |", "|---|---|---|---|---|---|"]
        for join in joins:
            lines.append(f"| {join['events']:,} ({join['shape']}) | {join['method']} | "
                         f"{join['bytes_per_event']:.0f} | {join['estimate_per_event']:.0f} | "
                         f"{TARGETS['join']} | {_met(join['bytes_per_event'] <= 500)} |")
        lines.append("")
    if workers:
        lines += ["| worker process | run | peak RSS (VmHWM) |", "|---|---|---|"]
        for name, (run, rss) in workers.items():
            lines.append(f"| {name} | {run} | {rss / 2**20:,.0f} MiB |")
    lines += ["", "## Runs", "", "| run | events | seconds | notes |", "|---|---|---|---|"]
    runs = [(key, results.get(key)) for key in ("limit", "faust", "scorer", "scorer_typed")]
    runs += [(f"quix {variant}", quix.get(variant)) for variant in QUIX_VARIANTS]
    for key, part in [*runs, *((k, results.get(k)) for k in ("full_loop", "full_loop_typed"))]:
        if part and "events" in part:
            note = part.get("note", "")
            if "startup_s" in part:
                note = f"started in {part['startup_s']:.1f} s (to the warm-up outputs) {note}".strip()
            seconds = f"{part['seconds']:.2f}" if "seconds" in part else "—"
            lines.append(f"| {key} | {part['events']:,} | {seconds} | {note} |")
    if "guarantees" in results:
        lines += ["", *guarantees_markdown(results["guarantees"])]
    lines += ["", "## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in machine["packages"].items()]
    if isinstance(quix.get("packages"), dict):
        lines += [f"| {name} (Quix venv) | {version} |" for name, version in quix["packages"].items()]
    lines += ["", f"Options: `{json.dumps(results['options'])}`", ""]
    return "\n".join(lines)


QUIX_VARIANTS = {"default": "defaults", "tuned": "tuned (30 s commits, lz4, linger 20 ms, larger fetches)"}


def _quix_comparison(results: dict[str, Any]) -> list[str]:
    """riverops' scorer against each Quix variant of the same job, measured in the same run."""
    scorer = results.get("scorer") or {}
    quix = results.get("quix") or {}
    measured = {v: quix[v] for v in QUIX_VARIANTS if "events_per_s" in (quix.get(v) or {})}
    if "events_per_s" not in scorer or not measured:
        return []
    lines = ["", "riverops scorer against Quix Streams, the same job (same preloaded FeatureEvents, "
             "same River model, one process each, this run); riverops / Quix: above 1 in "
             "events/s and below 1 in CPU per event favour riverops.", "",
             "| Quix variant | Quix events/s | Quix CPU per event | riverops events/s | "
             "riverops CPU per event | riverops / Quix, events/s | riverops / Quix, CPU per event |",
             "|---|---|---|---|---|---|---|"]
    for variant, q in measured.items():
        lines.append(f"| {QUIX_VARIANTS[variant]} | {_rate(q['events_per_s'])} | "
                     f"{q['cpu_us_per_event']:.1f} µs | {_rate(scorer['events_per_s'])} | "
                     f"{scorer['cpu_us_per_event']:.1f} µs | "
                     f"{_ratio(scorer['events_per_s'], q['events_per_s'])} | "
                     f"{_ratio(scorer['cpu_us_per_event'], q['cpu_us_per_event'])} |")
    return lines


_SEPARATE = ("guarantees",)
"""Sections written by their own entry (bench.guarantees): a run without one keeps the
previous file's."""


def guarantees_markdown(section: dict[str, Any]) -> list[str]:
    """The exactly-once / at-least-once table of :mod:`bench.guarantees`."""
    machine = section["machine"]
    lines = ["## Exactly-once against at-least-once", "",
             f"{machine['when']}, {machine.get('broker_version', machine['broker'])}, load average at "
             f"start {machine['load_average_at_start']}. Medians over the rounds; CPU is the "
             "workers' (the full loop's: the sum of its four); markers are the transaction "
             "markers on the outputs (median), repeats the records beyond one per event "
             "(the most in a round).", "",
             "| part | guarantee | rounds | events/s (range) | worker CPU per event | "
             "broker CPU per event | markers | repeats |", "|---|---|---|---|---|---|---|---|"]
    for part, by in sorted(section["summary"].items(), key=lambda item: item[0] != "scorer"):
        for guarantee in ("at_least_once", "exactly_once"):
            g = by.get(guarantee)
            if g is None:
                continue
            low, high = g["events_per_s_range"]
            lines.append(f"| {part} | {guarantee} | {g['rounds']} | {g['events_per_s']:,.0f} "
                         f"({low:,.0f}–{high:,.0f}) | {g['cpu_us_per_event']:.1f} µs | "
                         f"{g['broker_cpu_us_per_event']:.1f} µs | {g['markers']:,.0f} | "
                         f"{g['repeats']:,} |")
        ratio = by.get("ratio")
        if ratio:
            rounds = ", ".join(f"{r['events_per_s']:.2f}" for r in by.get("round_ratios", []))
            lines.append(f"| {part} | **exactly_once / at_least_once** | | "
                         f"**{ratio['events_per_s']:.2f}x** (rounds: {rounds}) | "
                         f"**{ratio.get('cpu_us_per_event', math.nan):.2f}x** | "
                         f"{ratio.get('broker_cpu_us_per_event', math.nan):.2f}x | | |")
    failed = [r for r in section["runs"] if "error" in r]
    lines += [f"- {r['part']} {r['guarantee']} round {r['round']} failed: {r['error']}" for r in failed]
    profiles = {k: v for k, v in section.get("profile", {}).items() if isinstance(v, dict)}
    if profiles:
        lines += ["", "Share of each runtime loop's wall time (py-spy, idle included), profiled runs:", ""]
        for label, profile in profiles.items():
            for role, shares in profile["loop_wall_share"].items():
                top = ", ".join(f"{name} {share:.0%}" for name, share in
                                sorted(shares.items(), key=lambda item: -item[1])[:5])
                lines.append(f"- {label}, {role}: {top}")
    return lines


def merge_section(directory: Path, name: str, section: dict[str, Any]) -> tuple[Path, Path]:
    """Put ``section`` under ``name`` in the results.json there (kept otherwise) and
    rewrite results.md."""
    as_json = directory / "results.json"
    results = json.loads(as_json.read_text()) if as_json.exists() else {
        "machine": section["machine"], "options": {}}
    results[name] = section
    return write(results, directory)


def write(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """results.json and results.md in ``directory`` (the latest run; older ones overwritten,
    except the :data:`_SEPARATE` sections this run has not got)."""
    directory.mkdir(parents=True, exist_ok=True)
    as_json, as_md = directory / "results.json", directory / "results.md"
    if as_json.exists():
        previous = json.loads(as_json.read_text())
        results = {**{k: previous[k] for k in _SEPARATE if k in previous}, **results}
    as_json.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    as_md.write_text(markdown(results))
    return as_json, as_md
