"""The report of a sweep's results.json: per-row means and seed spread, paired differences with
the baseline row, steps to reach the baseline's final FID, a markdown table and convergence plot.

Statistics over seeds: mean and sample standard deviation (ddof 1; 0 with one seed). Paired
differences use the seeds both rows finished: every seed starts both rows from the same
parameters and data order, so dFID_s = FID(row, s) - FID(baseline, s) removes the part of the
seed-to-seed spread the two runs share.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from etils import epath

from diffmtl.analysis import paired as paired_stats
from diffmtl.analysis import plots, sweep
from diffmtl.errors import UserError

METRICS = ("fid", "precision", "recall")


def _spread(values) -> list[float]:
    """[mean, sample std] of `values` (std 0 for one value)."""
    values = np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return [float(np.mean(values)), std]


def finished_evals(data: dict, row: str, steps) -> dict[int, dict]:
    """seed -> {step: entry} of the row's runs that hold every evaluation step in `steps`."""
    out = {}
    for record in data["runs"].values():
        if record.get("row") == row and sweep.finished(record, steps):
            out[record["seed"]] = {int(s): e for s, e in record["evals"].items()}
    return out


def steps_to_reach(steps, curve, target: float) -> float | None:
    """First step at which the piecewise-linear `curve` (over `steps`) is <= target; None if it
    never is. Reached at the first step already: that step (an upper bound)."""
    for i, (step, value) in enumerate(zip(steps, curve, strict=True)):
        if value <= target:
            if i == 0:
                return float(step)
            prev_step, prev = steps[i - 1], curve[i - 1]
            return float(prev_step + (step - prev_step) * (prev - target) / (prev - value))
    return None


def summarize(data: dict, rows: list[sweep.Row]) -> dict:
    """Per row: seeds, final mean/std of each metric, the mean FID curve, the paired FID
    difference with the baseline (the first row) and the steps to reach its final mean FID."""
    settings, baseline = data["settings"], rows[0].name
    steps, final = settings["eval_steps"], settings["num_train_steps"]
    base = finished_evals(data, baseline, steps)
    target = np.mean([evals[final]["fid"] for evals in base.values()]) if base else None
    summary = {}
    for row in rows:
        evals = finished_evals(data, row.name, steps)
        if not evals:
            continue
        seeds = sorted(evals)
        curve = [float(np.mean([evals[s][step]["fid"] for s in seeds])) for step in steps]
        entry = {
            "label": row.label,
            "group": row.group,
            "seeds": seeds,
            "final": {m: _spread([evals[s][final][m] for s in seeds]) for m in METRICS},
            "fid_curve": curve,
        }
        paired = [s for s in seeds if s in base]
        if paired and row.name != baseline:
            deltas = [evals[s][final]["fid"] - base[s][final]["fid"] for s in paired]
            relative = [
                100 * d / base[s][final]["fid"] for d, s in zip(deltas, paired, strict=True)
            ]
            entry["paired_fid_delta"] = _spread(deltas)
            entry["paired_fid_delta_percent"] = _spread(relative)
            entry["paired_wins"] = [int(sum(d < 0 for d in deltas)), len(paired)]
            stats = paired_stats.paired(deltas)
            entry["paired_fid_ci"] = [stats.ci_low, stats.ci_high]
            entry["paired_fid_p"] = stats.p
            if all("val_loss" in evals[s][final] and "val_loss" in base[s][final] for s in paired):
                val = [evals[s][final]["val_loss"] - base[s][final]["val_loss"] for s in paired]
                entry["paired_val_loss"] = dataclasses.asdict(paired_stats.paired(val))
        if target is not None:
            entry["steps_to_baseline_final_fid"] = steps_to_reach(steps, curve, target)
        summary[row.name] = entry
    return summary


def _cell(pair, digits: int) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def markdown_table(summary: dict, final_step: int) -> str:
    """One line per row: FID, precision, recall (mean ± sd), paired dFID vs the baseline (the
    first row), wins, and the steps to the baseline's final FID."""
    baseline = next(iter(summary.values()))["label"]
    lines = [
        f"| row | seeds | FID_FMNIST | precision | recall | paired dFID vs {baseline}, 95% CI "
        f"(%) | p | wins | paired d validation loss, 95% CI "
        f"| steps to {baseline}'s FID@{final_step} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in summary.values():
        final = entry["final"]
        delta, p, wins, val = "", "", "", ""
        if "paired_fid_delta" in entry:
            pct, (low, high) = entry["paired_fid_delta_percent"], entry["paired_fid_ci"]
            mean = entry["paired_fid_delta"][0]
            delta = f"{mean:+.2f} [{low:+.1f}, {high:+.1f}] ({pct[0]:+.1f}%)"
            p = f"{entry['paired_fid_p']:.2g}"
            wins = "{}/{}".format(*entry["paired_wins"])
        if "paired_val_loss" in entry:
            v = entry["paired_val_loss"]
            val = f"{v['mean']:+.5f} [{v['ci_low']:+.5f}, {v['ci_high']:+.5f}]"
        reach = entry.get("steps_to_baseline_final_fid")
        reach = "not reached" if reach is None else f"{reach:.0f}"
        lines.append(
            f"| {entry['label']} | {len(entry['seeds'])} | {_cell(final['fid'], 2)} "
            f"| {_cell(final['precision'], 3)} | {_cell(final['recall'], 3)} | {delta} | {p} "
            f"| {wins} | {val} | {reach} |"
        )
    return "\n".join(lines)


def per_seed_table(data: dict, summary: dict) -> str:
    """One line per row: its final FID per seed, and the paired FID difference with the
    baseline (the first row) per seed at every evaluation step ('s0 / s1 / ...')."""
    steps, final = data["settings"]["eval_steps"], data["settings"]["num_train_steps"]
    baseline = next(iter(summary))
    base = finished_evals(data, baseline, steps)
    lines = [
        "| row | FID@{} {} | {} |".format(
            final, " / ".join(f"s{s}" for s in summary[baseline]["seeds"]),
            " | ".join(f"dFID@{step}" for step in steps),
        ),
        "|---|---|" + "---|" * len(steps),
    ]  # fmt: skip
    for name, entry in summary.items():
        evals, seeds = finished_evals(data, name, steps), entry["seeds"]
        fids = " / ".join(f"{evals[s][final]['fid']:.2f}" for s in seeds)
        deltas = [
            " / ".join(f"{evals[s][step]['fid'] - base[s][step]['fid']:+.1f}"
                       for s in seeds if s in base)
            if name != baseline else ""
            for step in steps
        ]  # fmt: skip
        lines.append(f"| {entry['label']} | {fids} | {' | '.join(deltas)} |")
    return "\n".join(lines)


def matched_pairs_table(data: dict, rows: list[sweep.Row]) -> str:
    """One line per row with a `control` that both finished on some seed: the paired FID
    difference row - control (mean ± sd over their common seeds) at every evaluation step, the
    wins at the last, and the per-seed differences at the last ('' when there is none)."""
    steps, final = data["settings"]["eval_steps"], data["settings"]["num_train_steps"]
    labels = {row.name: row.label for row in rows}
    lines = []
    for row in rows:
        if not row.control:
            continue
        evals = finished_evals(data, row.name, steps)
        base = finished_evals(data, row.control, steps)
        seeds = sorted(set(evals) & set(base))
        if not seeds:
            continue
        deltas = np.array([[evals[s][t]["fid"] - base[s][t]["fid"] for t in steps] for s in seeds])
        cells = " | ".join(_cell(_spread(deltas[:, i]), 1) for i in range(len(steps)))
        stats = paired_stats.paired(deltas[:, -1])
        interval = f"[{stats.ci_low:+.1f}, {stats.ci_high:+.1f}], p = {stats.p:.2g}"
        per_seed = " / ".join(f"{d:+.1f}" for d in deltas[:, -1])
        wins = f"{int(np.sum(deltas[:, -1] < 0))}/{len(seeds)}"
        lines.append(
            f"| {row.label} | {labels.get(row.control, row.control)} | {cells} | {interval} "
            f"| {wins} | {per_seed} |"
        )
    if not lines:
        return ""
    header = " | ".join(f"dFID@{t}" for t in steps)
    return "\n".join([
        f"| row | against | {header} | dFID@{final} 95% CI, p | wins | dFID@{final} per seed |",
        "|---|---|" + "---|" * len(steps) + "---|---|---|",
        *lines,
    ])  # fmt: skip


def hosts_lines(data: dict) -> str:
    """One line per host of the runs ('- <host>: <row> s<seed>, ...'; 'not recorded' for runs
    of a sweep older than the record); '' when no run records one."""
    if not any("hosts" in record for record in data["runs"].values()):
        return ""
    by_host = {}
    for record in data["runs"].values():
        for host in record.get("hosts", ["not recorded"]):
            by_host.setdefault(host, []).append(f"{record['row']} s{record['seed']}")
    return "\n".join(f"- {host}: {', '.join(runs)}" for host, runs in by_host.items())


def plot_convergence(path: str, data: dict, summary: dict) -> None:
    """Mean FID against training step per row, one panel per row group, min-max band over seeds;
    the baseline (the first row, dashed) in every panel."""
    steps, baseline = data["settings"]["eval_steps"], next(iter(summary))
    groups = list(dict.fromkeys(entry["group"] for entry in summary.values()))
    fig, axes = plots.new_figure((5.5 * len(groups), 4.2), 1, len(groups), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for name, entry in summary.items():
            if entry["group"] != group and name != baseline:
                continue
            evals = finished_evals(data, name, steps)
            fids = np.array([[evals[s][step]["fid"] for step in steps] for s in entry["seeds"]])
            style = {"color": "black", "linestyle": "--"} if name == baseline else {}
            ax.plot(steps, entry["fid_curve"], marker="o", label=entry["label"], **style)
            ax.fill_between(steps, fids.min(0), fids.max(0), alpha=0.15, **style)
        ax.set(xlabel="training step", ylabel="FID_FMNIST (EMA)", title=f"{group} rows")
        ax.legend(fontsize=8)
    plots.save_figure(fig, path)


def write_report(workdir: str, rows: list[sweep.Row], results: sweep.Results) -> str:
    """Adds the summary to results.json; writes results.md and convergence.png; returns the
    table. Raises UserError, writing nothing, when no run of `rows` has finished."""
    data = results.data
    summary = summarize(data, rows)
    if not summary:
        names = [row.name for row in rows]
        raise UserError(
            f"{results.path} holds no finished run of the rows {names}: "
            "train them first (the same command without --report_only)"
        )
    data["summary"] = summary
    results.save()
    final = data["settings"]["num_train_steps"]
    table = markdown_table(summary, final)
    seeds = per_seed_table(data, summary)
    report = f"{table}\n\nPer seed:\n\n{seeds}\n"
    pairs = matched_pairs_table(data, rows)
    if pairs:
        report += f"\nMatched pairs (each row against its control, seed by seed):\n\n{pairs}\n"
    hosts = hosts_lines(data)
    if hosts:  # XLA's kernels, and so the round-off, depend on the host.
        report += f"\nHosts the runs ran on:\n\n{hosts}\n"
    (epath.Path(workdir) / "results.md").write_text(report)
    plot_convergence(os.path.join(workdir, "convergence.png"), data, summary)
    return table
