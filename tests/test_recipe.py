"""Recipe loading: extends, overrides, typed sections, collected errors, the resolved dump."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from loraforge.errors import RecipeError
from loraforge.plugins import Registry, get_plugin_manager
from loraforge.recipe import dump, load_recipe

ROOT = Path(__file__).resolve().parents[1]
BASE = """
name = "base"
[model]
loader = "hf"
name = "org/model"
dtype = "bfloat16"
[task]
type = "ner"
labels = ["A", "B"]
[adapter]
r = 16
alpha = 32
target_modules = ["q_proj", "v_proj"]
[quantization]
type = "qlora"
bits = 4
[data]
train = "data/train.jsonl"
[training]
epochs = 3
learning_rate = 2e-4
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_manager(entry_points=False))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def messages(exc: pytest.ExceptionInfo[RecipeError]) -> list[str]:
    return [p.render() for p in exc.value.problems]


def test_sections_are_typed_and_aliases_follow_peft(tmp_path: Path, registry: Registry) -> None:
    recipe = load_recipe(write(tmp_path, "r.toml", BASE))
    recipe.bind(registry)
    assert recipe.training.epochs == 3.0 and recipe.training.learning_rate == 2e-4
    assert recipe.adapter.options.lora_alpha == 32.0  # `alpha` is PEFT's lora_alpha
    assert recipe.adapter.options.target_modules == ["q_proj", "v_proj"]
    assert recipe.quantization.options.quant_type == "nf4"  # default filled in


def test_extends_deep_merges_and_paths_resolve_from_the_declaring_file(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path, "base/base.toml", BASE)
    child = write(tmp_path, "child/child.toml", 'extends = "../base/base.toml"\nname = "child"\n'
                                                "[adapter]\nr = 4\n[training]\nepochs = 1\n")
    recipe = load_recipe(child)
    recipe.bind(registry)
    assert recipe.name == "child"
    assert recipe.adapter.options.r == 4 and recipe.adapter.options.lora_alpha == 32.0  # merged, not replaced
    assert recipe.training.epochs == 1 and recipe.training.learning_rate == 2e-4
    assert recipe.data_path("train") == (tmp_path / "base" / "data" / "train.jsonl").resolve()
    assert recipe.origins["adapter.r"].endswith("child.toml")
    assert recipe.origins["adapter.lora_alpha"].endswith("base.toml")  # written `alpha`, kept canonical


def test_changing_a_component_type_replaces_its_table(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path, "base.toml", BASE)
    child = write(tmp_path, "child.toml", 'extends = "base.toml"\n[quantization]\ntype = "none"\n'
                                          '[model]\nloader = "tiny"\nhidden_size = 32\nnum_heads = 2\n'
                                          "num_kv_heads = 1\n")
    recipe = load_recipe(child)
    recipe.bind(registry)  # `bits` and `name` of the replaced tables would be unknown keys otherwise
    assert recipe.quantization.name == "none"
    assert recipe.model.name == "tiny" and recipe.model.options.hidden_size == 32


def test_set_overrides_are_type_checked(tmp_path: Path, registry: Registry) -> None:
    path = write(tmp_path, "r.toml", BASE)
    recipe = load_recipe(path, ["adapter.r=8", "training.learning_rate=1e-3", "model.name=/some/local/path"])
    recipe.bind(registry)
    assert recipe.adapter.options.r == 8
    assert recipe.training.learning_rate == 1e-3
    assert recipe.model.options.name == "/some/local/path"
    unset = load_recipe(path, ["adapter.r=", "adapter.alpha="])
    unset.bind(registry)
    assert unset.adapter.options.r == 8 and unset.adapter.options.lora_alpha == 16.0  # back to the defaults
    assert unset.origins.get("adapter.r") is None
    with pytest.raises(RecipeError) as exc:
        load_recipe(path, ["training.epochs=many"])
    assert messages(exc) == ["training.epochs: must be a number, got string 'many'"]
    with pytest.raises(RecipeError, match="expected section.key=value"):
        load_recipe(path, ["adapter.r"])


def test_every_problem_is_reported_at_once_with_did_you_mean(tmp_path: Path, registry: Registry) -> None:
    bad = BASE.replace("epochs = 3", "epochs = 3\nlearnig_rate = 1.0\nbatch_size = -2").replace(
        "r = 16", "r = -4\ndropuot = 0.1")
    recipe_error = None
    try:
        recipe = load_recipe(write(tmp_path, "r.toml", bad))
        recipe.bind(registry)
    except RecipeError as exc:
        recipe_error = exc
    assert recipe_error is not None
    text = recipe_error.render()
    assert "training.learnig_rate: unknown key; did you mean 'learning_rate'?" in text
    assert "training.batch_size: must be >= 1, got -2" in text
    assert str(tmp_path / "r.toml") in text
    recipe = load_recipe(write(tmp_path, "r2.toml", BASE.replace("r = 16", "r = -4\ndropuot = 0.1")))
    with pytest.raises(RecipeError) as exc:
        recipe.bind(registry)
    assert "adapter.r: must be >= 1, got -4" in messages(exc)
    assert "adapter.dropuot: unknown key; did you mean 'dropout'?" in messages(exc)


@pytest.mark.parametrize("text, expected", [
    ("[adapter]\nlora_dropout = 1.0", "adapter.lora_dropout: must be < 1, got 1.0"),
    ("[adapter]\nalpha = 0", "adapter.alpha: must be > 0, got 0.0"),
    ('[adapter]\nbias = "some"', "adapter.bias: must be one of 'none', 'all', 'lora_only', got 'some'"),
    ('[adapter]\ntarget_modules = "q_proj"\nuse_dora = "yes"', "adapter.use_dora: must be true or false"),
    ('[task]\ntype = "nerr"', "task.type: task 'nerr' is provided by no installed plugin; did you mean 'ner'?"),
    ('[adapter]\ntype = "lorra"', "adapter 'lorra' is provided by no installed plugin; did you mean 'lora'?"),
    ('[[export]]\ntype = "merge"', "export[0].type: exporter 'merge' is provided by no installed plugin"),
    ("[trainig]\nepochs = 1", "trainig: unknown section; did you mean 'training'?"),
])
def test_component_and_section_errors(tmp_path: Path, registry: Registry, text: str, expected: str) -> None:
    base = write(tmp_path, "base.toml", BASE)
    recipe = load_recipe(write(tmp_path, "r.toml", f'extends = "{base.name}"\n{text}\n'))
    with pytest.raises(RecipeError) as exc:
        recipe.bind(registry)
    assert any(expected in m for m in messages(exc)), messages(exc)


def test_syntax_errors_name_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "r.toml", 'name = "x"\n[adapter]\nr = = 4\n')
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    assert exc.value.problems[0].line == 3 and exc.value.file == str(path)
    assert "invalid TOML" in exc.value.render() and "line 3" in exc.value.render()


def test_extends_cycle_and_missing_parent(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'extends = "b.toml"\n')
    write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(RecipeError, match=r"cycle: a.toml -> b.toml -> a.toml"):
        load_recipe(tmp_path / "a.toml")
    write(tmp_path, "c.toml", 'extends = "nowhere.toml"\n')
    with pytest.raises(RecipeError, match="extends 'nowhere.toml', which does not exist"):
        load_recipe(tmp_path / "c.toml")
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "missing.toml")


def test_resolved_dump_reloads_to_the_same_recipe(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path, "base.toml", BASE)
    recipe = load_recipe(write(tmp_path, "child.toml", 'extends = "base.toml"\n[adapter]\nr = 4\n'), ["adapter.r=2"])
    recipe.bind(registry)
    text = dump(recipe)
    assert "extends" not in tomllib.loads(text)
    again = load_recipe(write(tmp_path / "elsewhere", "resolved.toml", text))
    again.bind(registry)
    assert again.to_dict() == recipe.to_dict()
    assert again.adapter.options.r == 2


def test_recipe_never_executes_code(tmp_path: Path, registry: Registry) -> None:
    """Values that look like code stay strings; nothing is imported from a recipe."""
    text = BASE.replace('name = "org/model"', 'name = "__import__(\'os\').system(\'touch pwned\')"')
    recipe = load_recipe(write(tmp_path, "r.toml", text))
    recipe.bind(registry)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert recipe.model.options.trust_remote_code is False


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "recipes").glob("*.toml")))
def test_shipped_recipes_validate(name: str, registry: Registry) -> None:
    recipe = load_recipe(ROOT / "recipes" / name)
    recipe.bind(registry)
    for split in ("train", "validation", "test"):
        path = recipe.data_path(split)
        assert path is None or path.is_file(), path
