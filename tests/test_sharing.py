"""Recipe sharing: `extends` into an installed package, `loraforge explain`, `loraforge recipes`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import cli

from loraforge.errors import RecipeError
from loraforge.plugins import Registry, get_plugin_manager
from loraforge.recipe import load_recipe

BASE = textwrap.dedent('''
    name = "team_base"
    [model]
    loader = "tiny"
    hidden_size = 64
    num_heads = 4
    num_kv_heads = 2
    [task]
    type = "ner"
    labels = ["MEDICATION", "DOSAGE"]
    [adapter]
    r = 8
    alpha = 16
    [data]
    train = "train.jsonl"
''')


def shipped_package(root: Path) -> Path:
    """An importable package that ships a recipe and registers it, like a plugin package would."""
    package = root / "team_recipes"
    (package / "recipes").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent('''
        from pathlib import Path
        from loraforge.hookspecs import hookimpl

        @hookimpl
        def register_recipes(register):
            register("team_base", Path(__file__).parent / "recipes" / "base.toml")
    '''))
    (package / "recipes" / "base.toml").write_text(BASE)
    (package / "recipes" / "train.jsonl").write_text('{"text": "Take aspirin.", "entities": []}\n')
    info = root / "team_recipes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: team-recipes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[loraforge]\nteam = team_recipes\n")
    return root


def test_extends_a_recipe_inside_an_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(shipped_package(tmp_path / "site")))
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "team_recipes:recipes/base.toml"\nname = "mine"\n[adapter]\nr = 4\n')
    recipe = load_recipe(mine)
    recipe.bind(Registry(get_plugin_manager(entry_points=False)))
    assert recipe.adapter.options.r == 4 and recipe.adapter.options.lora_alpha == 16.0
    # data paths stay relative to the file that wrote them: inside the package
    assert recipe.data_path("train") == tmp_path / "site" / "team_recipes" / "recipes" / "train.jsonl"
    direct = load_recipe("team_recipes:recipes/base.toml")
    assert direct.name == "team_base"


def test_missing_package_in_extends(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "not_installed_pkg:recipes/base.toml"\n')
    with pytest.raises(RecipeError, match="names package 'not_installed_pkg', which is not installed"):
        load_recipe(mine)


def test_explain_shows_each_value_and_its_source(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "train.jsonl").write_text('{"text": "x", "entities": []}\n')
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\n[training]\nepochs = 2\n')
    done = cli("explain", str(child), "--set", "adapter.r=2", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in done.stdout.splitlines() if line.startswith("│")}
    assert rows["adapter.r"] == ["2", "--set adapter.r=2"]
    assert rows["adapter.lora_alpha"][0] == "16.0" and rows["adapter.lora_alpha"][1].endswith("base.toml")
    assert rows["training.epochs"][1].endswith("child.toml")
    assert rows["training.learning_rate"] == ["0.0002", "default"]


def test_recipes_lists_what_plugins_ship(tmp_path: Path) -> None:
    site = shipped_package(tmp_path / "site")
    done = cli("recipes", env={"PYTHONPATH": str(site), "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if "team_base" in line)
    assert "base.toml" in line and "team-recipes 1.0" in line
