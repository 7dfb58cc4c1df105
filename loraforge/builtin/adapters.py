"""Builtin adapters: LoRA and DoRA through PEFT. Option names follow PEFT's LoraConfig."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..components import Adapter, LowRank
from ..run import Run
from ..errors import RecipeError
from ..hookspecs import hookimpl
from ..schema import option


@dataclass
class LoraOptions:
    r: int = option(8, ge=1, help="Rank of the update matrices B·A.", aliases=("rank", "lora_r"))
    lora_alpha: float = option(16.0, gt=0, help="Scale: the update is multiplied by lora_alpha / r.",
                               aliases=("alpha",))
    target_modules: list[str] | str = option(
        factory=lambda: ["q_proj", "v_proj"],
        help='Module names (or suffixes) to adapt, or "all-linear" for every linear layer but the head.')
    lora_dropout: float = option(0.05, ge=0.0, lt=1.0, help="Dropout on the adapter input.", aliases=("dropout",))
    bias: Literal["none", "all", "lora_only"] = option("none", help="Which biases to train.")
    task_type: Literal["CAUSAL_LM"] = option("CAUSAL_LM", help="PEFT task type; loraforge trains causal LMs.")
    modules_to_save: list[str] = option(factory=list, help="Modules trained in full and saved with the adapter "
                                                           "(e.g. embed_tokens, lm_head).")
    use_dora: bool = option(False, help="Weight-decomposed LoRA (DoRA): also learns a magnitude per column.")
    use_rslora: bool = option(False, help="Rank-stabilised scaling lora_alpha / sqrt(r).")
    fused: bool = option(True, help="One autograd node per LoRA layer, with a cheaper dropout mask: the same "
                                    "function, faster (plain LoRA on torch.nn.Linear; others keep PEFT's forward).")

    def check(self) -> list[tuple[str, str]]:
        if isinstance(self.target_modules, list) and not self.target_modules:
            return [("target_modules", 'must name at least one module, or be "all-linear"')]
        return []


@dataclass
class DoraOptions(LoraOptions):
    use_dora: bool = option(True, help="Always on for the `dora` adapter.")

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        if not self.use_dora:
            problems.append(("use_dora", 'cannot be false for type "dora"; use type "lora" instead'))
        return problems


def linear_module_names(model: Any) -> list[str]:
    """Distinct leaf names of the model's linear layers: what target_modules can name."""
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def check_targets(model: Any, targets: list[str] | str, key: str, file: object = None) -> None:
    if isinstance(targets, str):
        return  # "all-linear" or a regex: PEFT resolves it
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    full = {name for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in leaves and not any(n.endswith(f".{t}") or n == t for n in full)]
    if missing:
        raise RecipeError(f"{', '.join(repr(m) for m in missing)} match no module of this model; its linear "
                          f"layers are: {', '.join(linear_module_names(model))}", key=key, file=file,
                          hint='Pick names from that list, or use target_modules = "all-linear".')


class LoraAdapter(Adapter):
    Options = LoraOptions

    def config(self) -> Any:
        from peft import LoraConfig

        o = self.options
        return LoraConfig(r=o.r, lora_alpha=o.lora_alpha, target_modules=o.target_modules,
                          lora_dropout=o.lora_dropout, bias=o.bias, task_type=o.task_type,
                          modules_to_save=o.modules_to_save or None, use_dora=o.use_dora,
                          use_rslora=o.use_rslora)

    def describe(self) -> str:
        return f"{'dora' if self.options.use_dora else 'lora'} r={self.options.r}"

    def low_rank(self) -> LowRank:
        o = self.options
        return LowRank(o.r, o.target_modules, o.modules_to_save, o.use_dora, o.bias)

    def attach(self, run: Run, model: Any) -> Any:
        from peft import get_peft_model

        recipe = run.recipe
        check_targets(model, self.options.target_modules, "adapter.target_modules", recipe.path)
        missing = [m for m in self.options.modules_to_save
                   if not any(n == m or n.endswith(f".{m}") for n, _ in model.named_modules())]
        if missing:
            raise RecipeError(f"modules_to_save names {', '.join(map(repr, missing))}, which the model lacks",
                              key="adapter.modules_to_save", file=recipe.path)
        model = get_peft_model(model, self.config())
        if self.options.fused:
            from .fused_lora import fuse

            fuse(model)
        return model


class DoraAdapter(LoraAdapter):
    Options = DoraOptions


@hookimpl
def register_adapters(register: Any) -> None:
    register("lora", LoraAdapter)
    register("dora", DoraAdapter)
