"""Continuous batching for the R1 profile: one loop thread serves every request of an engine.

Callers (any thread) `submit` a Sequence and read its tokens from the sequence's own queue. The loop
thread (started lazily, a daemon, gone after IDLE_EXIT_S without work so a dropped engine can be
freed) repeats one step while there is work:

1. take new submissions; retire sequences whose caller cancelled or stopped reading (their row is free
   for this very step);
2. admit waiting sequences while fewer than `max_running` are admitted, each starting from the
   longest cached prefix of its prompt (prefix_cache.PrefixCache);
3. decode: ONE forward over every decoding sequence (one token each, rows of different lengths told
   apart by the pool's attention mask), then each row is sampled by its own sampler;
4. prefill: the rest of the step's token budget (`max_batch_tokens` minus the decode rows) goes to
   prompt chunks, oldest first, so a long prompt is spread over several steps and never stalls the
   running streams for longer than one budget's worth of compute. A finished prompt stores its blocks
   in the prefix cache, samples its first token and joins the decode pool.
   Chunks are cut at fixed positions of the prompt (multiples of `max_batch_tokens`), never where a
   step's leftover budget happens to end: the fused attention kernel rounds a prompt split in two
   differently from the whole (float32 noise, which int8's bfloat16 activations magnify into different
   tokens), so a prompt's numerics must not depend on what else was running. A chunk that does not fit
   the leftover budget waits for the next step, except the step's first chunk (progress is guaranteed;
   a step may overrun its budget by less than one chunk).

Health figures (`metrics()`): queue depth, batch size, recent tokens/s, KV and prefix-cache memory,
hit rate, and the attention entropy of one layer, measured on every `entropy_every`-th decode step
from a forward hook that is attached only for that step (no cost on the other steps).

THREADS. The loop thread runs its forward passes with `threads` intra-op threads (torch's OpenMP team
of that thread; None keeps torch's setting). libgomp gives every thread that runs parallel work its own
team, and once the process holds more OpenMP threads than CPUs it stops spinning between parallel
regions (100 spins instead of ~300,000), so each of a decode step's ~120 matrix products waits for its
workers to wake. A process that loads the engine with a multi-threaded team in the loading thread and
then decodes in this thread holds one team too many. Where the engine has the CPUs to itself (a batch
job, the engine benchmark), keep the loading thread at one intra-op thread
(`torch.set_num_threads(1)` before `Engine.load(..., threads=N)`): SmolLM2 decoded 23.7 -> 26 tok/s in
float32 and 33.5 -> 48 tok/s in int8 (2-vCPU VM, 2026-11-29). Where the same two CPUs also run the web
server and the task threads that consume the tokens (Verity's services mode), the throttled spinning is
the better neighbour: the unthrottled worker spun while the output stage waited for a core, and decode
slowed (benchmarks/RESULTS.md, session 6), so Verity's serving path keeps torch's default.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
import time
import weakref
from collections import deque
from typing import Any

import torch

from model_core.block_manager import DecodePool
from model_core.config import ModelConfig
from model_core.kv_cache import KVCache
from model_core.prefix_cache import PrefixCache
from model_core.sequence import Sequence, Status

log = logging.getLogger(__name__)
RATE_WINDOW_S = 5.0
IDLE_EXIT_S = 5.0  # an idle loop thread exits (and lets a dropped engine be freed); submit restarts it
_LIVE: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # A daemon thread killed inside a torch kernel at interpreter exit aborts the process; stop first.
    for sched in list(_LIVE):
        sched.close()


class Scheduler:
    def __init__(self, model: torch.nn.Module, config: ModelConfig, *, kv_dtype: torch.dtype, device: torch.device,
                 context_length: int, attention: str = "sdpa", max_running: int = 16, max_batch_tokens: int = 512,
                 prefix_cache: PrefixCache | None = None, entropy_every: int = 16, entropy_layer: int = -1,
                 threads: int | None = None) -> None:
        if max_running < 1 or max_batch_tokens < 1:
            raise ValueError("max_running and max_batch_tokens must be at least 1")
        self.model, self.config = model, config
        self.kv_dtype, self.device, self.attention = kv_dtype, device, attention  # kv_dtype: the stored keys/values
        self.max_running, self.max_batch_tokens = max_running, max_batch_tokens
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads  # intra-op threads of the loop thread's forward passes (None: torch's setting)
        self.prefix_cache = prefix_cache
        self.entropy_every = entropy_every  # 0 turns the measurement off
        self.entropy_layer = entropy_layer % config.num_layers
        self.pool = DecodePool(config, max_rows=max_running, max_len=context_length, dtype=kv_dtype, device=device)
        self.waiting: deque[Sequence] = deque()
        self.prefilling: list[Sequence] = []
        self._inbox: queue.SimpleQueue[Sequence] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.steps = self.decode_steps = self.tokens_out = 0
        self._recent: deque[tuple[float, int]] = deque()
        self.attention_entropy: float | None = None
        self._closing = False
        _LIVE.add(self)

    # ------------------------------------------------------------------ callers' side (any thread)

    def submit(self, seq: Sequence) -> None:
        self._inbox.put(seq)
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="model_core-scheduler", daemon=True)
                self._thread.start()
        self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop thread after its current step (requests still running are not finished)."""
        self._closing = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.prefilling or len(self.pool))

    def _loop(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # this thread's own team (see THREADS in the module notes)
        while not self._closing:
            if not self.busy and not self._wake.wait(IDLE_EXIT_S):
                with self._start_lock:  # submit checks the thread under this lock after queueing
                    if self._inbox.empty():
                        self._thread = None
                        return
            if self._closing:
                return
            self._wake.clear()
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - every waiting caller must hear about it
                log.exception("scheduler step failed")
                self._fail_all(exc)

    def _fail_all(self, exc: Exception) -> None:
        for seq in [*self.waiting, *self.prefilling, *self.pool.seqs]:
            seq.out.put(exc)
            seq.status = Status.FINISHED
        self.waiting.clear()
        self.prefilling.clear()
        self.pool = DecodePool(self.config, max_rows=self.max_running, max_len=self.pool.max_len,
                               dtype=self.kv_dtype, device=self.device)

    # ------------------------------------------------------------------ one step (loop thread)

    @torch.inference_mode()
    def step(self) -> None:
        while True:
            try:
                self.waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        self._retire_stopped()
        self._admit()
        budget = self.max_batch_tokens
        if len(self.pool):
            budget -= len(self.pool)
            self._decode()
        if self.prefilling:
            self._prefill(max(budget, 1))  # at least one prompt token per step: admission never stalls
        self.steps += 1

    def _retire_stopped(self) -> None:
        for seq in [s for s in self.waiting if s.stopped]:
            self.waiting.remove(seq)
            seq.finish("cancelled")
        for seq in [s for s in self.prefilling if s.stopped]:
            self.prefilling.remove(seq)
            seq.finish("cancelled")
        for seq in [s for s in self.pool.seqs if s.stopped]:
            self.pool.remove(seq)
            seq.finish("cancelled")

    def _admit(self) -> None:
        while self.waiting and len(self.pool) + len(self.prefilling) < self.max_running:
            seq = self.waiting.popleft()
            seq.staging = KVCache(self.config, len(seq.prompt), dtype=self.kv_dtype, device=self.device)
            if self.prefix_cache is not None:
                # leave at least one prompt token to compute: its logits give the first sampled token
                blocks = self.prefix_cache.lookup(seq.prompt, len(seq.prompt) - 1)
                at = 0
                for block in blocks:
                    n = len(block.tokens)
                    seq.staging.keys[:, 0, :, at:at + n] = block.keys
                    seq.staging.values[:, 0, :, at:at + n] = block.values
                    at += n
                seq.kv_len = seq.cached_len = seq.staging.length = at
            seq.status = Status.PREFILL
            self.prefilling.append(seq)

    def _decode(self) -> None:
        seqs = list(self.pool.seqs)
        view, positions = self.pool.view()
        ids = torch.tensor([[s.next_input()] for s in seqs], device=self.device)
        measure = self.entropy_every > 0 and self.decode_steps % self.entropy_every == 0
        hook, captured = self._entropy_hook() if measure else (None, {})
        try:
            logits = self.model(ids, positions, view, attention=self.attention, max_position=view.length)[:, -1]
        finally:
            if hook is not None:
                hook.remove()
        if captured:
            self.attention_entropy = self._entropy(captured, view)
        self.decode_steps += 1
        for s in seqs:
            s.kv_len += 1
        for i, s in enumerate(seqs):
            if s.stopped:
                continue  # retired at the next step; no token for a caller that left
            if s.append(s.choose(logits[i])):
                self._retire(s)
        self._count(len(seqs))

    def _prefill(self, budget: int) -> None:
        chunk, done = self.max_batch_tokens, False
        for seq in list(self.prefilling):
            start = seq.kv_len
            n = min(seq.prefill_left, chunk - start % chunk)  # up to the next fixed cut (see step 4 above)
            if done and n > budget:
                break
            done = True
            ids = torch.tensor([seq.prompt[start:start + n]], device=self.device)
            positions = torch.arange(start, start + n, device=self.device)[None]
            logits = self.model(ids, positions, seq.staging, attention=self.attention, max_position=start + n - 1)
            seq.kv_len += n
            budget -= n
            if seq.prefill_left:
                continue
            staging = seq.staging
            if self.prefix_cache is not None:
                self.prefix_cache.insert(seq.prompt, staging.keys[:, 0], staging.values[:, 0])
            token = seq.choose(logits[0, -1])
            # join the pool before the caller can see the token, so the counts never skip it
            self.pool.add(seq, staging)
            self.prefilling.remove(seq)
            seq.status, seq.staging = Status.DECODE, None
            if seq.append(token):
                self._retire(seq)
            self._count(1)

    def _retire(self, seq: Sequence) -> None:
        if self.prefix_cache is not None:  # the conversation so far: the next turn starts with it
            self.prefix_cache.insert(seq.tokens[:seq.kv_len], *self.pool.row_kv(seq))
        self.pool.remove(seq)
        seq.finish()

    # ------------------------------------------------------------------ health metrics

    def _count(self, tokens: int) -> None:
        now = time.perf_counter()
        self.tokens_out += tokens
        self._recent.append((now, tokens))
        while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
            self._recent.popleft()

    def _entropy_hook(self) -> tuple[Any, dict[str, torch.Tensor]]:
        captured: dict[str, torch.Tensor] = {}
        attn = self.model.layers[self.entropy_layer].attn

        def grab(_module: torch.nn.Module, args: tuple[Any, ...], _out: torch.Tensor) -> None:
            captured["x"], captured["cos"], captured["sin"] = args[0], args[1], args[2]

        return attn.register_forward_hook(grab), captured

    def _entropy(self, captured: dict[str, torch.Tensor], view: Any) -> float:
        """Mean entropy (nats) of the chosen layer's attention over the rows and heads of this step."""
        from model_core.model import rotate_half

        attn = self.model.layers[self.entropy_layer].attn
        h, hkv, d = attn.num_heads, attn.num_kv_heads, attn.head_dim
        x = captured["x"]
        n = x.shape[0]
        q = attn.wqkv(x)[..., : h * d].view(n, 1, h, d).transpose(1, 2)  # [n,H,1,D]
        q = q * captured["cos"] + rotate_half(q) * captured["sin"]
        keys = self.pool.keys[self.entropy_layer, :n, :, : view.span].float()  # [n,Hkv,S,D]
        scores = torch.matmul(q.float().reshape(n, hkv, h // hkv, d), keys.transpose(2, 3)) / math.sqrt(d)
        if view.attention_mask is not None:
            scores = scores.masked_fill(~view.attention_mask, float("-inf"))
        logp = torch.log_softmax(scores, dim=-1)
        ent = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)
        return float(ent.mean())

    def metrics(self) -> dict[str, Any]:
        now = time.perf_counter()
        recent = [(t, n) for t, n in list(self._recent) if now - t <= RATE_WINDOW_S]
        span = now - recent[0][0] if recent else 0.0
        staging = sum(s.staging.nbytes for s in list(self.prefilling) if s.staging is not None)
        out: dict[str, Any] = {
            "running": len(self.pool) + len(self.prefilling), "decoding": len(self.pool),
            "prefilling": len(self.prefilling), "waiting": len(self.waiting) + self._inbox.qsize(),
            "max_running": self.max_running, "max_batch_tokens": self.max_batch_tokens,
            "steps": self.steps, "tokens_generated": self.tokens_out,
            "tokens_per_s": sum(n for _, n in recent) / span if span > 0 else 0.0,
            "kv_bytes": self.pool.nbytes + staging, "attention_entropy": self.attention_entropy,
            "attention_entropy_layer": self.entropy_layer, "attention_entropy_every": self.entropy_every,
        }
        pc = self.prefix_cache.stats() if self.prefix_cache is not None else None
        out["prefix_cache"] = pc
        return out
