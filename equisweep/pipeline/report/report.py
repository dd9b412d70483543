"""``equisweep report``: a sweep's two tables in, a self-contained report out.

It reads only ``results.parquet`` and ``angles.parquet`` (or the same tables rebuilt from W&B runs), and
``asymmetry.parquet`` where the sweep measured its data, so it works on any sweep the spec allows and while a sweep
still runs, and imports nothing used for training. It writes
``report.md``, ``report.html`` (figures embedded), ``verdict.csv`` and ``figures/<name>.png|.svg``. Only when asked
(``log_to_wandb``) does it log the figures and the verdict table to W&B, as the sweep's one summary run.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from equisweep.errors import UserError
from equisweep.files import write_atomically
from equisweep.names import gaussian_params
from equisweep.pipeline.report import arms, wandb_runs
from equisweep.pipeline.report import figures as fig
from equisweep.pipeline.report.arms import REGIME, without_trivial_exactness
from equisweep.pipeline.report.captions import ASYMMETRY_INTRO, FIGURE_TEXT, asymmetry_display
from equisweep.pipeline.report.family_table import FAMILY_TITLE, family_blocks
from equisweep.pipeline.report.text import (
    WINNERS_INTRO,
    display_table,
    markdown_table,
    metric_definitions,
    summary_paragraph,
    to_markdown,
    verdict_intro,
    winners_display,
)
from equisweep.pipeline.report.verdict import Verdicts, verdict_table
from equisweep.pipeline.sweep.asymmetry_table import read_asymmetry
from equisweep.pipeline.sweep.results import DamagedTable, read_angles, read_results, storage_uri
from equisweep.pipeline.vocabulary import LAYER_ERROR_PREFIX

FORMATS = ("md", "html")
# a setting that only acts under some values of another one: (the other one, the values it acts under)
_ACTS_ONLY_UNDER = {"momentum": ("optimizer", {"sgd"}), "step_size": ("schedule", {"step"}),
                    "gamma": ("schedule", {"step"})}


@dataclass(frozen=True)
class Report:
    out_dir: Path
    files: list[Path]
    verdicts: Verdicts
    figures: dict[str, list[Path]]

    def terminal(self) -> str:
        """What the command prints: where the report is, and the verdict table."""
        return "\n".join([f"report: {self.out_dir / 'report.md'}", "", to_markdown(self.verdicts)])


def build_report(sweep_dir: str, out_dir: Path | None = None, formats: tuple[str, ...] = FORMATS,
                 source: str = "local", wandb_project: str | None = None, wandb_entity: str | None = None,
                 wandb_mode: str | None = None, log_to_wandb: bool = False) -> Report:
    """Read the sweep at ``sweep_dir`` (``source="wandb"``: its runs from the W&B API) and write the report;
    with ``log_to_wandb``, log it as the sweep's summary run, replacing the previous one (no W&B otherwise)."""
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise UserError(f"format: choose from {', '.join(FORMATS)} (comma-separated), got {','.join(formats)}")
    name = Path(sweep_dir.rstrip("/")).name
    results, angles = _tables(sweep_dir, name, source, wandb_project, wandb_entity)
    results = without_trivial_exactness(results)
    if not (results["status"] == "finished").any():
        raise UserError(f"sweep_dir: no finished trial in {sweep_dir} yet; wait for one, or see why with "
                        f"`equisweep sweep --status {sweep_dir}`")
    if out_dir is None:  # next to the tables, or for a sweep in a bucket, ./reports/<name>
        out_dir = Path("reports") / name if "://" in sweep_dir else Path(storage_uri(sweep_dir)) / "report"
    out_dir = Path(out_dir).absolute()
    verdicts = verdict_table(results)
    asymmetry, asymmetry_blocks = _asymmetry_blocks(sweep_dir)
    figures = _figures(results, angles, verdicts, out_dir / "figures", asymmetry)
    sections = _sections(name, results, angles, verdicts, figures, asymmetry_blocks)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [write_atomically(out_dir / "verdict.csv", verdicts.table.to_csv(index=False))]
    if "md" in formats:
        files.append(write_atomically(out_dir / "report.md", _markdown(name, sections, out_dir)))
    if "html" in formats:
        files.append(write_atomically(out_dir / "report.html", _html(name, sections)))
    if log_to_wandb:
        wandb = _column_value(results, "wandb")
        wandb_runs.log_report(out_dir, name, {key: paths[0] for key, paths in figures.items()},
                              display_table(verdicts), wandb_project or wandb.get("project") or "equisweep",
                              wandb_entity or wandb.get("entity"), wandb_mode or wandb.get("mode") or "auto")
    return Report(out_dir, files, verdicts, figures)


def _tables(sweep_dir: str, name: str, source: str, project: str | None,
            entity: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    if source == "local":
        return read_results(sweep_dir), read_angles(sweep_dir)
    if source == "wandb":
        return wandb_runs.fetch_tables(project or "equisweep", group=name, entity=entity)
    raise UserError(f"source: choose local or wandb, got {source!r}")


def _figures(results: pd.DataFrame, angles: pd.DataFrame, verdicts: Verdicts, out: Path,
             asymmetry: pd.DataFrame | None) -> dict[str, list[Path]]:
    """Each figure the data supports, saved as PNG and SVG."""
    drawn = {"accuracy_by_angle": fig.accuracy_by_angle(results, angles)}
    if not verdicts.table.empty:
        drawn["gap_map"] = fig.gap_map(verdicts.table, conditions=verdicts.conditions,
                                       colours=arms.colours(results))
    finished = arms.finished(results)
    approx_sizes = finished.loc[finished["exact"].astype(object).eq(False), "input_size"].nunique()
    if not verdicts.table.empty and approx_sizes > 1:
        drawn["gap_by_input_size"] = fig.gap_by(results, axis="input_size")
    gaussians = [r for r in finished["train_symmetry"].unique() if gaussian_params(r)]
    if not verdicts.table.empty and len({gaussian_params(r)[1] for r in gaussians}) > 1:
        drawn["gap_by_gaussian_std"] = fig.gap_by(results, axis="gaussian_std")
    relaxed = verdicts.table[(verdicts.table["method"] != arms.APPROX) & (verdicts.table["exact_arm"] != "")
                             & verdicts.table["arm_eq_error"].notna()]
    if not relaxed.empty:
        drawn["relaxation_gain"] = fig.relaxation_gain(verdicts.table, colours=arms.colours(results))
    if any(column.startswith(LAYER_ERROR_PREFIX) for column in results.columns):
        drawn["layer_errors"] = fig.layer_errors(results)
    points = None if asymmetry is None else fig.asymmetry_points(verdicts.table, verdicts.conditions, results,
                                                                 asymmetry)
    if points is not None and not points.empty:
        drawn["gain_by_asymmetry"] = fig.gain_by_asymmetry(points, colours=arms.colours(results))
    return {name: fig.save_figure(figure, out, name) for name, figure in drawn.items()}


# A section is (title, blocks); a block is ("p", text), ("table", (frame, right-aligned columns)) or
# ("figure", (the PNG and SVG paths, caption)).
Section = tuple[str, list[tuple[str, object]]]


def _sections(name: str, results: pd.DataFrame, angles: pd.DataFrame, verdicts: Verdicts,
              figures: dict[str, list[Path]], asymmetry: list[tuple[str, object]]) -> list[Section]:
    shown = display_table(verdicts)
    winners = winners_display(verdicts)
    context = _context(results, verdicts)
    sections: list[Section] = [
        ("Summary", [("p", summary_paragraph(verdicts))]),
        ("Which arm wins", [("p", WINNERS_INTRO), ("table", (winners, winners.attrs["right"]))]),
        ("Metrics", [("p", metric_definitions(angles))]),
        ("Verdict", [("p", verdict_intro(verdicts, context)),
                     ("table", (shown, shown.attrs["right"]))]),
    ]
    for key, paths in figures.items():
        title, caption = FIGURE_TEXT[key]
        sections.append((title, [("figure", (paths, f"{caption} {context}."))]))
    learned = family_blocks(results)
    if learned:
        sections.append((FAMILY_TITLE, learned))
    if asymmetry:
        sections.append(("Asymmetry of the data", asymmetry))
    sections.append(("Sweep", _sweep_blocks(name, results)))
    return sections


def _asymmetry_blocks(sweep_dir: str) -> tuple[pd.DataFrame | None, list[tuple[str, object]]]:
    """The sweep's asymmetry table (None where it has none, or a damaged one) and the report's blocks about it: the
    table, or what is wrong with it and the fix; nothing for a sweep that did not measure it."""
    try:
        table = read_asymmetry(sweep_dir)
    except DamagedTable as err:
        return None, [("p", f"{err.problem}: run the sweep again with --resume to measure it again.")]
    if table is None:
        return None, []
    return table, [("p", ASYMMETRY_INTRO), ("table", (asymmetry_display(table), ("asymmetry [95% CI]",)))]


def _context(results: pd.DataFrame, verdicts: Verdicts) -> str:
    """Dataset, epochs and seeds per arm, as each caption states them."""
    finished = arms.finished(results)

    def values(column: str) -> str:
        found = sorted(finished[column].dropna().unique(), key=str) if column in finished else []
        return ", ".join(str(v) for v in found) or "?"

    per_arm = [column for column in [*arms.arm_columns(finished), REGIME, *verdicts.conditions]
               if column in finished]
    counts = finished.groupby(list(dict.fromkeys(per_arm)), dropna=False).size() if per_arm else pd.Series(
        [len(finished)])
    low, high = int(counts.min()), int(counts.max())
    seeds = f"{low} seed{'s' if high > 1 else ''}" if low == high else f"{low}–{high} seeds"
    return f"Dataset {values('dataset')}, {values('epochs')} epochs, {seeds} per arm"


def _sweep_blocks(name: str, results: pd.DataFrame) -> list[tuple[str, object]]:
    """The sweep's config (shared and varying settings that act under its optimizer and schedule), trial counts,
    failures and compute time."""
    counts = results["status"].value_counts()
    settings = [c for c in arms.setting_columns(results) if _acts(results, c)]
    varying = {c: sorted(results[c].dropna().astype(str).unique()) for c in settings if results[c].nunique() > 1}
    shared = {c: results[c].iloc[0] for c in settings if c not in varying and results[c].notna().any()}
    finished = arms.finished(results)
    hours = finished.get("trial_seconds", pd.Series(dtype=float)).sum() / 3600
    train_hours = finished["train_seconds"].sum() / 3600
    blocks: list[tuple[str, object]] = [
        ("p", f"Sweep {name}: {len(results)} trials, "
              + ", ".join(f"{count} {status}" for status, count in counts.items())
              + f". Total compute of the finished trials: {hours:.2f} h of trial time ({train_hours:.2f} h training)."),
        ("table", (pd.DataFrame({"varying setting": list(varying),
                                 "values": [", ".join(v) for v in varying.values()]}), ())),
        ("table", (pd.DataFrame({"shared setting": list(shared), "value": [str(v) for v in shared.values()]}), ())),
    ]
    failed = results[results["status"] == "failed"]
    if len(failed):
        blocks.append(("p", f"{len(failed)} failed trials, with their reasons:"))
        blocks.append(("table", (failed[["trial_name", "error"]].rename(columns={"trial_name": "trial"}), ())))
    return blocks


def _acts(results: pd.DataFrame, column: str) -> bool:
    """Whether a setting does anything in this sweep: ``momentum`` only under sgd, ``step_size`` and ``gamma``
    only under the step schedule; every other setting always."""
    if column not in _ACTS_ONLY_UNDER:
        return True
    other, values = _ACTS_ONLY_UNDER[column]
    return other not in results.columns or results[other].isin(values).any()


def _markdown(name: str, sections: list[Section], out_dir: Path) -> str:
    lines = [f"# {name}: when does relaxed equivariance win?", ""]
    for title, blocks in sections:
        lines += [f"## {title}", ""]
        for kind, content in blocks:
            if kind == "p":
                lines += [str(content), ""]
            elif kind == "table":
                frame, right = content
                lines += [markdown_table(frame, right=right), ""]
            else:
                paths, caption = content
                lines += [f"![{paths[0].stem}]({paths[0].relative_to(out_dir)})", "", f"*{caption}* "
                          f"([SVG]({paths[1].relative_to(out_dir)}))", ""]
    return "\n".join(lines)


_CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
figcaption{color:#555;font-size:13px}"""


def _html(name: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(name)}: when does relaxed equivariance win?</h1>"]
    for title, blocks in sections:
        body.append(f"<h2>{html.escape(title)}</h2>")
        for kind, content in blocks:
            if kind == "p":
                body.append(f"<p>{html.escape(str(content))}</p>")
            elif kind == "table":
                frame, right = content
                body.append(_html_table(frame, set(right)))
            else:
                paths, caption = content
                data = base64.b64encode(paths[0].read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)} report</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _html_table(frame: pd.DataFrame, right: set[str]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = "".join(f'<td{" class=num" if c in right else ""}>{html.escape(str(v))}</td>'
                        for c, v in zip(frame.columns, row))
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _column_value(results: pd.DataFrame, prefix: str) -> dict[str, str]:
    """``wandb_project`` etc. of the first trial as ``{"project": ...}`` (W&B settings are shared by a sweep)."""
    return {c.removeprefix(f"{prefix}_"): results[c].iloc[0] for c in results.columns
            if c.startswith(f"{prefix}_") and results[c].notna().any()}


