"""`loraforge new plugin NAME`: a plugin package skeleton that installs, registers and passes its own tests.

The skeleton is what docs/writing-plugins.md describes (and what plugins/loraforge-jsonx is a full example of):

    NAME/
      pyproject.toml                  entry point [project.entry-points.loraforge]; data and recipe as package data
      README.md
      src/MODULE/__init__.py
      src/MODULE/plugin.py            an example task and metric, registered through the hooks, and the recipe
      src/MODULE/data/examples.jsonl  a tiny data set
      src/MODULE/recipes/SHORT_tiny.toml
      tests/test_plugin.py            unit tests, the entry point through the CLI, a quick run on the tiny model

NAME is a distribution name ("loraforge-acme"); MODULE its import name ("loraforge_acme"); SHORT the entry-point
and task name ("acme": MODULE without a "loraforge_" prefix). Templates are plain strings in this module (no
package data), filled by replacing `__PLACEHOLDER__` words, so the braces of the Python and TOML they hold stay
as written.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import RunError

#: PEP 508 distribution names
_DIST_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


def names(name: str) -> dict[str, str]:
    """Every name the skeleton uses, derived from the distribution name; RunError when NAME cannot be one."""
    hint = 'Use letters, digits and "-", starting with a letter, e.g. `loraforge new plugin loraforge-acme`.'
    if not _DIST_NAME.match(name):
        raise RunError(f"'{name}' is not a valid package name", key="name", hint=hint)
    module = re.sub(r"[-_.]+", "_", name).lower()
    if not module.isidentifier() or keyword.iskeyword(module):
        raise RunError(f"'{name}' gives the Python module name '{module}', which is not an identifier", key="name",
                       hint=hint)
    if module == "loraforge" or module in sys.stdlib_module_names:
        raise RunError(f"'{name}' gives the module name '{module}', which would shadow "
                       f"{'loraforge itself' if module == 'loraforge' else 'a standard-library module'}",
                       key="name", hint=hint)
    short = module.removeprefix("loraforge_") or module
    return {"__DIST__": name, "__MODULE__": module, "__SHORT__": short, "__TASK__": short,
            "__METRIC__": f"{short}_exact_match", "__RECIPE__": f"{short}_tiny",
            "__LORAFORGE__": ".".join(__version__.split(".")[:2])}


def new_plugin(name: str, dest: Path) -> Path:
    """Write the skeleton of plugin package `name` into the new folder `dest` and return it."""
    values = names(name)
    dest = Path(dest)
    if dest.exists():
        raise RunError(f"{dest} already exists", key="--dir",
                       hint="Pick another name or --dir; loraforge never writes into an existing folder.")
    module, recipe = values["__MODULE__"], values["__RECIPE__"]
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        ".gitignore": GITIGNORE,
        f"src/{module}/__init__.py": INIT,
        f"src/{module}/plugin.py": PLUGIN,
        f"src/{module}/data/examples.jsonl": DATA,
        f"src/{module}/recipes/{recipe}.toml": RECIPE,
        "tests/test_plugin.py": TEST,
    }
    dest.mkdir(parents=True)
    try:
        for relative, template in files.items():
            path = dest / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fill(template, values), encoding="utf-8")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def fill(template: str, values: dict[str, str]) -> str:
    text = template.lstrip("\n")
    for key, value in values.items():
        text = text.replace(key, value)
    return text


# ------------------------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["plugin"], help="what to create")
    parser.add_argument("name", help="distribution name of the package, e.g. loraforge-acme")
    parser.add_argument("--dir", default=".", type=Path, help="folder to create the package folder NAME in "
                                                              "(default: the working directory)")


def command(args: argparse.Namespace, console: Any) -> int:
    dest = new_plugin(args.name, Path(args.dir) / args.name)
    values = names(args.name)
    console.print(f"created plugin package [bold]{args.name}[/] in {dest}")
    console.print(f"  task '{values['__TASK__']}', metric '{values['__METRIC__']}', recipe "
                  f"'{values['__MODULE__']}:recipes/{values['__RECIPE__']}.toml'")
    console.print(f"next:\n  cd {dest}\n  pip install -e .\n  python -m pytest -q")
    return 0


# ------------------------------------------------------------------------------------------------- templates

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "A loraforge plugin: the __TASK__ task and the __METRIC__ metric."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["loraforge>=__LORAFORGE__"]

[project.optional-dependencies]
test = ["pytest>=8"]

# loraforge imports this module and calls its hook implementations.
[project.entry-points.loraforge]
__SHORT__ = "__MODULE__.plugin"

[tool.setuptools.packages.find]
where = ["src"]

# Data and recipes ship inside the package, so a recipe can `extends = "__MODULE__:recipes/__RECIPE__.toml"`.
[tool.setuptools.package-data]
__MODULE__ = ["data/*.jsonl", "recipes/*.toml"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra"
markers = ["slow: trains a model (seconds to a minute on a CPU)"]
filterwarnings = [
    "ignore::FutureWarning",
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
]
'''

GITIGNORE = '''
__pycache__/
*.egg-info/
runs/
.pytest_cache/
build/
dist/
'''

README = '''
# __DIST__

A loraforge plugin, generated by `loraforge new plugin __DIST__`. It adds:

| kind | name | where |
| --- | --- | --- |
| task | `__TASK__` | `src/__MODULE__/plugin.py` (`AnswerTask`) |
| metric | `__METRIC__` | `src/__MODULE__/plugin.py` (`ExactMatch`) |
| recipe | `__RECIPE__` | `src/__MODULE__/recipes/__RECIPE__.toml`, on `src/__MODULE__/data/examples.jsonl` |

```sh
pip install -e .
loraforge plugins                 # lists __TASK__ and __METRIC__ from __DIST__ 0.1.0
loraforge run __MODULE__:recipes/__RECIPE__.toml
python -m pytest -q               # -m "not slow" skips the training run
```

The example task answers short questions with one word; replace it (and the data) with yours. Components are
registered by the `register_*` hooks in `plugin.py`; the entry point in `pyproject.toml` is what makes loraforge
load that module. `LORAFORGE_PLUGINS=__SHORT__` loads only this plugin, `LORAFORGE_PLUGINS=""` none.

The tests use the fixtures of `loraforge.testing` (`loraforge_cache`, `make_recipe`), which pytest loads from
loraforge's `pytest11` entry point. See docs/writing-plugins.md in the loraforge repository for every hook, the
component contracts and recipe sections of your own.
'''

INIT = '''
"""__DIST__: a loraforge plugin (the `loraforge` entry point names `__MODULE__.plugin`)."""

__version__ = "0.1.0"
'''

PLUGIN = '''
"""The module the `loraforge` entry point names: components and the hooks that register them.

- `register_tasks` registers the task "__TASK__" (`[task] type = "__TASK__"`)
- `register_metrics` registers the metric "__METRIC__" (the task's default metric)
- `register_recipes` registers the recipe "__RECIPE__" (`loraforge run __MODULE__:recipes/__RECIPE__.toml`)

Other hooks (adapters, quantizers, exporters, model loaders, recipe sections of your own, run lifecycle events)
are listed in loraforge/hookspecs.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from loraforge.components import Example, Metric, Record, Task
from loraforge.errors import DataError
from loraforge.hookspecs import hookimpl
from loraforge.run import Run
from loraforge.schema import option

#: what `parse` returns when a generation holds no answer
INVALID = "invalid"


def recipe_path(name: str = "__RECIPE__") -> Path:
    """A recipe shipped inside this package (package data), as a file path."""
    return Path(str(resources.files(__package__).joinpath("recipes", f"{name}.toml")))


class AnswerTask(Task):
    """Short answers: the model reads a question and writes the answer on one line."""

    @dataclass
    class Options:
        instruction: str = option("Answer with one word.", help="First line of every prompt.")
        question_field: str = option("question", help="Record key holding the question.")
        answer_field: str = option("answer", help="Record key holding the gold answer.")

        def check(self):
            if self.question_field == self.answer_field:
                yield "answer_field", f"is the same key as question_field ({self.question_field!r})"

    default_metrics: ClassVar[tuple[str, ...]] = ("__METRIC__",)

    def check(self, record: Record) -> None:
        """Both fields must be non-empty strings; errors name the file and line."""
        data = record.data if isinstance(record.data, dict) else {}
        for key in (self.options.question_field, self.options.answer_field):
            value = data.get(key)
            if not isinstance(value, str) or not value.strip():
                got = "missing" if key not in data else f"{value!r}, not a non-empty string"
                raise DataError(f"field '{key}' is {got}", file=record.file, line=record.line,
                                hint=f"give every record a '{key}', or set `task.{key}_field` in the recipe")

    def format(self, record: Record) -> Example:
        o = self.options
        prompt = f"{o.instruction}\\nQuestion: {record.data[o.question_field]}\\nAnswer:\\n"
        return Example(prompt=prompt, target=record.data[o.answer_field].strip())

    def reference(self, record: Record) -> str:
        return record.data[self.options.answer_field].strip()

    def parse(self, generated: str, record: Record) -> str:
        """The first non-empty line, stripped; INVALID when there is none. Never raises."""
        if not isinstance(generated, str):
            return INVALID
        return next((line.strip() for line in generated[:10_000].splitlines() if line.strip()), INVALID)


class ExactMatch(Metric):
    """Share of answers equal to the gold answer, ignoring case and surrounding spaces."""

    def compute(self, run: Run, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        n = len(references)
        hits = sum(isinstance(p, str) and p.casefold() == r.casefold() for p, r in zip(predictions, references))
        invalid = sum(p == INVALID for p in predictions)
        return {"accuracy": hits / n if n else 0.0, "invalid_rate": invalid / n if n else 0.0, "records": n}


@hookimpl
def register_tasks(register: Any) -> None:
    register("__TASK__", AnswerTask)


@hookimpl
def register_metrics(register: Any) -> None:
    register("__METRIC__", ExactMatch)


@hookimpl
def register_recipes(register: Any) -> None:
    register("__RECIPE__", recipe_path())
'''

DATA = "".join(f'{{"question": "What is the opposite of {q}?", "answer": "{a}"}}\n' for q, a in (
    ("hot", "cold"), ("up", "down"), ("left", "right"), ("big", "small"), ("fast", "slow"), ("open", "closed"),
    ("light", "dark"), ("early", "late"), ("full", "empty"), ("wet", "dry"), ("happy", "sad"), ("hard", "soft"),
    ("old", "young"), ("rich", "poor"), ("loud", "quiet"), ("strong", "weak"), ("true", "false"), ("win", "lose"),
    ("push", "pull"), ("buy", "sell"), ("first", "last"), ("inside", "outside"), ("day", "night"), ("start", "end"),
))

RECIPE = '''
# The __TASK__ task on any CPU, offline, in about a minute: a tiny Llama-architecture model built locally (BPE
# tokenizer trained on the training text, random weights from a seed). Ships inside the package, so other recipes
# can build on it:  extends = "__MODULE__:recipes/__RECIPE__.toml"
name = "__RECIPE__"
description = "Example recipe of __DIST__: one-word answers on a tiny model."
requires = ["__DIST__"]

[model]
loader = "tiny"
hidden_size = 64
num_layers = 1
num_heads = 4
num_kv_heads = 2
intermediate_size = 128
vocab_size = 400
seed = 0

[quantization]
type = "none"

[adapter]
type = "lora"
r = 8
lora_alpha = 16
target_modules = ["q_proj", "v_proj"]
# A randomly initialised base knows no language: the embeddings and the head must learn too.
modules_to_save = ["embed_tokens", "lm_head"]

[task]
type = "__TASK__"

[data]
# Relative to this file. The same records train and test: this recipe shows the plumbing, not generalisation.
train = "../data/examples.jsonl"
test = "../data/examples.jsonl"

[training]
epochs = 20
learning_rate = 5e-3
batch_size = 8
max_length = 128
precision = "fp32"
warmup_ratio = 0.0
logging_steps = 5

[evaluation]
split = "test"

[[export]]
type = "adapter"
'''

TEST = '''
"""Tests of __DIST__. `loraforge_cache` and `make_recipe` come from loraforge.testing (loaded by pytest through
loraforge's pytest11 entry point); the CLI tests run the real `loraforge` command against the installed plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loraforge.components import Record
from loraforge.errors import DataError
from loraforge.testing import QUICK_TRAINING, TINY_MODEL, scoring_run
from __MODULE__.plugin import INVALID, AnswerTask, ExactMatch, recipe_path

SHIPPED = "__MODULE__:recipes/__RECIPE__.toml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loraforge", *args], env=dict(os.environ), capture_output=True,
                          text=True, timeout=600)


def record(question: str = "What is the opposite of hot?", answer: str = "cold") -> Record:
    return Record({"question": question, "answer": answer}, "mem.jsonl", 1)


def test_format_and_parse_round_trip() -> None:
    task = AnswerTask()
    example = task.format(record())
    assert example.prompt.endswith("Question: What is the opposite of hot?\\nAnswer:\\n")
    assert task.parse(example.target, record()) == task.reference(record()) == "cold"
    assert task.parse("\\n  cold \\nsomething else", record()) == "cold"


@pytest.mark.parametrize("garbage", ["", "   \\n\\n", None, 42])
def test_parse_never_raises(garbage) -> None:
    assert AnswerTask().parse(garbage, record()) == INVALID


def test_check_names_the_problem() -> None:
    with pytest.raises(DataError, match="field 'answer' is missing"):
        AnswerTask().check(Record({"question": "q"}, "data.jsonl", 3))


def test_metric_by_hand() -> None:
    result = ExactMatch().compute(scoring_run(AnswerTask()), ["Cold", "up", INVALID], ["cold", "down", "small"])
    assert result == {"accuracy": 1 / 3, "invalid_rate": 1 / 3, "records": 3}


def test_the_entry_point_registers_the_components() -> None:
    done = cli("plugins", "--json")
    assert done.returncode == 0, done.stderr
    mine = {(row["kind"], row["name"]) for row in json.loads(done.stdout) if row["plugin"] == "__SHORT__"}
    assert mine == {("task", "__TASK__"), ("metric", "__METRIC__"), ("recipe", "__RECIPE__")}, \\
        "the plugin is not installed: run `pip install -e .` in the package folder"


def test_shipped_recipe_validates() -> None:
    assert recipe_path().is_file()
    done = cli("validate", SHIPPED)
    assert done.returncode == 0, done.stderr
    bad = cli("validate", SHIPPED, "--set", "task.instructions=x")
    assert bad.returncode == 2 and "did you mean 'instruction'?" in bad.stderr


@pytest.mark.slow
def test_quick_run_on_the_tiny_model(make_recipe, tmp_path: Path) -> None:
    recipe = make_recipe({"extends": SHIPPED, "model": TINY_MODEL, "training": QUICK_TRAINING})
    done = cli("run", str(recipe), "--quiet", "--set", "training.max_steps=2", "--set", "evaluation.max_records=4",
               "--set", "evaluation.max_new_tokens=8")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]["test"]["__METRIC__"]
    assert result["records"] == 4 and 0.0 <= result["accuracy"] <= 1.0
'''
