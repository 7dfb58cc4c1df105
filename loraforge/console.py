"""The terminal reporter: a plugin of the lifecycle hooks, like pytest's. Nothing in the training loop prints.

Progress bars show the phase, step/epoch, loss and an ETA from the measured time per step; evaluation ends with a
per-class table. Only the main process prints, so multi-process runs show one display.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .hookspecs import hookimpl
from .runfolder import METRICS
from .run import Run

PHASES = {"load": "Loading model", "data": "Preparing data", "train": "Training", "evaluate": "Evaluating",
          "baseline": "Evaluating the base model", "export": "Exporting"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def metric_tables(metrics: dict[str, Any]) -> list[Table]:
    """One table per split and metric: per-class rows, then micro/macro averages, then any other scalars."""
    tables = []
    for split, by_metric in metrics.items():
        if split == "baseline":
            continue
        for name, result in by_metric.items():
            table = Table(title=f"{name} on {split}", title_justify="left")
            per_class = result.get("per_class")
            if per_class:
                columns = [c for c in ("precision", "recall", "f1", "accuracy", "support")
                           if c in next(iter(per_class.values()))]
                table.add_column("class")
                for c in columns:
                    table.add_column(c, justify="right")
                for label, scores in per_class.items():
                    table.add_row(label, *[_fmt(scores.get(c)) for c in columns])
                for avg in ("micro", "macro"):
                    if isinstance(result.get(avg), dict):
                        table.add_row(f"[bold]{avg}[/]", *[_fmt(result[avg].get(c)) for c in columns],
                                      end_section=avg == "micro" and "macro" not in result)
                for kind, scores in _mentions(result):
                    table.add_row(f"{kind} mentions", *[_fmt(scores[c]) if c in ("recall", "support") else ""
                                                        for c in columns])
            scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if scalars:
                if not per_class:
                    table.add_column("measure")
                    table.add_column("value", justify="right")
                    for k, v in scalars.items():
                        table.add_row(k, _fmt(v))
                else:
                    table.caption = "  ".join(f"{k} {_fmt(v)}" for k, v in scalars.items())
            tables.append(table)
    return tables


def comparison_table(columns: dict[str, dict[str, Any]], metric: str, measure: str = "f1",
                     title: str | None = None) -> Table | None:
    """Per-class `measure` side by side for several models (base k-shot, adapters, sweep points)."""
    per_model = {name: scores.get(metric) for name, scores in columns.items() if scores.get(metric)}
    if not per_model or not all("per_class" in r for r in per_model.values()):
        return None
    table = Table(title=title or f"{metric} {measure} by class", title_justify="left")
    table.add_column("class")
    for name in per_model:
        table.add_column(name, justify="right")
    classes = list(next(iter(per_model.values()))["per_class"])
    for label in classes:
        table.add_row(label, *[_fmt(r["per_class"].get(label, {}).get(measure)) for r in per_model.values()])
    for avg in ("micro", "macro"):
        if all(isinstance(r.get(avg), dict) for r in per_model.values()):
            table.add_row(f"[bold]{avg}[/]", *[_fmt(r[avg].get(measure)) for r in per_model.values()])
    kinds = [dict(_mentions(r)) for r in per_model.values()]
    for kind in ("seen", "unseen"):
        if all(kind in k for k in kinds):
            table.add_row(f"recall, {kind} mentions", *[_fmt(k[kind]["recall"]) for k in kinds])
    return table


def _mentions(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, {recall, support}) for the seen/unseen mention breakdown of an entity metric, if it has one."""
    return [(kind, scores) for kind, scores in (result.get("mentions") or {}).items() if scores.get("support")]


def baseline_tables(metrics: dict[str, Any]) -> list[Table]:
    """Base model (k-shot) against the adapter, per class, for each metric that has per-class scores."""
    base = metrics.get("baseline")
    if not base:
        return []
    columns = {f"base {base['shots']}-shot": base["scores"], "adapter": metrics.get(base["split"], {})}
    tables = [comparison_table(columns, name, title=f"{name} on {base['split']}: base vs adapter")
              for name in base["scores"]]
    return [t for t in tables if t is not None]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class ConsoleReporter:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress: Progress | None = None
        self.bar: Any = None

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress, self.bar = None, None

    def _start(self, run: Run, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
            console=self.console, transient=False)
        self.progress.start()
        self.bar = self.progress.add_task(PHASES.get(run.phase, run.phase), total=total, info="", eta="--:--")

    @hookimpl
    def on_run_start(self, run: Run) -> None:
        if not run.is_main_process:  # one line per extra process, so a launch shows every rank took part
            self.console.print(f"rank {run.rank} of {run.world_size}: training with rank 0")
            return
        c = run.components
        quant = f", {c.quantization.describe()}" if c.quantization.bits else ""
        self.console.print(f"[bold]loraforge[/] {run.recipe.name}: {c.model.describe()} · {c.adapter.describe()}"
                           f"{quant} · task {run.recipe.task.name} → {run.out_dir}")

    @hookimpl
    def on_phase(self, run: Run) -> None:
        if not run.is_main_process:
            return
        self._stop()
        self.console.print(f"[cyan]▸[/] {PHASES.get(run.phase, run.phase)}")

    @hookimpl
    def on_progress(self, run: Run) -> None:
        if not run.is_main_process or run.progress is None:
            return
        p = run.progress
        if self.bar is None:
            self._start(run, p.total)
        info = ""
        if p.unit == "step":
            loss = p.info.get("loss")
            info = f"epoch {p.info.get('epoch', 0):.2f}" + (f" loss {loss:.4f}" if loss is not None else "")
        self.progress.update(self.bar, completed=p.done, total=p.total, info=info,
                             eta=_duration(p.info.get("eta_s")) if "eta_s" in p.info else "")

    @hookimpl
    def on_warning(self, run: Run) -> None:
        if run.is_main_process:
            self.console.print(f"[yellow]warning:[/] {run.warnings[-1]}")

    @hookimpl
    def on_step(self, run: Run) -> None:
        pass  # the loss is shown through on_progress; trackers use this hook

    @hookimpl
    def on_evaluate(self, run: Run) -> None:
        if not run.is_main_process:
            return
        self._stop()
        for table in metric_tables(run.metrics) + baseline_tables(run.metrics):
            self.console.print(table)

    @hookimpl
    def on_export(self, run: Run) -> None:
        if not run.is_main_process:
            return
        self._stop()
        e = run.exports[-1]
        extra = f" (max |Δlogit| {e['max_logit_diff']:.2e})" if "max_logit_diff" in e else ""
        self.console.print(f"  [green]✓[/] {e['type']} → {e['path']}{extra}")

    @hookimpl
    def on_run_end(self, run: Run) -> None:
        if not run.is_main_process:
            if run.error is None:
                self.console.print(f"rank {run.rank} of {run.world_size}: done")
            return
        self._stop()
        if run.error is not None:
            return
        s = run.summary
        t = s.get("train")
        params = s.get("params", {})
        if t is None:  # `loraforge eval`: a saved adapter scored, nothing trained
            self.console.print(f"[bold green]done[/] in {_duration(s.get('wall_time_s'))}: evaluated in "
                               f"{_duration(s.get('evaluate_s'))} · {run.out_dir / METRICS}")
            return
        self.console.print(
            f"[bold green]done[/] in {_duration(s.get('wall_time_s'))}: {t.get('steps')} steps, "
            f"{t.get('tokens_per_s')} tokens/s, trainable {params.get('trainable', 0):,} of "
            f"{params.get('total', 0):,} params · {run.out_dir / METRICS}")
