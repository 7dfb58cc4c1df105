"""The reference docs are generated from the code; these tests fail when the two drift apart."""

from __future__ import annotations

import inspect
import re

import pytest

from loraforge import hookspecs
from loraforge.docs import DOCS, PAGES


@pytest.mark.parametrize("page", sorted(PAGES))
def test_generated_docs_are_up_to_date(page: str) -> None:
    assert (DOCS / page).read_text() == PAGES[page](), f"docs/{page} is stale: run `python -m loraforge.docs`"


def test_every_hook_has_a_heading_matching_its_arguments() -> None:
    text = (DOCS / "hooks.md").read_text()
    specs = {n: f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "loraforge_spec")}
    headings = dict(re.findall(r"^## (\w+)\((.*)\)$", text, flags=re.M))
    assert set(headings) == set(specs)
    for name, fn in specs.items():
        assert headings[name] == ", ".join(inspect.signature(fn).parameters)
        assert len(inspect.getdoc(fn)) > 40, f"{name} needs a real docstring"


def test_docs_link_to_existing_files() -> None:
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
