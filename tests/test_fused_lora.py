"""Fused LoRA layers against PEFT's own: same outputs, same gradients, same saved adapter."""

from __future__ import annotations

import copy
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from loraforge.builtin.fused_lora import dropped_positions, fuse, fused_class, keep_mask, lora_linear
from loraforge.engine import run_recipe
from loraforge.recipe import load_recipe

from conftest import ROOT, ner_recipe, ner_records

BASE = ROOT / "data" / "tiny_base" / "model"


def peft_pair(dropout: float = 0.0, **config: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The shipped base with LoRA on every linear layer (B non-zero), as PEFT builds it and fused."""
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(BASE),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                      **config))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    fused = copy.deepcopy(model)
    assert fuse(fused) == 21  # 7 linear layers in each of 3 blocks
    return model, fused


def loss_and_grads(model: torch.nn.Module, ids: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_fused_layers_compute_what_peft_computes() -> None:
    plain, fused = peft_pair()
    ids = torch.randint(3, 2048, (3, 24))
    loss_p, grads_p = loss_and_grads(plain, ids)
    loss_f, grads_f = loss_and_grads(fused, ids)
    assert loss_f == pytest.approx(loss_p, rel=1e-6)
    assert grads_p.keys() == grads_f.keys() and len(grads_p) == 42
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], rtol=1e-4, atol=1e-6)
    assert fused.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("positions", [False, True])
def test_dropout_matches_the_unfused_formula(positions: bool) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 5, 12, requires_grad=True)
    weight, bias = torch.randn(7, 12), torch.randn(7)
    lora_a = torch.randn(4, 12, requires_grad=True)
    lora_b = torch.randn(7, 4, requires_grad=True)
    if positions:
        drop, p = dropped_positions(x.numel(), 0.3), 0.3
        keep = torch.ones(x.numel()).index_fill_(0, drop, 0).view(x.shape)
    else:
        keep, p = drop, _ = keep_mask(tuple(x.shape), 0.3, "cpu")
    scale = 2.0 / (1 - p)
    out = lora_linear(x, weight, bias, lora_a, lora_b, scale, drop)
    expected = x @ weight.t() + bias + ((x * keep) @ lora_a.t() @ lora_b.t()) * scale
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), (x, lora_a, lora_b))
    wanted = torch.autograd.grad(expected.square().sum(), (x, lora_a, lora_b))
    for got, want in zip(grads, wanted):  # fp32 sums in another order: values near 2 differ in the 5th digit
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_keep_mask_drops_at_the_requested_rate() -> None:
    torch.manual_seed(2)
    keep, p = keep_mask((1000, 999), 0.05, "cpu")
    assert keep.dtype == torch.float32 and keep.shape == (1000, 999)
    assert set(keep.unique().tolist()) == {0.0, 1.0}
    assert keep_mask((8, 8), 0.5, "cpu", torch.bfloat16)[0].dtype == torch.bfloat16
    assert p == pytest.approx(0.05, abs=1 / 65536)
    assert 1 - keep.float().mean().item() == pytest.approx(p, abs=0.002)
    assert 1 - keep_mask((1000, 1000), 0.5, "cpu")[0].float().mean().item() == pytest.approx(0.5, abs=0.005)
    assert bool(keep_mask((64, 64), 0.0, "cpu")[0].all())


def test_dropped_positions_are_independent_drops_at_the_requested_rate() -> None:
    torch.manual_seed(2)
    n, p = 200_000, 0.05
    draws = [dropped_positions(n, p) for _ in range(20)]
    for drop in draws:
        assert drop.dtype == torch.int64 and int(drop[0]) >= 0 and int(drop[-1]) < n
        assert bool((drop[1:] > drop[:-1]).all())  # sorted, each position once
    counts = torch.tensor([len(d) for d in draws], dtype=torch.float64)
    assert counts.mean().item() / n == pytest.approx(p, rel=0.01)
    assert counts.std().item() == pytest.approx((n * p * (1 - p)) ** 0.5, rel=0.4)  # binomial spread
    hits = torch.zeros(n).index_add_(0, torch.cat(draws), torch.ones(int(counts.sum())))
    # every position drops alike: first, middle and last tenth at the same rate
    for part in hits.view(10, -1)[[0, 5, 9]]:
        assert part.mean().item() / 20 == pytest.approx(p, rel=0.05)
    # kept runs between drops are geometric: P(next element also dropped) = p
    adjacent = sum(int(((d[1:] - d[:-1]) == 1).sum()) for d in draws) / int(counts.sum())
    assert adjacent == pytest.approx(p, rel=0.1)
    assert len(dropped_positions(10, 0.999)) >= 9 and len(dropped_positions(0, 0.5)) == 0
    torch.manual_seed(7)
    first = dropped_positions(5000, 0.5)
    torch.manual_seed(7)
    assert torch.equal(first, dropped_positions(5000, 0.5))  # torch's generator: seeded like nn.Dropout
    torch.manual_seed(7)
    assert torch.equal(first, dropped_positions(5000, 0.5, draws=16))  # drawn in many rounds: the same positions


def test_training_dropout_is_seeded_and_off_in_eval() -> None:
    plain, fused = peft_pair(dropout=0.2)
    ids = torch.randint(3, 2048, (2, 16))
    fused.train()
    torch.manual_seed(5)
    first = fused(input_ids=ids).logits
    torch.manual_seed(5)
    again = fused(input_ids=ids).logits
    other = fused(input_ids=ids).logits
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)
    plain.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(input_ids=ids).logits, plain(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_autocast_runs_both_matmuls_in_bf16() -> None:
    plain, fused = peft_pair()
    ids = torch.randint(3, 2048, (2, 16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = plain(input_ids=ids).logits, fused(input_ids=ids).logits
    assert got.dtype == want.dtype == torch.bfloat16
    assert (got.float() - want.float()).abs().mean() < 0.02 * want.float().abs().mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fused(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for p in fused.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_layers_it_cannot_fuse_keep_pefts_forward() -> None:
    _, fused = peft_pair()
    ids = torch.randint(3, 2048, (2, 16))
    layer = fused.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, fused_class())
    assert layer.fused_adapter((), {}) == "default"
    with fused.disable_adapter():  # adapters off: the base model alone
        assert layer.fused_adapter((), {}) is None
        torch.testing.assert_close(fused(input_ids=ids).logits,
                                   AutoModelForCausalLM.from_pretrained(BASE)(input_ids=ids).logits)
    dora = get_peft_model(AutoModelForCausalLM.from_pretrained(BASE),
                          LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    fuse(dora)
    assert dora.base_model.model.model.layers[0].self_attn.q_proj.fused_adapter((), {}) is None
    merged = fused.merge_and_unload()
    assert not any(isinstance(m, fused_class()) for m in merged.modules())


def test_a_run_saves_the_same_adapter_either_way(make_recipe) -> None:
    """Real runs with adapter.fused on and off: same seed, no dropout, so the trained weights agree."""
    saved = []
    for fused in (True, False):
        path = make_recipe(ner_recipe(adapter={"type": "lora", "r": 4, "lora_dropout": 0.0, "fused": fused,
                                               "target_modules": ["q_proj", "v_proj"]},
                                      training={"max_steps": 4, "batch_size": 2, "learning_rate": 1e-2,
                                                "precision": "fp32"},
                                      evaluation={"split": "none"}, output={"dir": f"run-{fused}"}),
                           name=f"recipe-{fused}.toml", data={"train": ner_records(8)})
        run = run_recipe(load_recipe(path))
        kinds = {type(m).__name__ for m in run.model.modules()}
        assert ("FusedLinear" in kinds) is fused
        saved.append(load_file(run.out_dir / "adapter" / "adapter_model.safetensors"))
    assert saved[0].keys() == saved[1].keys()
    assert any(t.abs().sum() > 0 for name, t in saved[0].items() if "lora_B" in name)  # it trained
    for name in saved[0]:
        torch.testing.assert_close(saved[0][name], saved[1][name], rtol=1e-4, atol=1e-6)


def test_gradient_checkpointing_recomputes_the_same_dropout_masks() -> None:
    _, fused = peft_pair(dropout=0.3)
    ids = torch.randint(3, 2048, (2, 16))
    torch.manual_seed(3)
    loss, grads = loss_and_grads(fused, ids)
    fused.zero_grad(set_to_none=True)
    fused.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(3)
    loss_ckpt, grads_ckpt = loss_and_grads(fused, ids)
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-4, atol=1e-6)


def test_trainable_base_bias_gets_its_gradient_and_a_trainable_weight_falls_back() -> None:
    torch.manual_seed(4)
    layer = torch.nn.Sequential(torch.nn.Linear(12, 6))
    plain = get_peft_model(layer, LoraConfig(r=2, target_modules=["0"], bias="all", init_lora_weights=False))
    fused = copy.deepcopy(plain)
    fuse(fused)
    x = torch.randn(5, 12)
    for model in (plain, fused):
        model(x).square().sum().backward()
    bias = "base_model.model.0.base_layer.bias"
    got, want = dict(fused.named_parameters())[bias].grad, dict(plain.named_parameters())[bias].grad
    torch.testing.assert_close(got, want)
    wrapped = fused.base_model.model[0]
    assert wrapped.fused_adapter((), {}) == "default"
    wrapped.base_layer.weight.requires_grad_(True)  # a full fine-tune of this weight needs PEFT's own path
    assert wrapped.fused_adapter((), {}) is None
