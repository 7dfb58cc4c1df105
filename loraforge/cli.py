"""Command line: parse arguments, call the engine, turn LoraforgeError into one message and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import Interrupted, LoraforgeError

USER_ERROR = 2
INTERRUPTED = 130


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="the recipe TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set adapter.r=8 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loraforge", description="Fine-tune LLMs with LoRA, DoRA and QLoRA "
                                                                   "from TOML recipes.")
    parser.add_argument("--version", action="version", version=f"loraforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train, evaluate and export as the recipe says",
                         description="Train an adapter from a recipe, evaluate it and export it.")
    _recipe_args(run)
    run.add_argument("--output", type=Path, help="run folder (default: [output] dir, else runs/<recipe name>)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    start = run.add_mutually_exclusive_group()
    start.add_argument("--resume", metavar="CHECKPOINT", help="resume from this checkpoint (default: the latest "
                                                              "checkpoint in the run folder, if any)")
    start.add_argument("--restart", action="store_true", help="start over, deleting the folder's checkpoints")

    evaluate = sub.add_parser("eval", help="score a saved adapter, as the recipe's [evaluation] says",
                              description="Evaluate a saved adapter without training: the recipe's evaluation "
                                          "settings (change them with --set), the base model k-shot beside it "
                                          "when baseline_shots is set. Writes metrics.json and predictions to "
                                          "<run folder>/eval.")
    _recipe_args(evaluate)
    evaluate.add_argument("--adapter", type=Path, help="saved adapter folder (default: <run folder>/adapter, "
                                                       "what `loraforge run` exported)")
    evaluate.add_argument("--output", type=Path, help="where results go (default: <run folder>/eval)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress display")

    validate = sub.add_parser("validate", help="check a recipe, its plugins and its data without training",
                              description="Check the recipe, the plugins it names and its data files.")
    _recipe_args(validate)

    plan = sub.add_parser("plan", help="predict parameters, memory and time before any training",
                          description="Predict trainable parameters, memory, training time and a project timeline "
                                      "from the recipe alone (the model is built on the meta device).")
    from .plan import configure_parser as configure_plan

    configure_plan(plan)

    sweep = sub.add_parser("sweep", help="train once per grid point and compare them per class",
                           description="Run one training per grid point (each in its own folder; finished points "
                                       "are kept) and write a per-class comparison table (markdown, JSON, PNG).")
    _recipe_args(sweep)
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="values to try, e.g. --grid adapter.r=8,16,32 (repeatable; default: [sweep.grid])")
    sweep.add_argument("--output", type=Path, help="sweep folder (default: runs/<recipe name>-sweep)")
    sweep.add_argument("--quiet", action="store_true", help="no progress display")

    new = sub.add_parser("new", help="create a plugin package that passes its own tests",
                         description="Write a plugin package skeleton: entry point, an example task and metric, "
                                     "tests, data and a recipe.")
    from .scaffold import configure_parser as configure_new

    configure_new(new)

    explain = sub.add_parser("explain", help="show every resolved value of a recipe and where it came from",
                             description="Show each resolved recipe value and the file, --set or default it "
                                         "came from.")
    _recipe_args(explain)

    sub.add_parser("recipes", help="list the recipes installed plugins ship",
                   description="List recipes shipped by installed plugin packages (usable with `extends`).")

    plugins = sub.add_parser("plugins", help="list every registered component and where it came from",
                             description="List registered components with the plugin and package providing them.")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from .console import ConsoleReporter
    from .engine import run_recipe
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    observers = () if args.quiet else (ConsoleReporter(console),)
    resume = "restart" if args.restart else (args.resume or "auto")
    run_recipe(recipe, observers, out_dir=args.output.resolve() if args.output else None, resume=resume)
    return 0


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    from .console import ConsoleReporter
    from .engine import evaluate_saved
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    observers = () if args.quiet else (ConsoleReporter(console),)
    evaluate_saved(recipe, args.adapter, observers, args.output.resolve() if args.output else None)
    return 0


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from .engine import build, located
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    with located(recipe):
        run = build(recipe)
    table = Table(title=f"{recipe.name}: valid", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for spec in recipe.components():
        table.add_row(spec.key, spec.name)
    for split, records in run.records.items():
        table.add_row(f"data.{split}", f"{len(records)} records")
    table.add_row("metrics", ", ".join(run.components.metrics))
    console.print(table)
    return 0


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from .plan import command

    return command(args, console)


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from .console import ConsoleReporter, comparison_table
    from .sweep import comparison, parse_grid, run_sweep

    observers = () if args.quiet else (ConsoleReporter(console),)
    folder, results = run_sweep(args.recipe, args.overrides, parse_grid(args.grid),
                                args.output.resolve() if args.output else None, observers)
    columns, split = comparison(results)
    for metric in sorted({m for scores in columns.values() for m in scores}):
        table = comparison_table(columns, metric, title=f"{metric} F1 on {split}, by sweep point")
        if table is not None:
            console.print(table)
    reused = sum(r.reused for r in results)
    console.print(f"{len(results)} points ({reused} already done) → {folder / 'sweep.md'}")
    return 0


def cmd_new(args: argparse.Namespace, console: Console) -> int:
    from .scaffold import command

    return command(args, console)


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    from .plugins import Registry, get_plugin_manager
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    recipe.bind(Registry(get_plugin_manager()))
    table = Table(title=f"{recipe.name}: resolved values", title_justify="left")
    for column in ("key", "value", "from"):
        table.add_column(column, overflow="fold")
    for key, value, source in recipe.explain():
        table.add_row(key, repr(value) if isinstance(value, str) else str(value), _short(source))
    console.print(table)
    return 0


def _short(source: str) -> str:
    """A source path relative to the working directory when it lies below it."""
    try:
        return str(Path(source).resolve().relative_to(Path.cwd()))
    except ValueError:
        return source


def cmd_recipes(args: argparse.Namespace, console: Console) -> int:
    from .plugins import Registry, get_plugin_manager

    registry = Registry(get_plugin_manager())
    table = Table(title="recipes shipped by plugins", title_justify="left")
    for column in ("name", "path", "package"):
        table.add_column(column, overflow="fold")
    for reg in registry.all():
        if reg.kind == "recipe":
            table.add_row(reg.name, str(reg.factory), reg.package)
    console.print(table)
    return 0


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    import json

    from .plugins import Registry, get_plugin_manager

    registry = Registry(get_plugin_manager())
    rows = [{"kind": r.kind, "name": r.name, "plugin": r.plugin, "package": r.package} for r in registry.all()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="registered components", title_justify="left")
    for column in ("kind", "name", "plugin", "package"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    return 0


COMMANDS = {"run": cmd_run, "eval": cmd_eval, "validate": cmd_validate, "plan": cmd_plan, "sweep": cmd_sweep,
            "new": cmd_new, "explain": cmd_explain, "recipes": cmd_recipes, "plugins": cmd_plugins}


def quiet_libraries() -> None:
    """The run display is ours: silence library progress bars, advisory logs and deprecation chatter."""
    import logging
    import os
    import warnings

    for name, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
                        ("TRANSFORMERS_VERBOSITY", "error"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")):
        os.environ.setdefault(name, value)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # optional hub kernels it cannot fetch offline
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|peft|bitsandbytes)\.")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    console = Console()
    try:
        return COMMANDS[args.command](args, console)
    except Interrupted as exc:
        _print_error(exc)
        return INTERRUPTED
    except LoraforgeError as exc:
        _print_error(exc)
        return USER_ERROR
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return INTERRUPTED


def _print_error(exc: LoraforgeError) -> None:
    from rich.text import Text

    text = Text(f"{exc.kind}: ", style="bold red")
    text.append(exc.render())
    Console(stderr=True).print(text, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
