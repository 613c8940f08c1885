"""model_core: a pure-PyTorch engine for the DeepSeek-R1 model family (see docs/CONTRACTS.md).

    from model_core import Engine, SamplingParams
    engine = Engine.load("var/models/smollm2-135m-instruct", profile="r1")
    [result] = engine.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_tokens=64))

Imports torch, safetensors, tokenizers, gguf and jinja2 only; never Django, Celery or `apps`.
"""

from model_core.engine import Engine, Result, StreamEvent
from model_core.errors import CheckpointError, ContextLengthError
from model_core.sampling import SamplingParams

__all__ = ["CheckpointError", "ContextLengthError", "Engine", "Result", "SamplingParams", "StreamEvent"]
