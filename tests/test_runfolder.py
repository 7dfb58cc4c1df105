"""The run folder's layout: what a restart clears is derived from it, and what it keeps."""

from __future__ import annotations

from conftest import ner_recipe, ner_records

from loraforge import engine, runfolder
from loraforge.recipe import load_recipe


def test_a_restart_clears_every_file_of_the_layout_but_the_plan(make_recipe) -> None:
    path = make_recipe(ner_recipe(export=[{"type": "adapter"}, {"type": "merged", "dir": "full"}]),
                       data={"train": ner_records(4)})
    run = engine.assemble(load_recipe(path))
    out = run.out_dir
    for name in (runfolder.LOCK, runfolder.LOG, runfolder.LOSS_CURVE, runfolder.METRICS, runfolder.PLAN,
                 runfolder.RECIPE, "notes.txt", runfolder.predictions(out, "test").name,
                 runfolder.predictions(out, "test-base").name):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("{}")
    for folder in (f"{runfolder.CHECKPOINTS}/checkpoint-4", runfolder.EVAL, "adapter", "full", "elsewhere"):
        (out / folder).mkdir(parents=True)
        (out / folder / "x").write_text("")

    runfolder.clear(run, engine.export_dirs(run))
    # the plan is compared with the next run; recipe.toml is rewritten; files of no run are not ours to remove
    assert sorted(p.name for p in out.iterdir()) == ["elsewhere", "notes.txt", runfolder.PLAN, runfolder.RECIPE]
