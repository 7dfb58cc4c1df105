"""loraforge: fine-tune causal language models with LoRA, DoRA and QLoRA from declarative TOML recipes."""

__version__ = "0.1.0"
