"""The engine: load a checkpoint under a profile, then generate or stream completions.

Profiles (ARCHITECTURE.md, "Engines"):
- "zero": the control. float32, reference attention, the whole sequence recomputed every step, a
  4,096-token window, raw text out (no reasoning split).
- "r1": the production engine. A preallocated KV cache and torch's fused SDPA, the checkpoint's full
  window, the output split into reasoning and answer at `</think>`.

The generation loop lives here, outside the model: `_tokens` yields sampled ids one at a time (the
unit a continuous-batching scheduler will take over), `stream` turns them into text events through
the incremental detokeniser, stop strings and the reasoning splitter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model_core.chat import ChatFormat
from model_core.checkpoint import Checkpoint, load_checkpoint
from model_core.errors import ContextLengthError
from model_core.kv_cache import KVCache
from model_core.reasoning import ReasoningSplitter, prompt_opens_reasoning
from model_core.sampling import Sampler, SamplingParams, StopMatcher
from model_core.tokenizer import IncrementalDecoder, Tokenizer

ZERO_CONTEXT = 4096
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Profile:
    name: str
    attention: str  # "reference" | "sdpa"
    use_cache: bool
    max_context: int | None  # None: the checkpoint's own window
    split_reasoning: bool


PROFILES = {
    "zero": Profile("zero", attention="reference", use_cache=False, max_context=ZERO_CONTEXT, split_reasoning=False),
    "r1": Profile("r1", attention="sdpa", use_cache=True, max_context=None, split_reasoning=True),
}


@dataclass
class Result:
    token_ids: list[int]
    text: str
    reasoning: str
    finish_reason: str  # "stop" | "length" | "cancelled"
    usage: dict[str, int]


@dataclass
class StreamEvent:
    kind: str  # "reasoning" | "answer" | "finish"
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    timings: dict[str, float] | None = None


Prompt = Sequence[int] | Sequence[dict[str, Any]]


class Engine:
    """One loaded checkpoint under one profile. Safe to call from several threads at once: each request
    has its own cache and sampler, and the weights are only read."""

    def __init__(self, checkpoint: Checkpoint, profile: Profile, *, dtype: torch.dtype, device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.config = checkpoint.config
        self.tokenizer: Tokenizer = checkpoint.tokenizer
        self.profile = profile
        self.quantization: str | None = None
        self.dtype = dtype
        self.device = device
        window = self.config.max_position_embeddings
        self.context_length = min(window, profile.max_context) if profile.max_context else window
        template = self.tokenizer.chat_template
        self.is_r1 = bool(template) and ChatFormat.detect_r1(template)
        self._chat: ChatFormat | None = None
        self.stop_token_ids = self._stop_ids()

    @classmethod
    def load(cls, path: str | Path, profile: str = "r1", dtype: str = "float32", device: str = "cpu",
             progress: bool = True, quantize: str | None = None) -> Engine:
        """Load a Hugging Face checkpoint directory or a .gguf file for the given profile.

        `quantize="int8"` (R1 only) swaps every linear layer and the embedding for per-channel int8
        weight-only modules after loading (model_core.quantize)."""
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if profile == "zero" and dtype != "float32":
            raise ValueError("dtype: the zero profile is the float32 reference; use dtype='float32'")
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but no CUDA device is available")
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        if quantize and profile == "zero":
            raise ValueError("quantize: the zero profile is the float32 reference and is never quantised")
        checkpoint = load_checkpoint(path, dtype=DTYPES[dtype], device=str(dev), progress=progress)
        if quantize == "int8":
            from model_core.quantize import quantize_model_int8

            quantize_model_int8(checkpoint.model)
        engine = cls(checkpoint, PROFILES[profile], dtype=DTYPES[dtype], device=dev)
        engine.quantization = quantize
        return engine

    # ------------------------------------------------------------------ description and prompts

    @property
    def info(self) -> dict[str, Any]:
        c = self.config
        name = c.name or Path(self.checkpoint.source).name
        return {"name": name, "architecture": c.architecture, "context_length": self.context_length,
                "profile": self.profile.name, "dtype": str(self.dtype).removeprefix("torch."),
                "device": str(self.device), "is_r1": self.is_r1,
                "quantization": self.quantization}

    def _stop_ids(self) -> frozenset[int]:
        ids: set[int] = set(self.config.eos_token_ids)
        eos = self.checkpoint.generation_config.get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(ids)

    @property
    def chat_format(self) -> ChatFormat:
        if self._chat is None:
            self._chat = ChatFormat(self.tokenizer.chat_template or "", bos_token=self.tokenizer.bos_token,
                                    eos_token=self.tokenizer.eos_token, is_r1=self.is_r1)
        return self._chat

    def render_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the conversation in the checkpoint's chat template (R1 rules for R1 checkpoints)."""
        text = self.chat_format.render(messages, add_generation_prompt=add_generation_prompt)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str | bytes) or not isinstance(prompt, Sequence) or len(prompt) == 0:
            raise ValueError("prompt must be a non-empty list of token ids or of chat messages")
        if all(isinstance(m, dict) for m in prompt):
            return self.render_chat(prompt)  # type: ignore[arg-type]
        vocab = self.config.vocab_size
        for i, t in enumerate(prompt):
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab:
                raise ValueError(f"prompt[{i}] must be a token id in [0, {vocab}), got {t!r}")
        return list(prompt)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the token loop

    @torch.inference_mode()
    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache | None, last: int) -> torch.Tensor:
        return self.model(ids, positions, cache, attention=self.profile.attention, max_position=last)[0, -1]

    def _tokens(self, prompt_ids: list[int], params: SamplingParams, sampler: Sampler | None) -> Iterator[int]:
        """Sampled ids, one per step, until the caller stops asking or the window is full."""
        dev = self.device
        budget = min(params.max_tokens, self.context_length - len(prompt_ids))
        generated: list[int] = []

        def pick(logits: torch.Tensor) -> int:
            return int(logits.argmax()) if sampler is None else sampler.sample(logits, generated)

        if not self.profile.use_cache:
            ids = list(prompt_ids)
            for _ in range(budget):
                x = torch.tensor([ids], device=dev)
                token = pick(self._forward(x, torch.arange(len(ids), device=dev)[None], None, len(ids) - 1))
                generated.append(token)
                ids.append(token)
                yield token
            return
        cache = KVCache(self.config, len(prompt_ids) + budget, dtype=self.dtype, device=dev)
        logits = self._forward(torch.tensor([prompt_ids], device=dev), torch.arange(len(prompt_ids), device=dev)[None],
                               cache, len(prompt_ids) - 1)
        position = len(prompt_ids)
        for step in range(budget):
            token = pick(logits)
            generated.append(token)
            yield token
            if step + 1 < budget:  # the last token needs no forward pass of its own
                logits = self._forward(torch.tensor([[token]], device=dev), torch.tensor([[position]], device=dev),
                                       cache, position)
                position += 1

    # ------------------------------------------------------------------ public generation

    def stream(self, prompt: Prompt, params: SamplingParams | None = None, *,
               cancel: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Text events (`reasoning`/`answer` deltas with the ids that produced them), then one `finish`.
        Setting `cancel` ends the stream at the next token with finish_reason "cancelled"."""
        params = params or self.default_params()
        prompt_ids = self._prompt_ids(prompt)
        if len(prompt_ids) >= self.context_length:
            raise ContextLengthError(len(prompt_ids), self.context_length, self.profile.name)
        processors = self._constraint_processors(params)  # an unenforceable schema fails here, up front
        return self._events(prompt_ids, params, cancel, processors)

    def default_params(self) -> SamplingParams:
        # DeepSeek's recommendation for R1 checkpoints; plain sampling otherwise.
        return SamplingParams(temperature=0.6, top_p=0.95) if self.is_r1 else SamplingParams()

    def _constraint_processors(self, params: SamplingParams) -> list[Any]:
        """Structured output: a logits processor that only allows tokens keeping the answer valid.
        Built before any compute, so a schema the engine cannot enforce fails with a ValueError."""
        rf = params.response_format
        if not rf or rf.get("type") == "text":
            return []
        from model_core.constrained import constraint_from_response_format, vocabulary_for_tokenizer

        vocab = vocabulary_for_tokenizer(self.tokenizer, self.stop_token_ids)
        # R1 reasons freely inside <think>; the constraint applies to the answer after </think>.
        after = "</think>" if self.is_r1 and self.profile.split_reasoning else None
        return [constraint_from_response_format(rf, vocab, (), after=after).processor]

    def _events(self, prompt_ids: list[int], params: SamplingParams, cancel: threading.Event | None,
                processors: list[Any] | None = None) -> Iterator[StreamEvent]:
        started = time.perf_counter()
        sampler: Sampler | None = Sampler(params, processors or ())
        if params.is_greedy and not sampler.processors:
            sampler = None  # plain arg-max on the logits, no float copy or processor pass
        stop_ids = self.stop_token_ids | set(params.stop_token_ids)
        decoder = IncrementalDecoder(self.tokenizer, prompt_ids)
        matcher = StopMatcher(params.stop)
        splitter = None
        if self.profile.split_reasoning:
            tail = self.tokenizer.decode(prompt_ids[-8:], skip_special_tokens=False)
            splitter = ReasoningSplitter(starts_in_reasoning=prompt_opens_reasoning(tail))
        generated: list[int] = []
        pending_ids: list[int] = []  # ids whose text is still held back (partial character, tag or stop)
        finish, first_at = "length", None

        def pieces(text: str) -> list[tuple[str, str]]:
            if not text:
                return []
            return splitter.feed(text) if splitter is not None else [("answer", text)]

        def emit(parts: list[tuple[str, str]]) -> Iterator[StreamEvent]:
            nonlocal pending_ids
            for kind, text in parts:
                if text:
                    yield StreamEvent(kind=kind, text=text, token_ids=pending_ids)
                    pending_ids = []

        tokens = self._tokens(prompt_ids, params, sampler)
        try:
            for token in tokens:
                if first_at is None:
                    first_at = time.perf_counter()
                generated.append(token)
                pending_ids.append(token)
                if token in stop_ids:
                    finish = "stop"
                    break
                text, stopped = matcher.feed(decoder.push(token))
                yield from emit(pieces(text))
                if stopped:
                    finish = "stop"
                    break
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
        finally:
            tokens.close()
        if not matcher.stopped:
            text, _ = matcher.feed(decoder.flush())
            yield from emit(pieces(text + matcher.flush()))
        if splitter is not None:
            yield from emit(splitter.flush())
        ended = time.perf_counter()
        first_at = first_at or ended
        usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": len(generated),
                 "total_tokens": len(prompt_ids) + len(generated)}
        decode_s = ended - first_at
        timings = {"ttft_s": first_at - started, "total_s": ended - started,
                   "decode_tok_s": (len(generated) - 1) / decode_s if len(generated) > 1 and decode_s > 0 else 0.0}
        yield StreamEvent(kind="finish", token_ids=pending_ids, finish_reason=finish, usage=usage, timings=timings)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams | None = None) -> list[Result]:
        """One Result per prompt (a single prompt, token ids or messages, is accepted as well)."""
        if isinstance(prompts, Sequence) and prompts and isinstance(prompts[0], int | dict):
            prompts = [prompts]  # type: ignore[list-item]
        # Validate every prompt before spending compute on any of them.
        streams = [self.stream(p, params) for p in prompts]
        return [self._collect(s) for s in streams]

    @staticmethod
    def _collect(events: Iterator[StreamEvent]) -> Result:
        ids: list[int] = []
        text: list[str] = []
        reasoning: list[str] = []
        for ev in events:
            ids.extend(ev.token_ids)
            if ev.kind == "answer":
                text.append(ev.text)
            elif ev.kind == "reasoning":
                reasoning.append(ev.text)
            elif ev.kind == "finish":
                return Result(token_ids=ids, text="".join(text), reasoning="".join(reasoning),
                              finish_reason=ev.finish_reason or "stop", usage=ev.usage or {})
        raise RuntimeError("stream ended without a finish event")
