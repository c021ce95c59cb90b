"""Reports of a triage summary: a rich table in the terminal, ``triage_summary.md`` and a
self-contained ``triage_summary.html`` (plots embedded as base64 PNG), plus the PNGs themselves.

Plots: (1) each run's loss curve overlaid, one panel per label (overfit runs with their val_loss,
dashed); (2) the trials over the two params that the failure rules (else the importances) name first
(over their best val_acc when there is one param), coloured by label, with the rules' thresholds
drawn as dashed lines.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .regions import choose_params, log_scaled, numeric
from .verdict import LABELS, OVERFIT, UNDETERMINED

if TYPE_CHECKING:
    from .summary import Summary

COLORS = {"healthy": "#2ca02c", "diverging": "#d62728", "plateau": "#7f7f7f", "overfit": "#ff7f0e",
          "oscillating": "#9467bd", "unconverged": "#1f77b4", "crashed": "#000000", "undetermined": "#bcbd22"}
RICH_STYLE = {"healthy": "green", "diverging": "bold red", "plateau": "yellow", "overfit": "dark_orange",
              "oscillating": "magenta", "unconverged": "cyan", "crashed": "bold white on red", "undetermined": "dim"}
MAX_CURVES_PER_PANEL = 300
MAX_TABLE_ROWS = 40


def _primary(curves: dict[str, np.ndarray]) -> tuple[str, np.ndarray] | None:
    for key in ("train_loss", "val_loss"):
        c = curves.get(key)
        if c is not None and len(c):
            return key, c
    return None


def plot_curves(summary: "Summary") -> bytes:
    """PNG: the loss curves overlaid, one panel per label (non-finite points are cut)."""
    return _png(curves_figure(summary))


def curves_figure(summary: "Summary") -> Any:
    """The figure of `plot_curves`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import MaxNLocator

    groups = summary.by_label()
    labels = [lb for lb in groups if lb != "crashed"] or list(groups)
    cols = min(3, max(1, len(labels)))
    rows = math.ceil(len(labels) / cols) if labels else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel()[len(labels):]:
        ax.axis("off")
    rng = np.random.default_rng(0)
    for ax, label in zip(axes.ravel(), labels):
        runs = groups[label]
        if len(runs) > MAX_CURVES_PER_PANEL:
            runs = [runs[i] for i in sorted(rng.choice(len(runs), MAX_CURVES_PER_PANEL, replace=False))]
        segments, names, ends, undrawn, val_segments = [], set(), [], 0, []
        for r in runs:
            p = _primary(r.curves)
            if p is None:
                continue
            names.add(p[0])
            y = p[1]
            x = np.arange(1, len(y) + 1)
            ok = np.isfinite(y) & (y > 0)
            if ok.sum() >= 1:
                segments.append(np.column_stack([x[ok], y[ok]]))
                if not np.isfinite(y).all():  # became NaN/inf: mark where the curve stops
                    ends.append((x[ok][-1], y[ok][-1]))
            elif not np.isfinite(y[0]):  # NaN/inf from its first epoch: nothing to draw, so say so
                undrawn += 1
            v = r.curves.get("val_loss")
            if label == OVERFIT and p[0] == "train_loss" and v is not None and (okv := np.isfinite(v) & (v > 0)).any():
                val_segments.append(np.column_stack([np.arange(1, len(v) + 1)[okv], v[okv]]))  # what turned up
        if val_segments:
            names = {"train_loss", "val_loss (dashed)"}
            ax.add_collection(LineCollection(val_segments, colors=COLORS[OVERFIT], alpha=0.5, linewidths=1, linestyles="--"))
        if segments:
            ax.add_collection(LineCollection(segments, colors=COLORS.get(label, "k"), alpha=0.5, linewidths=1))
            if dots := [s[0] for s in segments if len(s) == 1]:  # a one-epoch run is a point, not a line
                ax.scatter(*zip(*dots), s=12, c=COLORS.get(label, "k"), alpha=0.5)
            ys = np.concatenate([s[:, 1] for s in segments + val_segments])
            xs = np.concatenate([s[:, 0] for s in segments + val_segments])
            ax.set_xlim(0.5, xs.max() + 0.5)
            if ys.max() > 10 * ys.min():  # a loss that blew up: a log scale keeps the rest readable
                ax.set_ylim(ys.min() / 1.3, ys.max() * 1.3)
                ax.set_yscale("log")
            else:  # from zero, so a flat curve looks flat
                ax.set_ylim(0, ys.max() * 1.15)
            if ends:
                ax.scatter(*zip(*ends), marker="x", c="k", s=30, zorder=3, label="then NaN/inf")
                ax.legend(fontsize=7, loc="upper right")
        note = f"\n{undrawn} not drawn: NaN/inf from epoch 1" if undrawn else ""
        ax.set_title(f"{label} ({len(groups[label])}){note}", color=COLORS.get(label, "k"), **({"fontsize": 10} if note else {}))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylabel(" / ".join(sorted(names)) or "loss")
    fig.tight_layout()
    return fig


def _region_params(summary: "Summary") -> list[str]:
    names: list[str] = []
    for rule in summary.rules:
        for c in (*rule.conditions, *rule.also):
            if c.param not in names:
                names.append(c.param)
    if summary.importances:
        names += [p for p in sorted(summary.importances, key=summary.importances.get, reverse=True) if p not in names]
    space = next((r.tags.get("sweep.space") for r in summary.runs if r.tags.get("sweep.space")), None)
    names += [p for p in choose_params([r.params for r in summary.runs], space) if p not in names]
    return names[:2]


def plot_regions(summary: "Summary") -> bytes | None:
    """PNG: trials over the (up to) two params that explain failures, coloured by label; None without params."""
    return None if (fig := regions_figure(summary)) is None else _png(fig)


def regions_figure(summary: "Summary") -> Any:
    """The figure of `plot_regions`, or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = _region_params(summary)
    if not params:
        return None
    runs = [r for r in summary.runs if r.run_id in summary.verdicts]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rng = np.random.default_rng(0)
    axes_values = []
    names = list(params)
    for i, p in enumerate(params):
        raw = [r.params.get(p) for r in runs]
        if (vals := numeric(raw)) is not None:
            log = log_scaled(vals)
            finite = vals[np.isfinite(vals)]
            off_at = (finite.max() * 3 if finite.size and finite.max() > 0 else 1.0) if np.isnan(vals).any() else None
            if off_at is not None:
                vals = np.where(np.isnan(vals), off_at, vals)  # "off" drawn past the largest value
                names[i] = f"{p} (off drawn at {off_at:.3g})"
            (ax.set_xscale if i == 0 else ax.set_yscale)("log" if log else "linear")
            axes_values.append((vals, None))
        else:
            cats = sorted({str(v) for v in raw})
            jitter = rng.uniform(-0.12, 0.12, len(raw))  # trials with the same choice stay apart
            axes_values.append((np.array([cats.index(str(v)) for v in raw], float) + jitter, cats))
    x = axes_values[0][0]
    if len(axes_values) > 1:
        y = axes_values[1][0]
    elif (outcome := _outcome(runs)) is not None:  # one param: its trials over how well they did
        key, name, y = outcome
        names.append(name)
        if key == "val_loss":
            ax.invert_yaxis()  # better is up, as for an accuracy
    else:
        y = rng.uniform(-0.3, 0.3, len(runs))
    labels = np.array([summary.verdicts[r.run_id].label for r in runs])
    for label in LABELS:
        m = labels == label
        if m.any():
            ax.scatter(x[m], y[m], s=28, c=COLORS[label], label=f"{label} ({int(m.sum())})", alpha=0.8,
                       edgecolors="white", linewidths=0.5)
    for rule in summary.rules:
        for c in (*rule.conditions, *rule.also):
            if c.op in (">", "<=") and c.param in params:
                draw = ax.axvline if params.index(c.param) == 0 else ax.axhline
                draw(float(c.value), color=COLORS.get(rule.label, "k"), ls="--", lw=1)
    ax.set_xlabel(names[0])
    if axes_values[0][1]:
        ax.set_xticks(range(len(axes_values[0][1])), axes_values[0][1])
    if len(names) > 1:
        ax.set_ylabel(names[1])
        if len(axes_values) > 1 and axes_values[1][1]:
            ax.set_yticks(range(len(axes_values[1][1])), axes_values[1][1])
    else:
        ax.set_yticks([])
    ax.legend(fontsize=8, loc="best")
    ax.set_title("failure regions (dashed: rule thresholds)")
    fig.tight_layout()
    return fig


def _outcome(runs: list[Any]) -> tuple[str, str, np.ndarray] | None:
    """The y axis of a one-param region plot, as (metric, axis label, values): each run's best val_acc, else
    its lowest val_loss, with runs that have none (crashed, NaN from the start) at the worst end; None when
    no run logs either."""
    for key, best in (("val_acc", np.max), ("val_loss", np.min)):
        vals = np.array([best(c[ok]) if (c := r.curves.get(key)) is not None and (ok := np.isfinite(c)).any()
                         else np.nan for r in runs])  # fmt: skip
        if np.isfinite(vals).any():
            missing = np.isnan(vals)
            if not missing.any():
                return key, f"best {key}", vals
            worst = np.nanmin(vals) if key == "val_acc" else np.nanmax(vals)
            return key, f"best {key} ({int(missing.sum())} without one: at the worst end)", np.where(missing, worst, vals)
    return None


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _lines(summary: "Summary") -> dict[str, Any]:
    """Text pieces shared by the markdown and HTML reports."""
    counts = ", ".join(f"{n} {label}" + (" (too short to judge)" if label == UNDETERMINED else "")
                       for label, n in summary.counts.items())
    rules = [(str(r), r.suggestion) for r in summary.rules]
    imp = sorted((summary.importances or {}).items(), key=lambda kv: -kv[1])
    rows = []
    order = {label: i for i, label in enumerate(LABELS)}
    for r in sorted(summary.runs, key=lambda r: (order.get(summary.verdicts[r.run_id].label, 99), r.trial or 0)):
        v = summary.verdicts[r.run_id]
        rows.append((r.label_name, r.run_id[:8], r.state, v.label, f"{v.confidence:.2f}", v.reason))
    return {"counts": counts, "rules": rules, "imp": imp, "rows": rows}


def markdown(summary: "Summary", images: dict[str, str]) -> str:
    """``triage_summary.md``: counts, epochs saved, failure rules, importances, every run's verdict."""
    t = _lines(summary)
    out = [f"# Triage of `{summary.experiment}`", "",
           f"{len(summary.runs)} runs: {t['counts']}. Triage version {summary.version}.", "",
           f"**Stopping trials early:** {summary.epochs}.", ""]
    out += ["## Failure regions", ""]
    if t["rules"]:
        out += ["| rule | what to change |", "| --- | --- |"]
        out += [f"| {rule} | {sugg} |" for rule, sugg in t["rules"]]
    else:
        out.append("No hyperparameter region explains a failure (too few trials, or no failures).")
    out.append("")
    if t["imp"]:
        out += ["## Hyperparameter importances (Optuna, objective)", "", "| param | importance |", "| --- | --- |"]
        out += [f"| {p} | {v:.3f} |" for p, v in t["imp"]]
        out.append("")
    if summary.notes:
        out += [*(f"- {n}" for n in summary.notes), ""]  # the blank line ends the list before the images
    for name, file in images.items():
        out += [f"![{name}]({file})", ""]
    out += ["## Every run", "", "| run | id | state | verdict | confidence | evidence |", "| --- | --- | --- | --- | --- | --- |"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in t["rows"]]
    return "\n".join(out) + "\n"


def html_report(summary: "Summary", pngs: dict[str, bytes]) -> str:
    """``triage_summary.html``: the markdown's content with the plots inlined (one file, no links)."""
    t = _lines(summary)
    e = html.escape

    def table(head: list[str], rows: list[tuple[Any, ...]], label_col: int | None = None) -> str:
        cells = "".join(f"<th>{e(h)}</th>" for h in head)
        body = []
        for row in rows:
            tds = []
            for i, c in enumerate(row):
                style = f' style="color:{COLORS.get(str(c), "#000")};font-weight:600"' if i == label_col else ""
                tds.append(f"<td{style}>{e(str(c))}</td>")
            body.append("<tr>" + "".join(tds) + "</tr>")
        return f"<table><tr>{cells}</tr>{''.join(body)}</table>"

    parts = [f"<h1>Triage of <code>{e(summary.experiment)}</code></h1>",
             f"<p>{len(summary.runs)} runs: {e(t['counts'])}. Triage version {e(summary.version)}.</p>",
             f"<p><b>Stopping trials early:</b> {e(str(summary.epochs))}.</p>",
             "<h2>Failure regions</h2>",
             table(["rule", "what to change"], t["rules"]) if t["rules"]
             else "<p>No hyperparameter region explains a failure (too few trials, or no failures).</p>"]
    if t["imp"]:
        parts += ["<h2>Hyperparameter importances (Optuna, objective)</h2>",
                  table(["param", "importance"], [(p, f"{v:.3f}") for p, v in t["imp"]])]
    parts += [f"<p>{e(n)}</p>" for n in summary.notes]
    for name, data in pngs.items():
        parts.append(f'<h2>{e(name)}</h2><img alt="{e(name)}" src="data:image/png;base64,'
                     f'{base64.b64encode(data).decode()}">')
    parts += ["<h2>Every run</h2>", table(["run", "id", "state", "verdict", "confidence", "evidence"], t["rows"], 3)]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:left;vertical-align:top;font-size:14px}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Triage of {e(summary.experiment)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write_reports(summary: "Summary", out_dir: Path) -> list[Path]:
    """Write the PNGs, ``triage_summary.md`` and ``triage_summary.html`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {"curves by verdict": plot_curves(summary)}
    regions = plot_regions(summary)
    if regions is not None:
        pngs["failure regions"] = regions
    files = {"curves by verdict": "triage_curves.png", "failure regions": "triage_regions.png"}
    paths = []
    for name, data in pngs.items():
        p = out_dir / files[name]
        p.write_bytes(data)
        paths.append(p)
    md = out_dir / "triage_summary.md"
    md.write_text(markdown(summary, {n: files[n] for n in pngs}))
    page = out_dir / "triage_summary.html"
    page.write_text(html_report(summary, pngs))
    return [md, page, *paths]


def print_table(summary: "Summary", console: Any = None) -> None:
    """The terminal summary: verdict counts, a table of runs (failures first), rules, epochs saved."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(soft_wrap=True)  # rules and notes one line each, in logs too
    t = _lines(summary)
    table = Table(title=f"triage of {summary.experiment}: {t['counts']}", show_lines=False, expand=False)
    for col in ("run", "state", "verdict", "conf", "evidence"):
        table.add_column(col, overflow="fold", max_width=90 if col == "evidence" else None)
    for name, _id, state, label, conf, reason in t["rows"][:MAX_TABLE_ROWS]:
        table.add_row(name, state, f"[{RICH_STYLE.get(label, '')}]{label}[/]", conf, reason)
    console.print(table)
    if len(t["rows"]) > MAX_TABLE_ROWS:
        console.print(f"… {len(t['rows']) - MAX_TABLE_ROWS} more runs in triage_summary.md")
    for rule, sugg in t["rules"]:
        console.print(f"[bold]{rule}[/]: {sugg}")
    console.print(str(summary.epochs))
    for n in summary.notes:
        console.print(n)
    if summary.files:
        console.print(f"reports: {', '.join(str(p) for p in summary.files[:2])}")
