"""`loraforge new plugin`: the generated package installs (as pip would leave it), registers and passes its tests."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from loraforge.errors import RunError
from loraforge.scaffold import command, configure_parser, names, new_plugin


def install_as_pip_would(package: Path, site: Path) -> dict[str, str]:
    """The source on PYTHONPATH plus a .dist-info with the package's own entry points (no pip, no network)."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    dist = project["name"].replace("-", "_")
    info = site / f"{dist}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = project["entry-points"]["loraforge"]
    (info / "entry_points.txt").write_text("[loraforge]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    path = os.pathsep.join([str(package / "src"), str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path}


def test_names_follow_the_distribution_name() -> None:
    values = names("loraforge-acme")
    assert (values["__MODULE__"], values["__SHORT__"], values["__METRIC__"], values["__RECIPE__"]) == (
        "loraforge_acme", "acme", "acme_exact_match", "acme_tiny")
    assert names("Acme.Tasks")["__MODULE__"] == "acme_tasks" and names("Acme.Tasks")["__SHORT__"] == "acme_tasks"


def test_skeleton_files_and_entry_point(tmp_path: Path) -> None:
    dest = new_plugin("loraforge-acme", tmp_path / "loraforge-acme")
    assert dest == tmp_path / "loraforge-acme"
    written = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert written == [".gitignore", "README.md", "pyproject.toml", "src/loraforge_acme/__init__.py",
                       "src/loraforge_acme/data/examples.jsonl", "src/loraforge_acme/plugin.py",
                       "src/loraforge_acme/recipes/acme_tiny.toml", "tests/test_plugin.py"]
    pyproject = tomllib.loads((dest / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["loraforge"] == {"acme": "loraforge_acme.plugin"}
    assert pyproject["tool"]["setuptools"]["package-data"] == {"loraforge_acme": ["data/*.jsonl", "recipes/*.toml"]}
    for path in dest.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for placeholder in names("loraforge-acme"):
                assert placeholder not in text, (path, placeholder)
            if path.suffix == ".py":
                compile(text, str(path), "exec")


@pytest.mark.slow
def test_generated_tests_pass_as_generated(tmp_path: Path, cache_env: dict[str, str]) -> None:
    package = new_plugin("loraforge-acme", tmp_path / "loraforge-acme")
    env = {**os.environ, **cache_env, **install_as_pip_would(package, tmp_path / "site")}
    done = subprocess.run([sys.executable, "-m", "pytest", str(package / "tests"), "-q", "-p", "no:cacheprovider"],
                          cwd=package, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "10 passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


@pytest.mark.parametrize("name, message", [
    ("", "'' is not a valid package name"),
    ("-acme", "'-acme' is not a valid package name"),
    ("acme tasks", "'acme tasks' is not a valid package name"),
    ("acme/tasks", "'acme/tasks' is not a valid package name"),
    ("3d-tasks", "gives the Python module name '3d_tasks', which is not an identifier"),
    ("class", "gives the Python module name 'class', which is not an identifier"),
    ("loraforge", "which would shadow loraforge itself"),
    ("json", "which would shadow a standard-library module"),
])
def test_bad_names_are_refused_with_a_hint(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(RunError) as exc:
        new_plugin(name, tmp_path / "out")
    assert message in exc.value.render() and "e.g. `loraforge new plugin loraforge-acme`" in exc.value.render()
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_never_written_into(tmp_path: Path) -> None:
    dest = tmp_path / "loraforge-acme"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(RunError, match="already exists") as exc:
        new_plugin("loraforge-acme", dest)
    assert "Pick another name or --dir" in exc.value.render()
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]


def test_command_line_arguments(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="loraforge new")
    configure_parser(parser)
    args = parser.parse_args(["plugin", "loraforge-acme", "--dir", str(tmp_path)])
    out = io.StringIO()
    assert command(args, Console(file=out, width=200)) == 0
    assert (tmp_path / "loraforge-acme" / "src" / "loraforge_acme" / "plugin.py").is_file()
    assert "pip install -e ." in out.getvalue()
    assert parser.parse_args(["plugin", "x"]).dir == Path(".")
    with pytest.raises(SystemExit):
        parser.parse_args(["recipe", "x"])
    with pytest.raises(RunError, match="already exists"):
        command(args, Console(file=io.StringIO()))
