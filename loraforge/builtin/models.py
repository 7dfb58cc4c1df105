"""Builtin model loaders.

`hf` loads any causal LM with `from_pretrained` from a hub id, a local folder or a GGUF file (see `gguf`).
`tiny` builds a small Llama-architecture model and a byte-level BPE tokenizer trained on the recipe's own training
text, deterministically from a seed, saves them as an ordinary Hugging Face folder in the cache, and loads that
folder exactly as `hf` would — so the whole pipeline runs offline on any CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..components import ModelLoader
from ..errors import ModelError, RunError
from ..files import atomic_dir, cache_dir, digest
from ..hookspecs import hookimpl
from ..run import Run
from ..schema import option
from . import gguf

DTYPES = ("auto", "float32", "bfloat16", "float16")
OFFLINE_HINT = ("Run the CPU recipe instead (e.g. recipes/medical_ner_tiny.toml), or point the recipe at a "
                "downloaded copy: --set model.name=/local/path/to/model")


def _torch_dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def _load_from_pretrained(source: str, *, revision: str | None, dtype: str, trust_remote_code: bool,
                          allow_pickle: bool, attn_implementation: str | None, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    local = Path(source)
    if local.is_dir() and not allow_pickle and not any(local.glob("*.safetensors")) and any(local.glob("*.bin")):
        raise ModelError(f"model folder '{source}' holds only pickle weights (*.bin), which can run code when "
                         "loaded", key="model.name",
                         hint="Convert it to safetensors, or set `allow_pickle = true` in [model] if you trust it.")
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        return AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=_torch_dtype(dtype), trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True, **extra, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load model '{source}': {_first_line(exc)}", key="model.name",
                         hint=OFFLINE_HINT) from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers at all: a quick connect instead of minutes of download retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_available(name: str, revision: str | None) -> None:
    """A hub id must be in the local cache or the hub must be reachable; say so at once otherwise."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if isinstance(cached, str) or hub_reachable():
        return
    raise ModelError(f"model '{name}' is not a local folder, not in the Hugging Face cache, and the hub cannot "
                     "be reached", key="model.name", hint=OFFLINE_HINT)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _finish_tokenizer(tokenizer: Any) -> Any:
    """Causal LMs often ship without a pad token; padding never reaches the loss, so EOS serves."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


_LLAMA3 = dict(model_type="llama", vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500000.0, dtype="bfloat16",
               max_position_embeddings=131072, tie_word_embeddings=False, bos_token_id=128000,
               rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192})
_L8B = dict(_LLAMA3, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8)
_L70B = dict(_LLAMA3, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
             num_key_value_heads=8)
#: configs of reference models, so a recipe naming them plans offline (values from their config.json)
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.1-8B": _L8B, "meta-llama/Llama-3.1-8B-Instruct": _L8B,
    "meta-llama/Llama-3.1-70B": _L70B, "meta-llama/Llama-3.1-70B-Instruct": _L70B,
}
#: tokens the Llama 3.1 chat template adds around one user turn (system header with dates, role headers)
CHAT_TEMPLATE_TOKENS = 35


class HfLoader(ModelLoader):
    """A transformers causal LM: a hub id, a local folder, or a GGUF file (converted once into a cached folder)."""

    @dataclass
    class Options:
        name: str = option(help="Hub id (e.g. meta-llama/Llama-3.1-8B-Instruct), a local model folder, or a GGUF "
                                "file: its path, or `package:file.gguf` inside an installed package.",
                           aliases=("path", "base_model"))
        gguf_file: str | None = option(None, help="A GGUF file inside the hub repository or folder `name`.")
        revision: str | None = option(None, help="Branch, tag or commit on the hub.")
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
            "auto", help="Dtype of the base weights; `auto` keeps the checkpoint's.", aliases=("torch_dtype",))
        trust_remote_code: bool = option(False, help="Run modelling code shipped with the model (a warning is "
                                                     "printed); off unless the recipe says so.")
        allow_pickle: bool = option(False, help="Accept pickle (*.bin) weights; only safetensors otherwise.")
        chat_template: Literal["auto", "none"] = option(
            "auto", help="Wrap prompts in the tokenizer's chat template when it has one.")
        attn_implementation: str | None = option(None, help="e.g. sdpa, eager, flash_attention_2.")

    def describe(self) -> str:
        return self.options.name

    def source(self, run: Run) -> str:
        """A local folder (relative to the recipe that names it) when one exists, else a hub id; a GGUF file is
        converted once into a cached folder."""
        path = self.gguf_path(run)
        if path is not None:
            return str(gguf.converted(path, "float32" if self.options.dtype == "auto" else self.options.dtype))
        name = self.options.name
        local = run.recipe.resolve_path("model.name", name)
        if local.is_dir():
            return str(local)
        if name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise ModelError(f"model folder '{name}' does not exist (looked at {local})", key="model.name",
                             file=run.recipe.path, hint="Fix the path; relative paths resolve from the recipe.")
        ensure_available(name, self.options.revision)
        return name

    def gguf_path(self, run: Run) -> Path | None:
        """The GGUF file this loader reads, or None for an ordinary model folder or hub id."""
        o = self.options
        if o.gguf_file:
            folder = run.recipe.resolve_path("model.name", o.name)
            if folder.is_dir():
                return gguf.local_file(o.gguf_file, folder, file=run.recipe.path)
            return gguf.hub_file(o.name, o.gguf_file, o.revision)
        if gguf.is_gguf(o.name):
            return gguf.local_file(o.name, run.recipe.resolve_path("model.name", "."), file=run.recipe.path)
        return None

    def load_tokenizer(self, run: Run) -> Any:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.source(run), revision=self.options.revision,
                                                trust_remote_code=self.options.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load tokenizer of '{self.options.name}': {_first_line(exc)}",
                             key="model.name", file=run.recipe.path, hint=OFFLINE_HINT) from None
        return self._finish(tok)

    def _finish(self, tok: Any) -> Any:
        if self.options.chat_template == "none":
            tok.chat_template = None
        return _finish_tokenizer(tok)

    def load_model(self, run: Run, **kwargs: Any) -> Any:
        o = self.options
        return _load_from_pretrained(self.source(run), revision=o.revision, dtype=o.dtype,
                                     trust_remote_code=o.trust_remote_code, allow_pickle=o.allow_pickle,
                                     attn_implementation=o.attn_implementation, **kwargs)

    @property
    def dtype(self) -> str:
        return self.options.dtype

    @property
    def trusts_remote_code(self) -> bool:
        return self.options.trust_remote_code

    def _known(self, run: Run) -> bool:
        """A reference hub id this machine lacks, whose config ships here."""
        name = self.options.name
        return name in KNOWN_CONFIGS and not run.recipe.resolve_path("model.name", name).is_dir()

    def config(self, run: Run) -> Any:
        from transformers import AutoConfig

        path = self.gguf_path(run)
        if path is not None:
            return gguf.header_config(path)
        if self._known(run):
            values = dict(KNOWN_CONFIGS[self.options.name])
            return AutoConfig.for_model(values.pop("model_type"), **values)
        try:
            return AutoConfig.from_pretrained(self.source(run), revision=self.options.revision,
                                              trust_remote_code=self.options.trust_remote_code)
        except (ModelError, OSError, ValueError) as exc:
            reason = exc.problems[0].message if isinstance(exc, ModelError) else _first_line(exc)
            raise RunError(f"no config for model '{self.describe()}' on this machine: {reason}", key="model.name",
                           file=run.recipe.path,
                           hint=f"plan knows {', '.join(KNOWN_CONFIGS)} offline; otherwise point model.name at a "
                                "local model folder (only config.json is read).") from None

    def config_source(self, run: Run) -> str:
        if self.gguf_path(run) is not None:
            return "GGUF header"
        return "built-in copy of its config.json" if self._known(run) else "model loader"

    def chat_template_tokens(self, run: Run) -> int:
        instruct = "instruct" in self.options.name.lower() and self.options.chat_template != "none"
        return CHAT_TEMPLATE_TOKENS if instruct else 0

    def offline_tokenizer(self, run: Run) -> Any | None:
        path = self.gguf_path(run)
        if path is not None:
            tok = gguf.header_tokenizer(path)
        else:
            from transformers import AutoTokenizer

            o = self.options
            local = run.recipe.resolve_path("model.name", o.name)
            try:
                tok = AutoTokenizer.from_pretrained(str(local) if local.is_dir() else o.name, revision=o.revision,
                                                    trust_remote_code=o.trust_remote_code, local_files_only=True)
            except Exception:  # not on this machine
                return None
        return self._finish(tok)


SPECIAL = {"bos": "<|begin_of_text|>", "eos": "<|end_of_text|>", "pad": "<|pad|>"}


class TinyLoader(ModelLoader):
    """A small Llama built here, its BPE tokenizer trained on the run's own text: trains in seconds, offline."""

    @dataclass
    class Options:
        name: str = option("tiny-llama", help="A label for tables and the cache folder.")
        hidden_size: int = option(128, ge=8, help="Width of the residual stream.")
        num_layers: int = option(2, ge=1, help="Decoder layers.")
        num_heads: int = option(4, ge=1, help="Attention heads.")
        num_kv_heads: int = option(2, ge=1, help="Key/value heads (grouped-query attention like Llama 3).")
        intermediate_size: int = option(352, ge=8, help="MLP width.")
        vocab_size: int = option(1024, ge=300, help="Target size of the byte-level BPE vocabulary.")
        max_position_embeddings: int = option(1024, ge=64, help="Longest sequence the model accepts.")
        seed: int = option(0, help="Seed of the random weights.")
        dtype: Literal["float32", "bfloat16"] = option("float32", help="Dtype of the saved weights.")

        def check(self) -> list[tuple[str, str]]:
            problems = []
            if self.hidden_size % self.num_heads:
                problems.append(("hidden_size", f"{self.hidden_size} is not divisible by num_heads "
                                                f"{self.num_heads}"))
            if self.num_heads % self.num_kv_heads:
                problems.append(("num_kv_heads", f"num_heads {self.num_heads} is not a multiple of "
                                                 f"num_kv_heads {self.num_kv_heads}"))
            return problems

    def describe(self) -> str:
        o = self.options
        return f"{o.name} ({o.num_layers}x{o.hidden_size}, BPE {o.vocab_size})"

    def folder(self, run: Run) -> Path:
        """The model folder for this run: its tokenizer is trained on the run's formatted training text."""
        return self.build([text for ex in run.train_examples for text in (ex.prompt, ex.target)])

    def build(self, corpus: list[str]) -> Path:
        """Build once (cached by options and corpus) and return an ordinary Hugging Face model folder."""
        key = digest(vars(self.options), corpus)
        target = cache_dir("tiny") / f"{self.options.name}-{key}"
        if not (target / "config.json").exists():
            with atomic_dir(target, replace=False) as tmp:
                tokenizer = self._train_tokenizer(corpus)
                tokenizer.save_pretrained(tmp)
                self._init_model(len(tokenizer), tokenizer).save_pretrained(tmp)
        return target

    def _train_tokenizer(self, corpus: list[str]) -> Any:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=self.options.vocab_size, special_tokens=list(SPECIAL.values()),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(corpus, trainer=trainer)
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL["bos"], eos_token=SPECIAL["eos"],
                                       pad_token=SPECIAL["pad"], model_max_length=self.options.max_position_embeddings)

    def _init_model(self, vocab: int, tokenizer: Any) -> Any:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        o = self.options
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=o.hidden_size, intermediate_size=o.intermediate_size,
            num_hidden_layers=o.num_layers, num_attention_heads=o.num_heads, num_key_value_heads=o.num_kv_heads,
            max_position_embeddings=o.max_position_embeddings, tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, dtype=o.dtype)
        torch.manual_seed(o.seed)
        return LlamaForCausalLM(config).to(getattr(torch, o.dtype))

    def load_tokenizer(self, run: Run) -> Any:
        from transformers import AutoTokenizer

        return _finish_tokenizer(AutoTokenizer.from_pretrained(self.folder(run)))

    def load_model(self, run: Run, **kwargs: Any) -> Any:
        return _load_from_pretrained(str(self.folder(run)), revision=None, dtype=self.options.dtype,
                                     trust_remote_code=False, allow_pickle=False, attn_implementation=None,
                                     **kwargs)

    def offline_tokenizer(self, run: Run) -> Any | None:
        return self.load_tokenizer(run)

    @property
    def dtype(self) -> str:
        return self.options.dtype

    def config(self, run: Run) -> Any:
        """As `build_model` makes it: the embeddings sized to the tokenizer trained on the run's text."""
        from transformers import LlamaConfig

        o = self.options
        return LlamaConfig(vocab_size=len(self.load_tokenizer(run)), hidden_size=o.hidden_size, intermediate_size=o.intermediate_size,
                           num_hidden_layers=o.num_layers, num_attention_heads=o.num_heads,
                           num_key_value_heads=o.num_kv_heads, tie_word_embeddings=False)


@hookimpl
def register_model_loaders(register: Any) -> None:
    register("hf", HfLoader)
    register("tiny", TinyLoader)
