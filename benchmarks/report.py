"""The report: Markdown for people, JSON for tools, both in benchmarks/results/."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _num(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "ms":
        return f"{value * 1000:.2f}"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"


def _spread(summary: dict[str, float], unit: str = "") -> str:
    text = _num(summary["median"], unit)
    if summary.get("n", 1) > 1:
        text += f" ({_num(summary['p25'], unit)}–{_num(summary['p75'], unit)})"
    return text


def _measured(result_row: dict[str, Any]) -> str:
    """The sides behind a ratio: ``*_s`` in ms, ``*_rps`` in requests/s."""
    parts = []
    for name, value in result_row.items():
        if isinstance(value, dict) and "median" in value and name != "ratio":
            if name.endswith("_per_mib_s"):
                parts.append(f"{name[:-10]} {_spread(value, 'ms')} ms/MiB")
            elif name.endswith("_s"):
                parts.append(f"{name[:-2]} {_spread(value, 'ms')} ms")
            elif name.endswith("_rps"):
                parts.append(f"{name[:-4]} {_spread(value)} req/s")
        elif name.endswith("_peak_bytes"):
            parts.append(f"{name[:-11]} peak {value / 2**20:.2f} MiB")
        elif name == "added_s":
            parts.append(f"**+{value * 1000:.2f} ms**")
        elif name.endswith("bound_s") and value is not None:
            parts.append(f"{name[:-2].replace('_', ' ')} {value:.3f} s")
    return "; ".join(parts)


def _machine_rows(m: dict[str, Any]) -> list[str]:
    """What is known of the machine; a run that crashed early knows less."""
    probe = m.get("probe", {})
    rows = [
        ("CPUs", m.get("cpus")),
        ("memory", m.get("memory_mb") and f"{m['memory_mb']:,} MB"),
        ("Python", m.get("python")),
        ("Django", m.get("django")),
        ("database", m.get("database")),
        ("gunicorn", m.get("gunicorn") and
         f"{m['gunicorn']}, {m['workers']} gthread workers × 1 thread"),
        ("load average (1 min)", "load_start" in m and
         f"{m['load_start'][0]:.2f} at start, {m.get('load_end', [math.nan])[0]:.2f} at end"),
        ("commit", m.get("commit")),
        ("database round trip (SELECT 1)", probe.get("round_trip_s") and
         f"{probe['round_trip_s'] * 1e6:.0f} µs"),
        ("autocommit INSERT (one WAL flush)", probe.get("autocommit_insert_s") and
         f"{probe['autocommit_insert_s'] * 1e6:.0f} µs"),
        ("libpq options (diagnostic)", m.get("pg_options") and f"`{m['pg_options']}`"),
        ("purge batch size", m.get("purge_batch_size")),
    ]  # fmt: skip
    return [f"| {name} | {value} |" for name, value in rows if value]


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# django-idempotency benchmarks: {report['mode']} run, {report['date']}",
        "",
        f"`{report['command']}` on {m['database']}. Medians with (p25–p75); a ratio is the "
        "median of per-round ratios, each round measuring both sides back to back "
        "(ABBA order). See docs/benchmarks.md for what each row measures.",
        "",
        "| machine | |",
        "| --- | --- |",
        *_machine_rows(m),
        f"| duration | {report.get('seconds', math.nan):.0f} s |",
        "",
        "| measurement | measured | ratio / value | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for scenario in report["scenarios"].values():
        if "skipped" in scenario:
            lines.append(f"| {scenario['title']} | skipped: {scenario['skipped']} | | | |")
            continue
        if "error" in scenario:
            lines.append(f"| {scenario['title']} | **crashed**: {scenario['error']} | | | |")
            continue
        for r in scenario["rows"]:
            value = _spread(r["ratio"])
            verdict = "yes" if r["met"] else "**no**"
            if "aim_met" in r:
                verdict += " (aim met)" if r["aim_met"] else " (aim missed)"
            lines.append(f"| {r['name']} | {_measured(r)} | {value} | {r['target']} | {verdict} |")
    lines += _targets(report)
    lines += _cpu(report)
    lines += _profile(report)
    sql = report["scenarios"].get("sql", {}).get("details")
    if sql:
        counted = report["scenarios"]["sql"].get("counts", "")
        lines += ["", f"## SQL per request ({counted})", ""]
        for flavour, sides in sql.items():
            for side, statements in sides.items():
                unit = "messages" if counted.startswith("on the wire") else "statements"
                lines.append(f"{flavour} view, {side}: {len(statements)} {unit}")
                lines += ["", "```sql", *(s[:160] for s in statements), "```", ""]
    if report.get("error"):
        lines += ["", "## The run crashed", "", "```", report["error"], "```"]
    return "\n".join(lines) + "\n"


def _targets(report: dict[str, Any]) -> list[str]:
    """The rows that answer a target of the issue (tagged ``goal``), gathered
    in one table, so the verdicts read at a glance; sorted by target."""
    found = [r for scenario in report["scenarios"].values() for r in scenario.get("rows", ())
             if r.get("goal")]  # fmt: skip
    if not found:
        return []
    lines = ["", "## Targets of issue 10", "", "| measurement | value | target | met |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for r in sorted(found, key=lambda r: r["goal"]):
        measured = _spread(r["ratio"])
        if "added_s" in r:
            measured += f", +{r['added_s'] * 1000:.2f} ms"
        verdict = "yes" if r["met"] else "**no**"
        lines.append(f"| {r['name']} | {measured} | {r['target']} | {verdict} |")
    return lines


def _cpu(report: dict[str, Any]) -> list[str]:
    """CPU per request of the gunicorn workers and of their PostgreSQL backends."""
    found = []
    scenarios = report["scenarios"]
    for flavour, detail in scenarios.get("new_key", {}).get("details", {}).items():
        if detail.get("cpu"):
            found.append((f"new key, {flavour} view", detail["cpu"]))
    if scenarios.get("concurrency", {}).get("details", {}).get("cpu"):
        found.append(("throughput, 16 clients", scenarios["concurrency"]["details"]["cpu"]))
    if not found:
        return []
    lines = ["", "## CPU per request (µs; utime + stime from /proc)", "",
             "| block | side | application (gunicorn workers) | database (their backends) "
             "| requests |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, sides in found:
        for side, usage in sides.items():
            added = side.endswith("added")

            def cell(seconds: float | None, added: bool = added) -> str:
                if seconds is None:
                    return "–"
                return f"**{seconds * 1e6:+.0f}**" if added else f"{seconds * 1e6:.0f}"

            app, dbs = usage["app_s"], usage["db_s"]
            lines.append(f"| {name} | {side} | {cell(app)} | {cell(dbs)} | "
                         f"{usage.get('requests', '')} |")  # fmt: skip
    return lines


def _profile(report: dict[str, Any]) -> list[str]:
    details = report["scenarios"].get("profile", {}).get("details")
    if not details:
        return []
    lines = ["", "## Profile of the new-key path (in process)", ""]
    for flavour, found in details.items():
        lines += [f"### {flavour} view, {found['requests']} requests per side", "",
                  "| side | statement | per request | median µs |", "| --- | --- | --- | --- |"]  # fmt: skip
        for side, statements in found["statements"].items():
            for s in statements:
                text = s["statement"].replace("|", "\\|")
                lines.append(f"| {side} | `{text[:90]}` | {s['per_request']:.2f} | "
                             f"{s['median_s'] * 1e6:.0f} |")  # fmt: skip
        f = found["functions"]
        lines += ["", f"Under cProfile: bare {f['profiled_bare_s'] * 1e3:.2f} ms, package "
                  f"{f['profiled_package_s'] * 1e3:.2f} ms of own time per request; the "
                  f"package's modules {f['package_modules_own_s'] * 1e3:.2f} ms of it "
                  "(statement waits are in the driver's rows below).", "",
                  "| function | added own time per request (µs) |", "| --- | --- |"]  # fmt: skip
        for top in f["top"]:
            lines.append(f"| `{top['function']}` | {top['added_own_s'] * 1e6:.1f} |")
        lines.append("")
    return lines


def write(report: dict[str, Any], directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / f"{stem}.md", directory / f"{stem}.json"
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return md, js
