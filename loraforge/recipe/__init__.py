"""Recipes: TOML files resolved into typed sections.

Loading is pure data handling — a recipe never imports or executes anything. Resolution order:
`extends` chain (deep merge, base first) → `--set` overrides → fixed sections parsed (every problem collected)
→ component sections (`[model]`, `[task]`, `[adapter]`, `[quantization]`, `[[export]]`) checked against the
options their plugin declares, once the plugin registry is known (`Recipe.bind`).

A component table whose selector (`loader` for `[model]`, `type` elsewhere) is changed by an extending recipe is
replaced, not merged: the old component's options mean nothing to the new one.
"""

from .loading import dump, load_recipe, locate, parse_override, read_toml, recipe_from_table
from .sections import (COMPONENTS, SECTIONS, ComponentSpec, DataSection, EvaluationSection, OutputSection, Recipe,
                       TrainingSection)

__all__ = ["COMPONENTS", "SECTIONS", "ComponentSpec", "DataSection", "EvaluationSection", "OutputSection", "Recipe",
           "TrainingSection", "dump", "load_recipe", "locate", "parse_override", "read_toml", "recipe_from_table"]
