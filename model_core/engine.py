"""The engine: load a checkpoint under a profile, then generate or stream completions.

Profiles (ARCHITECTURE.md, "Engines"):
- "zero": the control. float32, reference attention, the whole sequence recomputed every step, a
  4,096-token window, raw text out (no reasoning split).
- "r1": the production engine. Continuous batching (model_core.scheduler: every request of the engine
  shares one loop thread, one batched decode forward per step, chunked prefill, a prefix cache of KV
  blocks), torch's fused SDPA, the checkpoint's full window, the output split into reasoning and
  answer at `</think>`. Keys/values are stored in `kv_dtype`: the model's dtype, or bfloat16 for an
  int8 engine (half the KV memory; on the CPU its int8 kernel computes in bfloat16 already).

Token sources live outside the model: Zero's `_tokens` recomputes the whole sequence per token (the
plain reference, no scheduler and no cache); R1 submits a `Sequence` to the scheduler and reads its
queue. `stream` turns either into text events through the incremental detokeniser, stop strings and
the reasoning splitter.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model_core.chat import ChatFormat
from model_core.checkpoint import Checkpoint, load_checkpoint
from model_core.errors import ContextLengthError
from model_core.prefix_cache import PrefixCache
from model_core.reasoning import ReasoningSplitter, prompt_opens_reasoning
from model_core.sampling import Sampler, SamplingParams, StopMatcher, ban_processor
from model_core.scheduler import Scheduler
from model_core.sequence import Sequence as Request
from model_core.tokenizer import IncrementalDecoder, Tokenizer

ZERO_CONTEXT = 4096
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
KV_DTYPES = {**DTYPES, "float16": torch.float16}


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
    """One loaded checkpoint under one profile. Safe to call from several threads at once: R1 requests
    are batched by one scheduler thread, each with its own sampler; Zero requests run in the caller's
    thread with their own state; the weights are only read."""

    def __init__(self, checkpoint: Checkpoint, profile: Profile, *, dtype: torch.dtype, device: torch.device,
                 prefix_cache: bool = True, prefix_cache_bytes: int = 512 * 2**20, max_running: int = 16,
                 max_batch_tokens: int = 512, kv_dtype: torch.dtype | None = None,
                 threads: int | None = None) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.config = checkpoint.config
        self.tokenizer: Tokenizer = checkpoint.tokenizer
        self.profile = profile
        self.quantization: str | None = None
        self.adapter: str | None = None  # the LoRA adapter merged at load, if any
        self.dtype = dtype
        self.kv_dtype = kv_dtype or dtype  # R1's stored keys/values (decode pool, prefill, prefix cache)
        self.device = device
        window = self.config.max_position_embeddings
        self.context_length = min(window, profile.max_context) if profile.max_context else window
        template = self.tokenizer.chat_template
        self.is_r1 = bool(template) and ChatFormat.detect_r1(template)
        self._chat: ChatFormat | None = None
        self.stop_token_ids = self._stop_ids()
        self._banned_ids: dict[str, torch.Tensor] = {}  # SamplingParams.banned_chars -> token ids
        self._banned_lock = threading.Lock()
        self.scheduler: Scheduler | None = None
        if profile.use_cache:
            cache = PrefixCache(budget_bytes=prefix_cache_bytes) if prefix_cache else None
            self.scheduler = Scheduler(self.model, self.config, kv_dtype=self.kv_dtype, device=device,
                                       context_length=self.context_length, attention=profile.attention,
                                       max_running=max_running, max_batch_tokens=max_batch_tokens,
                                       prefix_cache=cache, threads=threads)

    @classmethod
    def load(cls, path: str | Path, profile: str = "r1", dtype: str = "float32", device: str = "cpu",
             progress: bool = True, quantize: str | None = None, *, prefix_cache: bool = True,
             prefix_cache_bytes: int = 512 * 2**20, max_running: int = 16, max_batch_tokens: int = 512,
             adapter: str | Path | None = None, kv_dtype: str | None = None, threads: int | None = None) -> Engine:
        """Load a Hugging Face checkpoint directory or a .gguf file for the given profile.

        `quantize="int8"` (R1 only) swaps every linear layer and the embedding for per-channel int8
        weight-only modules after loading (model_core.quantize). R1's scheduler: at most `max_running`
        sequences admitted at once, `max_batch_tokens` tokens computed per step (decode rows plus prompt
        chunks), and a prefix cache of up to `prefix_cache_bytes` (off with `prefix_cache=False`).
        Zero has no scheduler and no cache; these settings do not apply to it. `adapter`: a LoRA adapter
        written by `model_core train` (model_core.adapter), merged into the weights at load, before any
        layout change or quantisation, so base + adapter costs nothing per token.

        `kv_dtype` (R1): the dtype R1 stores keys/values in — decode pool, prefill staging and prefix
        cache alike, so attention always reads them after the same rounding, cached or just computed.
        Default: bfloat16 for int8 engines (half the KV memory; the CPU int8 kernel's projections are
        bfloat16 already), the model's dtype otherwise.

        `threads` (R1): intra-op threads of the scheduler thread's forward passes (default: torch's
        setting when that thread starts). A process where the engine has the CPUs to itself sets its
        other threads to one (`torch.set_num_threads(1)` before loading) and gives the engine the cores:
        more OpenMP threads than CPUs make libgomp stop spinning between parallel regions
        (model_core/scheduler.py, THREADS, also says when not to)."""
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
        if kv_dtype is not None and kv_dtype not in KV_DTYPES:
            raise ValueError(f"kv_dtype must be one of {sorted(KV_DTYPES)}, got {kv_dtype!r}")
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        if quantize and profile == "zero":
            raise ValueError("quantize: the zero profile is the float32 reference and is never quantised")
        if adapter is not None and not Path(adapter).is_file():
            raise FileNotFoundError(f"{adapter}: no adapter file")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        if quantize == "int8" and adapter is not None:
            # the deltas must reach the float weights before rounding: load float, merge, then swap to int8
            from model_core.adapter import merge_adapter
            from model_core.quantize import quantize_model_int8

            checkpoint = load_checkpoint(path, dtype=DTYPES[dtype], device=str(dev), progress=progress)
            merge_adapter(checkpoint.model, adapter)
            quantize_model_int8(checkpoint.model)
        elif quantize == "int8":  # quantised tensor by tensor while loading: no float model in memory
            from model_core.quantize_load import load_checkpoint_int8

            checkpoint = load_checkpoint_int8(path, dtype=DTYPES[dtype], device=str(dev), progress=progress)
        else:
            checkpoint = load_checkpoint(path, dtype=DTYPES[dtype], device=str(dev), progress=progress)
            if adapter is not None:
                from model_core.adapter import merge_adapter

                merge_adapter(checkpoint.model, adapter)
        if profile == "r1" and not quantize and dev.type == "cpu":
            from model_core.fast import use_decode_layout

            use_decode_layout(checkpoint.model)  # oneDNN's weight layout: decode at the memory's speed
        if kv_dtype is None:
            kv_dtype = "bfloat16" if quantize == "int8" else dtype
        engine = cls(checkpoint, PROFILES[profile], dtype=DTYPES[dtype], device=dev, prefix_cache=prefix_cache,
                     prefix_cache_bytes=prefix_cache_bytes, max_running=max_running, max_batch_tokens=max_batch_tokens,
                     kv_dtype=KV_DTYPES[kv_dtype], threads=threads)
        engine.quantization = quantize
        engine.adapter = str(adapter) if adapter is not None else None
        return engine

    # ------------------------------------------------------------------ description and prompts

    @property
    def info(self) -> dict[str, Any]:
        c = self.config
        name = c.name or Path(self.checkpoint.source).name
        return {"name": name, "architecture": c.architecture, "context_length": self.context_length,
                "profile": self.profile.name, "dtype": str(self.dtype).removeprefix("torch."),
                "kv_dtype": str(self.kv_dtype).removeprefix("torch.") if self.scheduler is not None else None,
                "device": str(self.device), "is_r1": self.is_r1,
                "quantization": self.quantization, "adapter": self.adapter}

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

    def render_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True, *,
                    instructions_in_user_turn: bool = False) -> list[int]:
        """Token ids of the conversation in the checkpoint's chat template: exactly transformers'
        `apply_chat_template` ids, with R1's reasoning rules for R1 checkpoints. With
        `instructions_in_user_turn=True` an R1 checkpoint's system messages join the next user turn, as
        DeepSeek asks for R1 (no system prompt); generate/stream apply that to chat prompts."""
        text = self.chat_format.render(messages, add_generation_prompt=add_generation_prompt,
                                       instructions_in_user_turn=instructions_in_user_turn)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str | bytes) or not isinstance(prompt, Sequence) or len(prompt) == 0:
            raise ValueError("prompt must be a non-empty list of token ids or of chat messages")
        if all(isinstance(m, dict) for m in prompt):
            return self.render_chat(prompt, instructions_in_user_turn=True)  # type: ignore[arg-type]
        vocab = self.config.vocab_size
        for i, t in enumerate(prompt):
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab:
                raise ValueError(f"prompt[{i}] must be a token id in [0, {vocab}), got {t!r}")
        return list(prompt)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the token loop

    @torch.inference_mode()
    def _tokens(self, prompt_ids: list[int], budget: int, sampler: Sampler | None) -> Iterator[int]:
        """Zero's reference loop: the whole sequence recomputed for every sampled id."""
        dev = self.device
        ids = list(prompt_ids)
        generated: list[int] = []
        for _ in range(budget):
            logits = self.model(torch.tensor([ids], device=dev), torch.arange(len(ids), device=dev)[None], None,
                                attention=self.profile.attention, max_position=len(ids) - 1)[0, -1]
            token = int(logits.argmax()) if sampler is None else sampler.sample(logits, generated)
            generated.append(token)
            ids.append(token)
            yield token

    def metrics(self) -> dict[str, Any]:
        """Engine-wide health figures (scheduler.Scheduler.metrics; Zero has no scheduler, so None there)."""
        sched = self.scheduler.metrics() if self.scheduler is not None else None
        return {"profile": self.profile.name, "scheduler": sched,
                "running": sched["running"] if sched else 0, "waiting": sched["waiting"] if sched else 0,
                "tokens_per_s": sched["tokens_per_s"] if sched else 0.0,
                "kv_bytes": sched["kv_bytes"] if sched else 0,
                "prefix_cache": sched["prefix_cache"] if sched else None,
                "attention_entropy": sched["attention_entropy"] if sched else None}

    # ------------------------------------------------------------------ public generation

    def stream(self, prompt: Prompt, params: SamplingParams | None = None, *,
               cancel: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Text events (`reasoning`/`answer` deltas with the ids that produced them), then one `finish`.
        Setting `cancel` ends the stream at the next token with finish_reason "cancelled"."""
        # an unenforceable schema or a prompt too long fails here, up front, before any compute
        prompt_ids, params, processors = self._prepare(prompt, params)
        return self._events(prompt_ids, params, cancel, processors)

    def _prepare(self, prompt: Prompt, params: SamplingParams | None) -> tuple[list[int], SamplingParams, list[Any]]:
        params = params or self.default_params()
        prompt_ids = self._prompt_ids(prompt)
        if len(prompt_ids) >= self.context_length:
            raise ContextLengthError(len(prompt_ids), self.context_length, self.profile.name)
        return prompt_ids, params, self._constraint_processors(params)

    def default_params(self) -> SamplingParams:
        # DeepSeek's recommendation for R1 checkpoints; plain sampling otherwise.
        return SamplingParams(temperature=0.6, top_p=0.95) if self.is_r1 else SamplingParams()

    def _constraint_processors(self, params: SamplingParams) -> list[Any]:
        """Structured output: a logits processor that only allows tokens keeping the answer valid.
        Built before any compute, so a schema the engine cannot enforce fails with a ValueError."""
        processors: list[Any] = []
        if params.banned_chars:
            processors.append(ban_processor(self._banned_token_ids(params.banned_chars)))
        rf = params.response_format
        if not rf or rf.get("type") == "text":
            return processors
        from model_core.constrained import constraint_from_response_format, vocabulary_for_tokenizer

        vocab = vocabulary_for_tokenizer(self.tokenizer, self.stop_token_ids)
        # R1 reasons freely inside <think>; the constraint applies to the answer after </think>.
        after = "</think>" if self.is_r1 and self.profile.split_reasoning else None
        # max_tokens: the constraint closes the value in time for the budget (constrained_budget)
        return [*processors,
                constraint_from_response_format(rf, vocab, (), after=after, max_tokens=params.max_tokens).processor]

    def _banned_token_ids(self, chars: str) -> torch.Tensor:
        """Ids of every token whose bytes contain one of `chars` (ASCII), built once per engine and set."""
        key = "".join(sorted(set(chars)))
        with self._banned_lock:
            hit = self._banned_ids.get(key)
        if hit is not None:
            return hit
        from model_core.constrained import vocabulary_for_tokenizer

        tokens = vocabulary_for_tokenizer(self.tokenizer, self.stop_token_ids).tokens
        banned = key.encode("ascii")
        ids = torch.tensor([tid for tid, data in enumerate(tokens)
                            if data is not None and any(b in data for b in banned)], dtype=torch.long)
        with self._banned_lock:
            self._banned_ids[key] = ids
        return ids

    def _events(self, prompt_ids: list[int], params: SamplingParams, cancel: threading.Event | None,
                processors: list[Any] | None = None) -> Iterator[StreamEvent]:
        """Start the request now (R1: submitted to the scheduler, so several streams created before any
        is read run concurrently) and return its event generator."""
        started = time.perf_counter()
        sampler: Sampler | None = Sampler(params, processors or ())
        if params.is_greedy and not sampler.processors:
            sampler = None  # plain arg-max on the logits, no float copy or processor pass
        stop_ids = self.stop_token_ids | set(params.stop_token_ids)
        budget = min(params.max_tokens, self.context_length - len(prompt_ids))
        if self.scheduler is None:
            return self._text_events(prompt_ids, params, cancel, self._tokens(prompt_ids, budget, sampler), started)
        seq = Request(list(prompt_ids), budget, sampler, frozenset(stop_ids), cancel)
        self.scheduler.submit(seq)
        events = self._text_events(prompt_ids, params, cancel, seq.stream_tokens(), started)
        weakref.finalize(events, seq.abandoned.set)  # a stream dropped unread still frees its slot
        return events

    def _text_events(self, prompt_ids: list[int], params: SamplingParams, cancel: threading.Event | None,
                     tokens: Iterator[int], started: float) -> Iterator[StreamEvent]:
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

        def guarded(parts: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], bool]:
            """Stop strings end the answer: R1's reasoning is never matched (a partner's stop string
            must not end a reply in text the partner does not see as the answer)."""
            out: list[tuple[str, str]] = []
            for kind, text in parts:
                if kind != "answer":
                    out.append((kind, text))
                    continue
                text, stopped = matcher.feed(text)
                if text:
                    out.append((kind, text))
                if stopped:
                    return out, True
            return out, False

        def emit(parts: list[tuple[str, str]]) -> Iterator[StreamEvent]:
            nonlocal pending_ids
            for kind, text in parts:
                if text:
                    yield StreamEvent(kind=kind, text=text, token_ids=pending_ids)
                    pending_ids = []

        try:
            for token in tokens:
                if first_at is None:
                    first_at = time.perf_counter()
                generated.append(token)
                pending_ids.append(token)
                if token in stop_ids:
                    finish = "stop"
                    break
                parts, stopped = guarded(pieces(decoder.push(token)))
                yield from emit(parts)
                if stopped:
                    finish = "stop"
                    break
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
        finally:
            tokens.close()
        if finish == "length" and cancel is not None and cancel.is_set():
            finish = "cancelled"  # the scheduler retired it before its next token
        if not matcher.stopped:
            parts, _ = guarded(pieces(decoder.flush()))
            yield from emit(parts)
        if not matcher.stopped and splitter is not None:
            parts, _ = guarded(splitter.flush())
            yield from emit(parts)
        if not matcher.stopped:
            yield from emit([("answer", matcher.flush())])  # a held partial stop string is plain text
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
        # Validate every prompt before spending compute on any of them; then all of them are submitted
        # before any is read, so R1's scheduler runs them concurrently.
        prepared = [self._prepare(p, params) for p in prompts]
        streams = [self._events(ids, ps, None, procs) for ids, ps, procs in prepared]
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
