"""loraforge-jsonx: a JSON-extraction task, its metric and its `[jsonx]` recipe table, as a loraforge plugin."""

from __future__ import annotations

from .metric import JsonxMetric
from .task import INVALID, JsonxSection, JsonxTask, extract_object, target_json

__version__ = "0.3.0"
__all__ = ["INVALID", "JsonxMetric", "JsonxSection", "JsonxTask", "extract_object", "target_json"]
