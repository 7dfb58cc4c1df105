"""`loraforge plan RECIPE`: parameters, memory and training time, predicted before training, with no weights.

The model is built on the meta device from its config (shapes, no storage) and the recipe's adapter is attached
there with PEFT: PEFT's count is the truth the parameter formula is checked against. Every estimate is a small pure
function over numbers from the config, the recipe and the data; docs/plan.md states the formulas and their limits.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from typing import Any

from .calibration import measure_training
from .devices import BF16_EMULATED, GIB, Device, eval_seconds, mfu_range, resolve_device, seconds_range
from .errors import LoraforgeError, RecipeError, RunError
from .estimates import (RECORDS_PER_PERSON_DAY, MemoryInputs, Shapes, activation_bytes, count_params,
                        data_prep_weeks, fit_verdict, knobs, memory_breakdown, meta_shapes, optimizer_state_bytes,
                        param_rows, saved_modules, simulate_batches, train_flops)
from .run import Run


# ---------------------------------------------------------------------------------------------- from the recipe


def model_config(run: Run) -> tuple[Any, str]:
    """The loader's config without weights, and where it came from."""
    loader = run.components.model
    try:
        return loader.config(run), loader.config_source(run)
    except NotImplementedError:
        raise RunError(f"model loader '{run.recipe.model.name}' cannot give a config without weights",
                       key="model.loader", file=run.recipe.path) from None
    except (LoraforgeError, OSError, ValueError) as exc:
        if isinstance(exc, LoraforgeError) and exc.hint:
            raise
        reason = exc.problems[0].message if isinstance(exc, LoraforgeError) else str(exc).splitlines()[0]
        raise RunError(f"no config for model '{loader.describe()}' on this machine: {reason}",
                       key="model.name", file=run.recipe.path,
                       hint="Point model.name at a local model folder (only config.json is read).") from None


def offline_tokenizer(run: Run) -> Any | None:
    """The recipe's tokenizer when it loads without network (the tiny loader builds its own), else None."""
    return run.components.model.offline_tokenizer(run)


def token_lengths(run: Run, tokenizer: Any | None) -> tuple[list[int], list[int], str, Any, int]:
    """(prompt tokens, target tokens) per training example as training encodes them, the method, a counter,
    and how many leading prompt tokens all examples share (0 unknown); without a tokenizer ≈ characters/4 plus
    the chat template's tokens for instruct models."""
    import os

    from .data import make_encoder

    examples = run.train_examples
    if tokenizer is not None:
        enc = make_encoder(tokenizer)
        prompts = [enc.prompt_ids(e.prompt) for e in examples]
        return ([len(p) for p in prompts], [len(enc.target_ids(e.target)) for e in examples],
                f"tokenized with the recipe's tokenizer ({len(tokenizer)} tokens)", enc.count,
                len(os.path.commonprefix(prompts)) if prompts else 0)
    extra = run.components.model.chat_template_tokens(run) or 1  # or a BOS token
    count = lambda text: math.ceil(len(text) / 4)  # noqa: E731
    return ([count(e.prompt) + extra for e in examples], [count(e.target) + 1 for e in examples],
            "estimated: characters / 4" + (f" + {extra} chat-template tokens" if extra > 1 else ""), count, 0)


def parameters(run: Run, config: Any) -> tuple[Shapes, dict[str, Any]]:
    """Meta model → shapes; the formula's count, and PEFT's count of the same adapter on the same model."""
    import warnings

    import torch
    from transformers import AutoModelForCausalLM

    remote = run.components.model.trusts_remote_code
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=remote)
        shapes = meta_shapes(model)
        try:
            peft_trainable, peft_total = run.components.adapter.attach(run, model).get_nb_trainable_parameters()
        except (ValueError, TypeError, KeyError) as exc:
            raise RecipeError(f"PEFT cannot attach this adapter: {exc}", key="adapter",
                              file=run.recipe.path) from None
    out: dict[str, Any] = dict(base=shapes.total, peft_trainable=int(peft_trainable), peft_total=int(peft_total),
                               rows=[], saved_names=[])
    o = run.components.adapter.low_rank()
    if o is not None:
        count = count_params(shapes, o.r, o.target_modules, o.modules_to_save, o.use_dora, o.bias)
        out.update(trainable=count.trainable, total=count.total, lora=count.lora, dora=count.dora,
                   saved=count.saved, bias=count.bias,
                   rows=param_rows(shapes, o.r, o.target_modules, o.modules_to_save, o.use_dora),
                   saved_names=[l.name for l in saved_modules(shapes, o.modules_to_save)],
                   matches_peft=(count.trainable, count.total) == (peft_trainable, peft_total))
    else:  # an adapter plugin plan has no formula for: PEFT's count only
        out.update(trainable=int(peft_trainable), total=int(peft_total), lora=int(peft_trainable), dora=0, saved=0,
                   bias=0, matches_peft=None)
    return shapes, out


def data_stats(run: Run, tokenizer: Any | None) -> tuple[dict[str, Any], Any]:
    """Token counts of the training set as training sees it: records over max_length dropped, batches padded."""
    t = run.recipe.training
    prompts, targets, source, count, common = token_lengths(run, tokenizer)
    keep = [i for i in range(len(prompts)) if prompts[i] + targets[i] <= t.max_length]
    if len(keep) < len(prompts) and t.long_records == "error" and tokenizer is not None:
        longest = max(p + q for p, q in zip(prompts, targets))
        raise RecipeError(f"{len(prompts) - len(keep)} training records are longer than training.max_length "
                          f"({t.max_length}; the longest is {longest} tokens)", key="training.max_length",
                          file=run.recipe.path, hint=f"Raise training.max_length to at least {longest}, or set "
                                                     "training.long_records = \"skip\" to leave them out.")
    if not keep:
        raise RecipeError(f"no training record fits training.max_length ({t.max_length})", key="training.max_length",
                          file=run.recipe.path)
    prompts, targets = [prompts[i] for i in keep], [targets[i] for i in keep]
    lengths = [p + q for p, q in zip(prompts, targets)]
    tail = getattr(t, "logits_on_targets", False)  # the LM head runs from the batch's earliest target on
    # shared prefixes (training.share_prefix) need the tail; training checks the rest on the loaded model
    share = tail and getattr(t, "share_prefix", False)
    epoch = simulate_batches(lengths, prompts if tail else [1] * len(keep), t.batch_size, t.group_by_length, t.seed,
                             common if share else 0)
    return dict(source=source, records=len(keep), dropped=len(run.train_examples) - len(keep),
                per_epoch=sum(lengths), padded_per_epoch=epoch.padded, shared_per_epoch=epoch.shared,
                head_positions_per_epoch=epoch.head, last_layer_skipped_per_epoch=epoch.last_layer_skipped,
                longest=max(lengths), mean_prompt=sum(prompts) / len(keep), mean_target=sum(targets) / len(keep),
                head_window=min(t.max_length, max(lengths) - min(prompts) + 1) if tail else t.max_length), count


def memory_inputs(recipe: Any, loader: Any, quantizer: Any, dev: Device, config: Any, shapes: Shapes,
                  trainable: int, head_window: int) -> MemoryInputs:
    """The recipe's numbers for the memory formulas. A QLoRA base keeps its non-quantized weights in fp32:
    prepare_model_for_kbit_training casts them up. Activations are 16-bit under bf16/fp16 autocast or a
    16-bit model, else fp32; `auto` precision is bf16 where the device has it."""
    t = recipe.training
    bits = quantizer.bits
    precision = t.precision if t.precision != "auto" else "bf16" if dev.bf16 else "fp16" if dev.gpu else "fp32"
    name = loader.dtype
    if name == "auto":  # the checkpoint's dtype, as from_pretrained(dtype="auto") keeps it
        name = str(getattr(config, "dtype", None) or ("bfloat16" if dev.gpu else "float32")).replace("torch.", "")
    weight_bytes = 4 if bits or name == "float32" else 2
    compute = quantizer.compute_dtype_name if bits else "auto"
    sixteen = compute != "float32" if compute != "auto" else precision != "fp32" or (not bits and weight_bytes == 2)
    linear = sum(l.d * l.k for l in shapes.layers if l.kind == "linear" and l.name != shapes.output)
    return MemoryInputs(
        quantizable=linear, other=shapes.total - linear, trainable=trainable, weight_bytes=weight_bytes, bits=bits,
        double_quant=quantizer.double_quant, optimizer_bytes=optimizer_state_bytes(t.optimizer),
        layers=config.num_hidden_layers, hidden=config.hidden_size, heads=config.num_attention_heads,
        vocab=config.vocab_size, batch=t.batch_size, seq=t.max_length, logit_positions=head_window,
        act_bytes=2 if sixteen else 4, checkpointing=t.gradient_checkpointing,
        overhead=dev.overhead_bytes)


def plan(recipe: Any, device: str = "cpu", calibrate: bool = False, calibrate_steps: int = 5,
         sweep_points: int = 1) -> dict[str, Any]:
    """Every estimate for `recipe` on `device`, as one JSON-ready dict."""
    from . import engine

    if sweep_points < 1:
        raise RecipeError("must be at least 1", key="--sweep-points")
    if calibrate and calibrate_steps < 2:
        raise RecipeError("must be at least 2: the first step is warm-up and is not timed", key="--calibrate-steps")
    # on this CPU, the matmul peak of the precision the recipe trains in (`auto`: bf16 where the CPU has it)
    dev = resolve_device(device, bf16={"bf16": True, "fp32": False}.get(recipe.training.precision))
    run = engine.build(recipe)
    tokenizer = offline_tokenizer(run)
    config, config_source = model_config(run)
    shapes, params = parameters(run, config)
    data, count = data_stats(run, tokenizer)
    m = memory_inputs(recipe, run.components.model, run.components.quantization, dev, config, shapes,
                      params["peft_trainable"], data["head_window"])
    memory = memory_estimate(m, dev, recipe.training.gradient_accumulation_steps, data["longest"])
    time = training_estimate(recipe, m, shapes, config, params, data, dev)
    measured = calibration_estimate(recipe, calibrate_steps, data, time["epochs"]) if calibrate else {}
    time.update(evaluation_estimate(run, m, time.pop("head"), data, count, memory["components"]["base weights"], dev,
                                    time["mfu"]))
    return {
        "recipe": recipe.name, "model": run.components.model.describe(), "config": config_source,
        "device": dict(name=dev.name, memory_gib=dev.memory_gib, tflops=dev.tflops, bandwidth_gbs=dev.bandwidth_gbs,
                       note=dev.note),
        "params": params, "memory": memory, "tokens": data,
        "time": {k: v for k, v in time.items() if k != "predicted"},
        "predicted_train_seconds": time["predicted"], **measured,
        "timeline": timeline_estimate(run, dev, time, measured, sweep_points),
    }


def memory_estimate(m: MemoryInputs, dev: Device, accumulation: int, longest: int) -> dict[str, Any]:
    """Memory by component, the verdict on `dev`, and the knobs that would make it fit when it does not."""
    components = memory_breakdown(m)
    total = sum(components.values())
    verdict = fit_verdict(total, dev.memory_gib)
    return dict(components=components, total_bytes=total, verdict=verdict,
                activations_checkpointed=activation_bytes(replace(m, checkpointing=True)),
                activations_full=activation_bytes(replace(m, checkpointing=False)),
                knobs=knobs(m, dev.memory_gib, accumulation, longest) if verdict != "fits" else [],
                **{f: getattr(m, f) for f in ("bits", "weight_bytes", "act_bytes", "batch", "seq",
                                              "logit_positions", "checkpointing", "optimizer_bytes")})


def training_estimate(recipe: Any, m: MemoryInputs, shapes: Shapes, config: Any, params: dict[str, Any],
                      data: dict[str, Any], dev: Device) -> dict[str, Any]:
    """Steps, FLOPs of the positions training computes, and the predicted seconds at the assumed utilisation."""
    t = recipe.training
    batches = math.ceil(data["records"] / t.batch_size)
    epochs = t.max_steps * t.gradient_accumulation_steps / batches if t.max_steps else t.epochs
    linear = [l for l in shapes.layers if l.kind == "linear"]
    head = sum(l.d * l.k for l in linear if l.name == shapes.output)
    saved = [l for l in linear if any(l.name == s or l.name.startswith(f"{s}.") for s in params["saved_names"])]
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    computed = data["padded_per_epoch"] - data["shared_per_epoch"]  # positions the layers run
    # the last layer of a shared-prefix batch skips most of its work outside the targets: counted as a whole layer
    layer_positions = computed - data["last_layer_skipped_per_epoch"] / m.layers
    attention = 2 * m.layers * computed / data["records"] * m.heads * head_dim
    flops = epochs * train_flops(layer_positions, data["head_positions_per_epoch"], m.quantizable, head,
                                 params["lora"], sum(l.d * l.k for l in saved if l.name != shapes.output),
                                 attention, m.checkpointing, any(l.name == shapes.output for l in saved))
    mfu = mfu_range(dev, m.bits)
    return dict(steps=t.max_steps or math.ceil(math.ceil(batches / t.gradient_accumulation_steps) * epochs),
                epochs=epochs, flops_per_token=flops / (computed * epochs), train_flops=flops, mfu=list(mfu),
                head=head, predicted=seconds_range(flops, dev.tflops, mfu))


def calibration_estimate(recipe: Any, steps: int, data: dict[str, Any], epochs: float) -> dict[str, Any]:
    """Real steps timed here (`loraforge.calibration`), scaled to the whole training."""
    cal = measure_training(recipe, steps)
    return {"calibrated_train_seconds": data["padded_per_epoch"] * epochs * cal.seconds_per_token,
            "calibration": dict(steps=cal.steps, seconds=cal.seconds, padded_tokens=cal.padded_tokens,
                                tokens_per_s=cal.padded_tokens / cal.seconds, on=f"this machine ({cal.device})",
                                real_model_params=cal.params, device=cal.device)}


def evaluation_estimate(run: Run, m: MemoryInputs, head: int, data: dict[str, Any], count: Any,
                        weight_bytes: float, dev: Device, mfu: list[float]) -> dict[str, Any]:
    """Records scored after training, their token budget, and the seconds generation takes."""
    e = run.recipe.evaluation
    records = 0 if e.split == "none" else len(run.records.get(e.split, [])[:e.max_records])
    max_new = e.max_new_tokens or run.task.max_new_tokens(run.train_examples, count)
    seconds = eval_seconds(records, e.batch_size, data["mean_prompt"], (min(max_new, data["mean_target"]), max_new),
                           m.quantizable + head, m.layers, weight_bytes, dev, tuple(mfu))
    return dict(eval_records=records, max_new_tokens=max_new, eval_seconds=seconds)


def timeline_estimate(run: Run, dev: Device, time: dict[str, Any], measured: dict[str, Any],
                      sweep_points: int) -> dict[str, Any]:
    """Data preparation, training (calibrated where it measured this machine's CPU) and the search's iterations."""
    # a calibration measures this machine: it replaces the prediction only when --device is this machine's CPU
    calibrated = measured.get("calibrated_train_seconds") \
        if measured and dev.name == "cpu" and measured["calibration"]["device"] == "cpu" else None
    training = [calibrated, calibrated] if calibrated else time["predicted"]
    evaluation = time["eval_seconds"]
    iteration = [sweep_points * (training[i] + (evaluation or [0, 0])[i]) for i in (0, 1)] if training else None
    records = sum(len(r) for r in run.records.values())
    return dict(records=records, records_per_person_day=RECORDS_PER_PERSON_DAY,
                data_prep_weeks=data_prep_weeks(records), train_seconds=training, calibrated=bool(calibrated),
                eval_seconds=evaluation, sweep_points=sweep_points, iterations_seconds=iteration)


# ------------------------------------------------------------------------------------------------- rendering


def _gib(n: float) -> str:
    return f"{n / GIB:,.2f}"


def _dur(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


NO_PEAK = "no TFLOP/s for this device"


def _span(r: list[float] | None, why: str = NO_PEAK) -> str:
    if r is None:
        return f"? ({why})"
    low, high = _dur(r[0]), _dur(r[1])
    return low if low == high else f"{low} – {high}"


def _table(title: str, *columns: str, header: bool = True) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=header)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 or col in ("how", "assumption") else "right")
    return table


def _why(p: dict[str, Any]) -> str:
    """Why a time has no figure."""
    return "bf16 is emulated here: see device peak" if BF16_EMULATED in (p["device"]["note"] or "") else NO_PEAK


def render(p: dict[str, Any], console: Any) -> None:
    """The plan as four rich tables: parameters, memory, training time, timeline."""
    for table in (_render_parameters(p), _render_memory(p), _render_training(p), _render_timeline(p)):
        console.print(table)


def _render_parameters(p: dict[str, Any]) -> Any:
    """Parameters per adapted module, checked against PEFT's count on the meta model."""
    pr = p["params"]
    table = _table(f"{p['recipe']}: {p['model']} ({p['config']}) — parameters", "module", "count", "d × k", "r",
                   "LoRA / module", "LoRA total", "full params", "compression")
    for row in pr["rows"]:
        table.add_row(row["module"], str(row["count"]), f"{row['d']:,} × {row['k']:,}", str(row["r"] or "-"),
                      f"{row['per_module']:,}", f"{row['lora']:,}", f"{row['full']:,}", f"{row['ratio']:,.1f}×")
    check = {True: "[green]✓ same[/]", False: "[red]✗ differs[/]", None: ""}[pr["matches_peft"]]
    share = pr["trainable"] / pr["base"]
    table.caption = (f"trainable {pr['trainable']:,} of {pr['base']:,} base params ({share:.3%}) · PEFT on the "
                     f"meta model: {pr['peft_trainable']:,} trainable, {pr['peft_total']:,} all {check}")
    return table


def _render_memory(p: dict[str, Any]) -> Any:
    """Memory by component on the device, the verdict, and what to try when it does not fit."""
    d, mem = p["device"], p["memory"]
    note = f", {d['note']}" if d["note"] else ""
    table = _table(f"memory on {d['name']} ({d['memory_gib']:g} GiB{note})", "component", "GiB", "how")
    other = _gib(mem["activations_full" if mem["checkpointing"] else "activations_checkpointed"])
    how = {"base weights": f"{mem['bits']}-bit linear layers, the rest fp32 (k-bit training casts it up)"
           if mem["bits"] else f"{mem['weight_bytes']} bytes a parameter",
           "adapter weights": "fp32: 4 bytes a trainable parameter", "gradients": "fp32, trainable parameters only",
           "optimizer states": f"{mem['optimizer_bytes']:g} bytes a trainable parameter",
           "activations": f"batch {mem['batch']} × {mem['seq']} tokens, {mem['act_bytes']}-byte values: " + (
               f"checkpointed, 2sbh a layer + one layer ({other} GiB without)" if mem["checkpointing"] else
               f"sbh(34 + 5as/h) a layer ({other} GiB with checkpointing)"),
           "logits": f"batch × {mem['logit_positions']} positions × vocab × 8 bytes (fp32 log-probs + gradient)",
           "framework overhead": "CUDA context, kernel workspaces" if d["name"] != "cpu" else "Python and libraries"}
    for name, value in mem["components"].items():
        table.add_row(name, _gib(value), how[name])
    colour = {"fits": "green", "tight": "yellow", "does not fit": "red"}[mem["verdict"]]
    table.add_row("[bold]total[/]", f"[bold]{_gib(mem['total_bytes'])}[/]", f"[bold {colour}]{mem['verdict']}[/]",
                  end_section=True)
    for i, k in enumerate(mem["knobs"]):
        together = i == len(mem["knobs"]) - 1 and i > 0  # the last row applies every change above at once
        change = "all of the above together" if together else " ".join(f"--set {a}" for a in k["set"])
        table.add_row("try", _gib(k["bytes"]), f"{change} → {k['verdict']}")
    return table


def _render_training(p: dict[str, Any]) -> Any:
    """Tokens, steps, FLOPs and the predicted (and calibrated) training time."""
    d, mem, tok, tm = p["device"], p["memory"], p["tokens"], p["time"]
    why = _why(p)
    table = _table("training time", "what", "value", "how", header=False)
    table.add_row("tokens / epoch", f"{tok['per_epoch']:,}", f"{tok['records']:,} records, {tok['source']}"
                  + (f"; {tok['dropped']} over max_length skipped" if tok["dropped"] else ""))
    table.add_row("with padding", f"{tok['padded_per_epoch']:,}", "each batch pads to its longest record")
    if tok["shared_per_epoch"]:
        table.add_row("shared prefixes", f"-{tok['shared_per_epoch']:,}", "prompt tokens common to a batch run once "
                      "(training.share_prefix)")
    table.add_row("optimizer steps", f"{tm['steps']:,}", f"{tm['epochs']:g} epochs")
    table.add_row("FLOPs / token", f"{tm['flops_per_token']:.3g}", "≈ 4N: 2N forward + 2N input gradients (frozen "
                  "weights need no weight gradients)" + (" + 2N recompute" if mem["checkpointing"] else ""))
    table.add_row("training FLOPs", f"{tm['train_flops']:.3g}", "")
    table.add_row("device peak", f"{d['tflops']:.3g} TFLOP/s" if d["tflops"] else "?", d["note"])
    table.add_row("[bold]predicted[/]", f"[bold]{_span(p['predicted_train_seconds'], why)}[/]",
                  f"model FLOPs utilisation {tm['mfu'][0]:.0%} – {tm['mfu'][1]:.0%} (assumed)")
    if "calibration" in p:
        c = p["calibration"]
        table.add_row("[bold]calibrated[/]", f"[bold]{_dur(p['calibrated_train_seconds'])}[/]",
                      f"{c['steps']} steps timed on {c['on']}: {c['tokens_per_s']:,.0f} tokens/s")
    return table


def _render_timeline(p: dict[str, Any]) -> Any:
    """Data preparation, training, evaluation and the search, end to end."""
    tm, tl = p["time"], p["timeline"]
    why = _why(p)
    table = _table("timeline", "phase", "estimate", "assumption")
    table.add_row("data preparation", f"{tl['data_prep_weeks']:.1f} weeks", f"ASSUMED {tl['records_per_person_day']}"
                  f" records collected and labelled per person-day ({tl['records']:,} records, 5-day weeks)")
    table.add_row("training (one run)", _span(tl["train_seconds"], why),
                  "calibrated on this machine" if tl["calibrated"] else "predicted range above")
    table.add_row("evaluation (one run)", _span(tl["eval_seconds"], why),
                  f"{tm['eval_records']} records, mean target to {tm['max_new_tokens']} new tokens, greedy")
    table.add_row("hyperparameter iterations", _span(tl["iterations_seconds"], why),
                  f"{tl['sweep_points']} sweep point(s) × (training + evaluation)")
    total = _span(tl['iterations_seconds'], why)
    table.add_row("[bold]total[/]", f"[bold]{tl['data_prep_weeks']:.1f} weeks + {total}[/]",
                  "data preparation, then the iterations")
    return table


# ------------------------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="the recipe TOML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set adapter.r=8 (repeatable)")
    parser.add_argument("--device", default="cpu", metavar="NAME|GiB",
                        help="cpu (this machine), a100-40gb, a100-80gb, h100-80gb, h200, l4, rtx4090, rtx3090, t4, "
                             "or a memory size in GiB (GiB:TFLOPS adds its throughput)")
    parser.add_argument("--calibrate", action="store_true", help="time a few real training steps on this machine")
    parser.add_argument("--calibrate-steps", type=int, default=5, metavar="N",
                        help="training steps to run for --calibrate (the first is not timed)")
    parser.add_argument("--sweep-points", type=int, default=1, metavar="N",
                        help="trainings in the hyperparameter search, for the timeline")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def command(args: argparse.Namespace, console: Any) -> int:
    from .engine import located
    from .recipe import load_recipe
    from .runfolder import write_plan

    recipe = load_recipe(args.recipe, args.overrides)
    with located(recipe):
        result = plan(recipe, args.device, args.calibrate, args.calibrate_steps, args.sweep_points)
    if args.device == "cpu":  # a later `loraforge run` of this recipe here puts the prediction beside the real time
        write_plan(recipe, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, console)
    return 0
