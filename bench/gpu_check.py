"""One-GPU check of the CUDA paths: a Llama-3.1-8B-shaped model with random weights (no download), a few QLoRA
and LoRA training steps, peak GPU memory and tokens/s for each, with `loraforge plan`'s prediction beside them.
Then, on a small model under bf16 autocast, loraforge's own layers against PEFT's: the fused LoRA layers, the
fused layers with a shared prefix, and the same under gradient checkpointing, each as loss and gradient
differences from PEFT on the full batch.

    python bench/gpu_check.py                 # on a CUDA machine, ~3-6 minutes on one A100/H100/H200
    python bench/gpu_check.py --smoke         # a 2-layer model of the same shape family, runs on a CPU

Shapes and adapter follow recipes/medical_ner.toml (r=16, alpha=32, q_proj+v_proj, NF4 with double quantization,
bf16 compute, gradient checkpointing); the batch and sequence length are the ones `plan` uses for that recipe.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "medical_ner.toml"


def predicted(quantized: bool, device: str, smoke: bool) -> dict:
    """`loraforge plan` for the reference recipe (with this check's model size in smoke mode)."""
    from loraforge.plan import plan
    from loraforge.recipe import load_recipe

    overrides = [] if quantized else ["quantization.type=none"]
    if smoke:
        overrides += ["model={loader='tiny', hidden_size=256, num_layers=2, num_heads=8, num_kv_heads=2, "
                      "intermediate_size=512, vocab_size=1024}"]
    p = plan(load_recipe(RECIPE, overrides), device)
    tokens = p["tokens"]["padded_per_epoch"] * p["time"]["epochs"]
    low, high = p["predicted_train_seconds"]
    return {"memory_gib": p["memory"]["total_bytes"] / 2**30, "tokens_per_s": (tokens / high, tokens / low),
            "batch": p["memory"]["batch"], "seq": p["memory"]["seq"]}


def random_checkpoint(config, folder: Path, device: str) -> Path:
    """Random weights in the model's shapes, saved once as an ordinary checkpoint, so that loading (and, for
    QLoRA, quantizing on load) goes through the same `from_pretrained` path as a downloaded model."""
    import torch
    from transformers import LlamaForCausalLM

    if not (folder / "config.json").exists():
        with torch.device(device):
            model = LlamaForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(folder)
        del model
    return folder


def build(folder: Path, quantized: bool, device: str):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    extra = {}
    if quantized:
        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, device_map={"": device}, **extra)


def measure(quantized: bool, args: argparse.Namespace, folder: Path, device: str, shape: dict) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build(folder, quantized, device)
    config = model.config
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                             lora_dropout=0.05, task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    batch, seq = shape["batch"], shape["seq"]
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=device)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    timed = times[1:] or times
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    result = {"peak_memory_gib": peak / 2**30, "tokens_per_s": batch * seq * len(timed) / sum(timed),
              "loss": float(loss), "trainable": model.get_nb_trainable_parameters()[0]}
    del model, optimizer
    return result


def paths(folder: Path, device: str) -> dict:
    """Loss and gradients of the fused layers, and of the fused layers with a shared prefix (also checkpointed),
    against PEFT's layers on the full batch: |Δloss| / loss, and the largest ‖Δgrad‖ / ‖grad‖ over the adapter's
    weights."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from loraforge.builtin.fused_lora import fuse
    from loraforge.components import CHECKPOINTING
    from loraforge.data import IGNORE_INDEX, PadCollator, target_loss
    from loraforge.prefix import shared_prefix_attention, shared_prefix_inputs

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, device_map={"": device})
    peft = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                            init_lora_weights=False))
    fused = copy.deepcopy(peft)
    fuse(fused)
    checkpointed = copy.deepcopy(fused)
    checkpointed.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING)
    vocab = model.config.vocab_size
    prefix = torch.randint(3, vocab, (48,)).tolist()
    rows = []
    for middle, target in ((12, 30), (3, 41), (20, 9), (7, 25)):
        rest = torch.randint(3, vocab, (middle + target,)).tolist()
        rows.append({"input_ids": prefix + rest, "labels": [IGNORE_INDEX] * (48 + middle) + rest[middle:]})
    batch = PadCollator(0, logits_on_targets=True, share_prefix=True)(rows)
    shared, labels = batch.pop("prefix_length"), batch.pop("labels").to(device)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def loss_and_grads(m, share: bool) -> tuple[float, list]:
        m.train()
        params = [p for p in m.parameters() if p.requires_grad]
        inputs = shared_prefix_inputs({**batch, "labels": labels}, shared) if share else {**batch, "labels": labels}
        targets = inputs.pop("labels")
        with torch.autocast(device, dtype=torch.bfloat16), shared_prefix_attention(m):
            loss = target_loss(m(**inputs), targets)
            return float(loss), [g.float() for g in torch.autograd.grad(loss, params)]

    def difference(a: tuple[float, list], b: tuple[float, list]) -> dict:
        return {"loss_rel": abs(a[0] - b[0]) / b[0],
                "grad_rel_max": max(float((g - w).norm() / w.norm()) for g, w in zip(a[1], b[1]))}

    reference, full, share = loss_and_grads(peft, False), loss_and_grads(fused, False), loss_and_grads(fused, True)
    return {"shared_prefix_tokens": shared, "fused": difference(full, reference),
            "fused_shared_prefix": difference(share, reference), "shared_against_unshared": difference(share, full),
            "checkpointed_shared_prefix": difference(loss_and_grads(checkpointed, True), reference)}


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import LlamaConfig

    from loraforge.builtin.models import KNOWN_CONFIGS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per mode (the first is not timed)")
    parser.add_argument("--smoke", action="store_true", help="2 layers of width 256: a quick run on any machine")
    parser.add_argument("--device-name", default="h200", help="the `plan --device` this GPU corresponds to")
    parser.add_argument("--checkpoint", type=Path, default=Path("/tmp/loraforge-gpu-check"),
                        help="where the random-weight checkpoint is written (16 GB for the full model)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        config = LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                             num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False)
    else:
        config = LlamaConfig(**KNOWN_CONFIGS["meta-llama/Llama-3.1-8B-Instruct"])
    plan_device = args.device_name if device == "cuda" else "cpu"
    folder = random_checkpoint(config, args.checkpoint / ("smoke" if args.smoke else "llama-3.1-8b-shape"), device)
    if device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    report = {}
    for mode, quantized in (("qlora", True), ("lora", False)):
        want = predicted(quantized, plan_device, args.smoke)
        got = measure(quantized, args, folder, device, want)
        report[mode] = {"measured": got, "plan": want}
        print(f"{mode:6} batch {want['batch']} × {want['seq']} tokens on {device}: peak memory "
              f"{got['peak_memory_gib']:.2f} GiB (plan {want['memory_gib']:.2f}), "
              f"{got['tokens_per_s']:,.0f} tokens/s (plan {want['tokens_per_s'][0]:,.0f}–"
              f"{want['tokens_per_s'][1]:,.0f}), trainable {got['trainable']:,}")
    small = LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                        num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False)
    report["paths"] = paths(random_checkpoint(small, args.checkpoint / "smoke", device), device)
    for name, against in (("fused", "PEFT's layers"), ("fused_shared_prefix", "PEFT's layers"),
                          ("shared_against_unshared", "the fused layers on the full batch"),
                          ("checkpointed_shared_prefix", "PEFT's layers")):
        diff = report["paths"][name]
        print(f"{name:26} against {against}, bf16 autocast on {device}: |Δloss|/loss {diff['loss_rel']:.1e}, "
              f"largest ‖Δgrad‖/‖grad‖ {diff['grad_rel_max']:.1e}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
