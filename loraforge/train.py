"""Hugging Face Trainer wiring: arguments from the recipe, our collator, and a callback that turns the
Trainer's events into loraforge lifecycle hooks (progress, ETA from measured step time, log file).

Because this is the stock Trainer, `accelerate launch -m loraforge run ...` and `torchrun` scale it out
(DDP, FSDP, DeepSpeed) with no code of ours in the way.
"""

from __future__ import annotations

import functools
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import runfolder
from .data import PadCollator, target_loss
from .errors import Interrupted, RunError
from .precision import autocast_dtype, frozen_weights_in
from .prefix import accepts_logits_to_keep, attends_through_interface, shared_prefix_attention, shared_prefix_inputs
from .run import Run, StepInfo


def cpu_has_bf16() -> bool:
    """Native bf16 matmuls (AVX512-BF16 or AMX): there bf16 autocast is faster than fp32, elsewhere an emulation
    over a hundred times slower. LORAFORGE_CPU_BF16=1 or 0 forces the answer, so the emulated path can be exercised
    on a CPU that has native bf16; it is read on every call, the CPU probe only once."""
    import os

    forced = os.environ.get("LORAFORGE_CPU_BF16", "").strip().lower()
    if forced in ("1", "true", "yes"):
        return True
    if forced in ("0", "false", "no"):
        return False
    if forced:
        raise RunError(f"LORAFORGE_CPU_BF16 is '{forced}'", key="LORAFORGE_CPU_BF16",
                       hint="Use 1 (native bf16), 0 (emulated), or leave it unset to ask the CPU.")
    return _cpu_probe_bf16()


@functools.cache
def _cpu_probe_bf16() -> bool:
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(requested: str) -> str:
    """`auto` picks what the device does well: bf16 where supported (GPU or CPU), else fp16 on GPUs, fp32 on CPUs."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if requested == "fp16" and not cuda:
        raise RunError("training.precision = \"fp16\" needs a CUDA GPU", key="training.precision",
                       hint="Use \"bf16\" or \"fp32\" on a CPU, or \"auto\".")
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise RunError("this GPU does not support bf16", key="training.precision", hint="Use \"fp16\" or \"auto\".")
    return requested


def training_arguments(run: Run, has_eval: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    t = run.recipe.training
    precision = run.precision
    per_steps = t.save_steps > 0
    eval_on = has_eval and t.eval_loss
    return TrainingArguments(
        output_dir=str(run.out_dir / runfolder.CHECKPOINTS),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optimizer,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a non-finite loss must be seen, not averaged away
        save_strategy="steps" if per_steps else "epoch",
        save_steps=t.save_steps if per_steps else 500,
        save_total_limit=t.save_total_limit,
        eval_strategy=("steps" if per_steps else "epoch") if eval_on else "no",
        eval_steps=t.save_steps if per_steps and eval_on else None,
        prediction_loss_only=True,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=t.dataloader_workers,
        ddp_find_unused_parameters=False,  # every adapter weight takes part in each forward
        report_to="none",
        disable_tqdm=True,
    )


class InterruptFlag:
    """First Ctrl-C asks for a checkpoint and a clean stop; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _callback(run: Run, interrupt: InterruptFlag) -> Any:
    from transformers import TrainerCallback

    class LifecycleCallback(TrainerCallback):
        """Trainer events → loraforge hooks; ETA from the measured time per step, after the first step."""

        def __init__(self) -> None:
            self.first_step_at: float | None = None
            self.first_step = 0
            self.validation_s = 0.0  # spent computing the validation loss in this call, not training
            self.non_finite_step: int | None = None  # the step whose logged loss was not finite
            self.log = open(run.out_dir / runfolder.LOG, "a", encoding="utf-8") if run.is_main_process else None

        def _eta(self, state: Any) -> float | None:
            if self.first_step_at is None or state.global_step <= self.first_step:
                return None
            per_step = (time.perf_counter() - self.first_step_at) / (state.global_step - self.first_step)
            return per_step * (state.max_steps - state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.first_step_at is None:
                self.first_step_at = time.perf_counter()
                self.first_step = state.global_step
            if interrupt.requested:  # Ctrl-C: save a checkpoint at this step, then stop
                control.should_save = True
                control.should_training_stop = True
            run.report(state.global_step, state.max_steps, "step", epoch=state.epoch or 0.0, eta_s=self._eta(state),
                       loss=run.step.loss if run.step else None)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            logs = logs or {}
            self.validation_s += logs.get("eval_runtime", 0.0)
            if self.log is not None:
                self.log.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")
                self.log.flush()
            if "loss" in logs:
                loss = float(logs["loss"])
                if not math.isfinite(loss):  # stop, and keep the last good checkpoint rather than this state
                    control.should_training_stop = True
                    control.should_save = False
                    self.non_finite_step = state.global_step
                run.step = StepInfo(state.global_step, state.max_steps, state.epoch or 0.0, loss,
                                    logs.get("learning_rate"), self._eta(state))
                run.hook.on_step(run=run)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.log is not None:
                self.log.close()

    return LifecycleCallback()


def non_finite(run: Run, step: int) -> RunError:
    """Drop checkpoints whose weights produced the non-finite loss; name the last good one."""
    import shutil

    for path in runfolder.checkpoints(run.out_dir):
        if int(path.name.split("-")[1]) >= step - 1 and run.is_main_process:  # its weights gave this loss
            shutil.rmtree(path, ignore_errors=True)
    kept = runfolder.checkpoints(run.out_dir)
    where = f"the last good checkpoint, {kept[-1].name}, is kept" if kept else "no earlier checkpoint exists"
    return RunError(f"the training loss became non-finite at step {step}; training stopped and {where}",
                    file=run.out_dir, key="training.learning_rate",
                    hint="Lower training.learning_rate (or use precision \"fp32\") and start over with --restart.")


def can_share_prefix(run: Run, trainer: Any) -> bool:
    """Shared prefixes need logits on targets and a model `shared_prefix_attention` can run. Not tried under FSDP
    or DeepSpeed: off there."""
    t, model = run.recipe.training, run.model
    return (t.share_prefix and t.logits_on_targets and accepts_logits_to_keep(model)
            and attends_through_interface(model)
            and not getattr(trainer, "is_fsdp_enabled", False) and not getattr(trainer, "is_deepspeed_enabled", False))


@functools.cache
def _trainer_class() -> type:
    from transformers import Trainer

    class LoraforgeTrainer(Trainer):
        """The stock Trainer, plus shared-prefix batches and a FLOP count that does not walk the model each step."""

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            if not inputs.get("prefix_length"):
                return super().training_step(model, inputs, num_items_in_batch)
            with shared_prefix_attention(model):  # backward too: checkpointed layers run forward again there
                return super().training_step(model, inputs, num_items_in_batch)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            prefix = inputs.pop("prefix_length", 0)
            if not prefix:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            with shared_prefix_attention(model):
                return super().compute_loss(model, shared_prefix_inputs(inputs, prefix), return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(getattr(sampler, "lengths", None), Sequence) and not isinstance(sampler.lengths, list):
                # a `datasets` column reads one row per index: 0.27 s each epoch for the demo's 2,200 records
                sampler.lengths = list(sampler.lengths)
            return sampler

        def floating_point_ops(self, inputs: dict[str, Any]) -> int:
            if "input_ids" not in inputs:
                return super().floating_point_ops(inputs)
            if not hasattr(self, "_flops_per_token"):
                import torch

                self._flops_per_token = super().floating_point_ops({"input_ids": torch.zeros(1, 1)})
            return self._flops_per_token * inputs["input_ids"].numel()

    return LoraforgeTrainer


def build_trainer(run: Run, args: Any, train_set: Any, eval_set: Any = None, callbacks: Sequence[Any] = ()) -> Any:
    """The Trainer for `run`: our collator and loss (logits on targets, shared prefixes where they apply)."""
    from transformers import PrinterCallback

    tail_only = run.recipe.training.logits_on_targets and accepts_logits_to_keep(run.model)
    collator = PadCollator(run.tokenizer.pad_token_id, logits_on_targets=tail_only)
    trainer = _trainer_class()(
        model=run.model, args=args, train_dataset=train_set,
        eval_dataset=eval_set if args.eval_strategy != "no" else None,
        data_collator=collator,
        compute_loss_func=target_loss if tail_only else None,
        processing_class=run.tokenizer,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # progress is reported through the lifecycle hooks
    collator.share_prefix = tail_only and can_share_prefix(run, trainer)  # known once the Trainer chose its backend
    return trainer


def train_steps(run: Run, train_set: Any, steps: int, callbacks: Sequence[Any] = (),
                on_batch: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """`steps` optimizer steps as `train` runs them (same arguments, collator, frozen weights in the autocast
    dtype), nothing saved and no hook called: what calibration times and bench/profile_step.py profiles.
    `on_batch` sees every collated micro-batch. Returns the Trainer."""
    from transformers.trainer_utils import SaveStrategy

    args = training_arguments(run, has_eval=False)
    args.max_steps, args.save_strategy = steps, SaveStrategy.NO
    trainer = build_trainer(run, args, train_set, callbacks=callbacks)
    if on_batch is not None:
        collate = trainer.data_collator

        def watched(features: list[dict[str, Any]]) -> dict[str, Any]:
            batch = collate(features)
            on_batch(batch)
            return batch

        trainer.data_collator = watched
    with frozen_weights_in(run.model, autocast_dtype(run.precision)):
        trainer.train()
    return trainer


def train(run: Run, datasets: dict[str, Any]) -> dict[str, Any]:
    run.enter("train")
    train_set, eval_set = datasets["train"], datasets.get("validation")
    args = training_arguments(run, eval_set is not None)
    tokens = int(sum(train_set["length"]))
    callback = _callback(run, interrupt := InterruptFlag())
    trainer = build_trainer(run, args, train_set, eval_set, [callback])
    start = time.perf_counter()
    with interrupt, frozen_weights_in(run.model, autocast_dtype(run.precision)):
        result = trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    seconds = time.perf_counter() - start
    training = seconds - callback.validation_s  # the validation-loss passes between epochs are not training
    # Accelerate patches forward() with mixed-precision autocast; evaluation and export want the plain model
    run.model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if interrupt.requested:
        raise Interrupted(f"stopped at step {trainer.state.global_step} of {trainer.state.max_steps}; a checkpoint "
                          "was saved", file=Path(args.output_dir),
                          hint="Run the same command again to resume from it.")
    if callback.non_finite_step is not None:
        raise non_finite(run, callback.non_finite_step)
    epochs = float(trainer.state.epoch or 0.0)
    history = [e for e in trainer.state.log_history if "eval_loss" in e]
    return {
        "steps": trainer.state.global_step,
        "epochs": round(epochs, 3),
        "runtime_s": round(seconds, 2),
        "validation_s": round(callback.validation_s, 2),
        "training_s": round(training, 2),
        "train_loss": round(float(result.training_loss), 5),
        "eval_loss": round(float(history[-1]["eval_loss"]), 5) if history else None,
        "tokens": int(tokens * epochs),
        "tokens_per_s": round(tokens * epochs / training, 1) if training > 0 else None,
        "records": len(train_set),
        **batch_shares(trainer, train_set),
    }


def batch_shares(trainer: Any, train_set: Any, sample: int = 256) -> dict[str, float | None]:
    """For one epoch of the batches the Trainer's sampler draws: the share of padded positions, and the share of
    real tokens that shared prefixes run once per batch instead of once per row (collated again for at most
    `sample` evenly spaced batches)."""
    try:
        batches = list(trainer.get_train_dataloader().batch_sampler)
    except (AttributeError, TypeError):
        return {"padding_fraction": None, "shared_prefix_fraction": None}
    lengths = train_set["length"]
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches if batch)
    shared = None
    if real:
        shared = 0.0
        if getattr(trainer.data_collator, "share_prefix", False):
            some = batches[::max(1, len(batches) // sample)]
            saved = sum(trainer.data_collator([train_set[i] for i in batch]).get("prefix_length", 0)
                        * (len(batch) - 1) for batch in some)
            shared = round(saved / sum(lengths[i] for batch in some for i in batch), 4)
    return {"padding_fraction": round(1 - real / padded, 4) if padded else None, "shared_prefix_fraction": shared}
