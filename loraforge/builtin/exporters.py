"""Builtin exporters: the PEFT adapter, and the adapter merged into its base model.

Both write into a fresh folder that the engine renames into place only when the export succeeded.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..components import Exporter
from ..errors import RunError
from ..hookspecs import hookimpl
from ..run import Run
from ..schema import option


@dataclass
class AdapterOptions:
    dir: str = option("adapter", help="Folder inside the run folder.")


@dataclass
class MergedOptions:
    dir: str = option("merged", help="Folder inside the run folder.")
    tolerance: float = option(1e-3, gt=0, help="Largest accepted |logit difference| between the merged model "
                                                "and base+adapter; the export fails past it.")
    check_records: int = option(4, ge=1, help="Records whose logits are compared.")


class AdapterExporter(Exporter):
    """adapter_config.json + adapter_model.safetensors, loadable with plain `PeftModel.from_pretrained`."""

    Options = AdapterOptions
    default_dir = "adapter"
    writes_adapter = True

    def export(self, run: Run, target: Path) -> dict[str, Any]:
        run.model.save_pretrained(str(target), safe_serialization=True)
        run.tokenizer.save_pretrained(str(target))
        size = sum(f.stat().st_size for f in target.glob("*.safetensors"))
        return {"bytes": size}


def _check_inputs(run: Run, count: int) -> list[list[int]]:
    split = "validation" if "validation" in run.records else "train"
    records = run.records[split][:count]
    return [run.encoder.prompt_ids(ex.prompt) + run.encoder.target_ids(ex.target)
            for ex in (run.task.format(r) for r in records)]


def _logits(model: Any, inputs: list[list[int]]) -> list[Any]:
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        out = [model(input_ids=torch.tensor([ids], device=device)).logits.float().cpu() for ids in inputs]
    model.train(was_training)
    return out


def _max_diff(a: list[Any], b: list[Any]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


class MergedExporter(Exporter):
    """`merge_and_unload()` into a fresh, un-quantized base in the loader's dtype, saved as safetensors.

    The merged model's logits are compared with base+adapter (unmerged, same fresh base) on a few records: the
    export fails past `tolerance`. The difference to the trained model in memory is reported too; after QLoRA it
    measures what de-quantizing the base costs, which is information, not a merge error.
    """

    Options = MergedOptions
    default_dir = "merged"

    def export(self, run: Run, target: Path) -> dict[str, Any]:
        from peft import PeftModel

        inputs = _check_inputs(run, self.options.check_records)
        trained = _logits(run.model, inputs)
        adapter_dir = Path(tempfile.mkdtemp(prefix="loraforge-adapter-"))
        try:
            run.model.save_pretrained(str(adapter_dir), safe_serialization=True)
            base = run.components.model.load_model(run)
            peft_model = PeftModel.from_pretrained(base, str(adapter_dir))
            unmerged = _logits(peft_model, inputs)
            merged = peft_model.merge_and_unload()
        finally:
            shutil.rmtree(adapter_dir, ignore_errors=True)
        merged_logits = _logits(merged, inputs)
        merge_diff = _max_diff(merged_logits, unmerged)
        trained_diff = _max_diff(merged_logits, trained)
        result = {"max_logit_diff": merge_diff, "max_logit_diff_vs_trained": trained_diff,
                  "checked_records": len(inputs)}
        limit = self.options.tolerance
        if merge_diff > limit or (run.components.quantization.bits is None and trained_diff > limit):
            raise RunError(f"merged model differs from base+adapter by {max(merge_diff, trained_diff):.3g} in "
                           f"logits, more than the tolerance {limit:g}; nothing was written",
                           key="export.tolerance", hint="Raise the exporter's `tolerance` if this dtype "
                                                        "needs it, or export the adapter only.")
        merged.save_pretrained(str(target), safe_serialization=True)
        run.tokenizer.save_pretrained(str(target))
        return result


@hookimpl
def register_exporters(register: Any) -> None:
    register("adapter", AdapterExporter)
    register("merged", MergedExporter)
