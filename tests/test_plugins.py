"""Plugin discovery: builtins through the public hooks, entry points, provenance, duplicates, lookups."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import cli, ner_records

from loraforge import hookspecs
from loraforge.errors import PluginError, RecipeError
from loraforge.hookspecs import hookimpl
from loraforge.plugins import BUILTIN_MODULES, KINDS, Registry, get_plugin_manager
from loraforge.testing import TINY_MODEL

PLUGIN_SOURCE = textwrap.dedent('''
    """A third-party task: echo the text back. Knows nothing of loraforge's internals."""
    from dataclasses import dataclass

    from loraforge.components import Example, Metric, Task
    from loraforge.hookspecs import hookimpl
    from loraforge.schema import option


    class EchoTask(Task):
        @dataclass
        class Options:
            prefix: str = option("Repeat:", help="Text before the record.")

        default_metrics = ("exact_match",)

        def format(self, record):
            return Example(f"{self.options.prefix} {record.data['text']}\\n", record.data["text"])

        def reference(self, record):
            return record.data["text"]

        def parse(self, generated, record):
            return generated.strip()


    class ExactMatch(Metric):
        def compute(self, run, predictions, references):
            hits = sum(p == r for p, r in zip(predictions, references))
            return {"accuracy": hits / len(references)}


    @hookimpl
    def register_tasks(register):
        register("echo", EchoTask)


    @hookimpl
    def register_metrics(register):
        register("exact_match", ExactMatch)
''')


def install_plugin(site: Path) -> Path:
    """Install a plugin the way pip leaves it: a module plus a .dist-info with a `loraforge` entry point."""
    site.mkdir(parents=True)
    (site / "echo_task_plugin.py").write_text(PLUGIN_SOURCE)
    info = site / "echo_task_plugin-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-task-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[loraforge]\necho = echo_task_plugin\n")
    return site


def test_builtins_register_through_the_public_hooks() -> None:
    registry = Registry(get_plugin_manager(entry_points=False))
    assert registry.names("task") == ["classification", "ner", "style"]
    assert {"lora", "dora"} <= set(registry.names("adapter"))
    assert registry.names("exporter") == ["adapter", "merged"]
    assert {"hf", "tiny"} <= set(registry.names("model loader"))
    for reg in registry.all():
        assert reg.plugin in BUILTIN_MODULES and reg.package.startswith("loraforge ")


def test_every_hook_is_documented_and_registration_hooks_are_known() -> None:
    specs = [name for name in dir(hookspecs) if name.startswith(("register_", "on_"))]
    for name in specs:
        assert getattr(hookspecs, name).__doc__.strip(), name
    assert set(KINDS.values()) == {n for n in specs if n.startswith("register_")}


def test_duplicate_names_name_both_plugins() -> None:
    class Shadow:
        @hookimpl
        def register_adapters(self, register):
            register("lora", object)

    with pytest.raises(PluginError, match=r"adapter 'lora' is registered twice: by plugin "
                                          r"'loraforge.builtin.adapters' .* and by plugin"):
        Registry(get_plugin_manager([Shadow()], entry_points=False))


def test_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def register_taks(self, register):  # noqa: D401 - the typo is the point
            pass

    with pytest.raises(PluginError, match="register_taks"):
        get_plugin_manager([Typo()], entry_points=False)


def test_lookup_error_suggests_and_lists_choices() -> None:
    registry = Registry(get_plugin_manager(entry_points=False))
    with pytest.raises(RecipeError) as exc:
        registry.get("adapter", "lorra", key="adapter.type")
    text = exc.value.render()
    assert "did you mean 'lora'?" in text and "known: dora, lora" in text and "adapter.type" in text


@pytest.mark.slow
def test_entry_point_plugin_adds_a_task_without_touching_loraforge(tmp_path: Path, cache_env: dict) -> None:
    import tomli_w

    site = install_plugin(tmp_path / "site")
    env = {**cache_env, "PYTHONPATH": str(site)}
    listed = json.loads(cli("plugins", "--json", env=env).stdout)
    echo = [row for row in listed if row["name"] == "echo"]
    assert echo == [{"kind": "task", "name": "echo", "plugin": "echo", "package": "echo-task-plugin 0.3"}]

    records = [{"text": r["text"]} for r in ner_records(24)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = tmp_path / "echo.toml"
    recipe.write_text(tomli_w.dumps({
        "name": "echo", "model": TINY_MODEL, "task": {"type": "echo", "prefix": "Echo:"},
        "data": {"train": "train.jsonl", "test": "train.jsonl", "max_records": 24},
        "training": {"max_steps": 2, "batch_size": 8, "logging_steps": 1, "eval_loss": False},
        "evaluation": {"max_records": 4, "max_new_tokens": 4}, "output": {"dir": str(tmp_path / "run"), "allow_outside": True},
    }))
    done = cli("run", str(recipe), "--quiet", env=env)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["metrics"]["test"]) == {"exact_match"}
    assert 0.0 <= metrics["metrics"]["test"]["exact_match"]["accuracy"] <= 1.0

    without = cli("validate", str(recipe), env={**env, "LORAFORGE_PLUGINS": ""})
    assert without.returncode == 2 and "Traceback" not in without.stderr
    assert "task 'echo' is provided by no installed plugin" in without.stderr
    bad_option = cli("validate", str(recipe), "--set", "task.prefx=x", env=env)
    assert bad_option.returncode == 2 and "task.prefx: unknown key; did you mean 'prefix'?" in bad_option.stderr
