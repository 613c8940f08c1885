"""Continuous batching (issue 4, check 1): requests run concurrently through the R1 scheduler give
exactly the tokens they give alone, cancellation frees capacity, a long prompt's prefill is chunked,
and the engine reports its health figures. The reference is the same request run alone (batch 1);
the bundled SmolLM2 gives real, non-random logits, the small random checkpoints of conftest the rest.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from model_core import Engine, SamplingParams

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = ROOT / "var/models/smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smollm2() -> Engine:
    if not (SMOLLM2 / "config.json").is_file():
        pytest.skip("the bundled SmolLM2 is not converted (make run / prepare-bundled)")
    return Engine.load(SMOLLM2, profile="r1", progress=False, prefix_cache=False)


@pytest.fixture(scope="module")
def tiny(checkpoints) -> Engine:
    return Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, max_running=2)


def sixteen_prompts(engine: Engine) -> list[list[int]]:
    """16 chat prompts of clearly different lengths (about 20 to 200 tokens)."""
    topics = ["compound interest", "a bond ladder", "inflation", "index funds", "a will", "a lease", "fever",
              "sleep", "tax brackets", "a mortgage", "vaccines", "copyright", "a budget", "hydration",
              "a contract", "exercise"]
    prompts = []
    for i, topic in enumerate(topics):
        filler = " Please be precise and brief." * (i * 3)
        prompts.append(engine.render_chat([{"role": "user", "content": f"Explain {topic} in one sentence.{filler}"}]))
    assert len({len(p) for p in prompts}) == 16
    return prompts


def assert_sixteen_batched_equal_one_by_one(engine: Engine, params: SamplingParams) -> None:
    """Issue 4 check 1: sixteen requests of different lengths give, from sixteen threads at once and from
    one batched `generate`, exactly the tokens they give one at a time (batch 1)."""
    prompts = sixteen_prompts(engine)
    alone = [engine.generate([p], params)[0].token_ids for p in prompts]

    threaded: list[list[int] | None] = [None] * 16
    batch_sizes: list[int] = []
    start = threading.Barrier(16)

    def run(i: int) -> None:
        start.wait()
        ids: list[int] = []
        for event in engine.stream(prompts[i], params):
            ids.extend(event.token_ids)
            batch_sizes.append(engine.metrics()["scheduler"]["decoding"])
        threaded[i] = ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert threaded == alone
    assert max(batch_sizes) >= 8  # they really shared decode steps
    assert [r.token_ids for r in engine.generate(prompts, params)] == alone


@pytest.mark.slow
def test_sixteen_greedy_requests_batched_equal_one_by_one(smollm2):
    assert_sixteen_batched_equal_one_by_one(smollm2, SamplingParams(max_tokens=12, greedy=True))


def test_sampled_requests_keep_their_own_seed_when_batched(tiny):
    params = [SamplingParams(max_tokens=10, temperature=0.9, seed=s) for s in (1, 2)]
    prompt = [1000 + 13 * i for i in range(9)]
    alone = [tiny.generate([prompt], p)[0].token_ids for p in params]
    streams = [tiny.stream(prompt, p) for p in params]  # both submitted before either is read
    together = [[t for e in s for t in e.token_ids] for s in streams]
    assert together == alone
    assert alone[0] != alone[1]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the scheduler")
        time.sleep(0.005)


def test_cancelling_a_stream_lets_a_queued_request_start(tiny):
    long = SamplingParams(max_tokens=4000, greedy=True)
    tiny.stop_token_ids = frozenset()  # random weights may sample an end token early
    try:
        cancels = [threading.Event(), threading.Event()]
        first = [tiny.stream([500 + i, 600, 700], long, cancel=cancels[i]) for i in range(2)]
        for s in first:
            next(s)  # both are decoding: max_running=2 is full
        queued = tiny.stream([800, 801, 802], SamplingParams(max_tokens=5, greedy=True))
        wait_for(lambda: tiny.metrics()["waiting"] == 1)
        assert tiny.metrics()["running"] == 2, [(q.status, len(q.generated), q.finish_reason, q.stopped, q.budget, len(q.prompt)) for q in tiny.scheduler.pool.seqs]
        cancels[0].set()
        finish = [e for e in first[0] if e.kind == "finish"][0]
        assert finish.finish_reason == "cancelled"
        events = list(queued)  # would hang if the cancelled slot were never freed
        assert events[-1].finish_reason == "length" and events[-1].usage["completion_tokens"] == 5
        assert tiny.metrics()["running"] == 1
        first[1].close()  # a caller that stops reading frees its slot as well
        wait_for(lambda: tiny.metrics()["running"] == 0)
    finally:
        tiny.stop_token_ids = tiny._stop_ids()


def test_cancel_while_waiting_finishes_cancelled_without_tokens(tiny):
    hold = [threading.Event(), threading.Event()]
    params = SamplingParams(max_tokens=4000, greedy=True)
    tiny.stop_token_ids = frozenset()
    try:
        busy = [tiny.stream([300 + i, 301], params, cancel=hold[i]) for i in range(2)]
        for s in busy:
            next(s)
        cancel = threading.Event()
        waiting = tiny.stream([900, 901], params, cancel=cancel)
        cancel.set()
        events = list(waiting)
        assert events[-1].finish_reason == "cancelled" and events[-1].usage["completion_tokens"] == 0
    finally:
        for h in hold:
            h.set()
        for s in busy:
            list(s)
        tiny.stop_token_ids = tiny._stop_ids()


def test_long_prompt_prefill_is_chunked_and_does_not_stall_a_running_stream(checkpoints):
    engine = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False, max_batch_tokens=64)
    engine.stop_token_ids = frozenset()
    sched = engine.scheduler
    steps: list[tuple[int, int]] = []  # (decoding rows, prefill budget) of every step that prefilled
    prefill = sched._prefill

    def spy(budget: int) -> None:
        steps.append((len(sched.pool), budget))
        prefill(budget)

    sched._prefill = spy
    cancel = threading.Event()
    running = engine.stream([1000 + i for i in range(10)], SamplingParams(max_tokens=4000, greedy=True),
                            cancel=cancel)
    next(running)
    steps.clear()
    long_prompt = [2000 + (i * 7) % 5000 for i in range(1000)]
    result = engine.generate([long_prompt], SamplingParams(max_tokens=2, greedy=True))[0]
    cancel.set()
    list(running)
    # 1,000 prompt tokens in chunks of 63: every one of those steps also decoded the running stream
    assert len(steps) >= 1000 // 63
    assert all(rows == 1 and budget == 63 for rows, budget in steps[: 1000 // 63])
    alone = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False, prefix_cache=False)
    alone.stop_token_ids = frozenset()
    assert alone.generate([long_prompt], SamplingParams(max_tokens=2, greedy=True))[0].token_ids == result.token_ids


def test_metrics_report_health(tiny):
    params = SamplingParams(max_tokens=20, greedy=True)
    tiny.generate([[1200 + i for i in range(40)], [1300 + i for i in range(7)]], params)
    m = tiny.metrics()
    assert m["running"] == 0 and m["waiting"] == 0 and m["kv_bytes"] == 0  # idle: KV memory given back
    assert m["tokens_per_s"] > 0
    assert m["scheduler"]["tokens_generated"] >= 2
    assert m["attention_entropy"] is not None and m["attention_entropy"] > 0
    assert set(m["prefix_cache"]) >= {"hits", "misses", "bytes", "hit_rate"}


def test_idle_loop_thread_exits_and_restarts_on_the_next_request(tiny, monkeypatch):
    import model_core.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "IDLE_EXIT_S", 0.05)
    params = SamplingParams(max_tokens=3, greedy=True)
    first = tiny.generate([[1500, 1501]], params)[0].token_ids
    tiny.scheduler._wake.set()  # a loop already waiting with the old timeout re-enters the wait
    wait_for(lambda: tiny.scheduler._thread is None)
    assert tiny.generate([[1500, 1501]], params)[0].token_ids == first


def test_zero_stays_the_plain_reference(checkpoints):
    zero = Engine.load(checkpoints["llama-untied"], profile="zero", progress=False)
    assert zero.scheduler is None and zero.metrics()["scheduler"] is None
    r1 = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False)
    params = SamplingParams(max_tokens=8, greedy=True)
    prompts = [[1000 + 3 * i for i in range(n)] for n in (5, 17, 33)]
    assert [r.token_ids for r in r1.generate(prompts, params)] == \
        [r.token_ids for r in zero.generate(prompts, params)]


def test_rows_of_different_lengths_stay_exact_when_fresh_memory_holds_nan(checkpoints, monkeypatch):
    """The CI failure of session 3: under three concurrent streams one row turned to token 0 halfway.
    A shorter row's masked key/value positions are still read by the fused kernel (weight 0 times the
    value), so memory recycled from the allocator holding a NaN pattern poisoned it. Make every fresh
    float allocation NaN, so the bug shows every time rather than by chance."""

    engine = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, prefix_cache=False)
    params = SamplingParams(max_tokens=16, greedy=True)
    short, long = [1000 + 37 * i for i in range(5)], [2000 + 11 * i for i in range(40)]
    alone = [engine.generate([p], params)[0].token_ids for p in (short, long)]

    real_empty = torch.empty

    def nan_empty(*args, **kwargs):  # what a recycled allocation may hold: any bit pattern, here NaN
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", nan_empty)
    together = [r.token_ids for r in engine.generate([short, long], params)]
    assert together == alone


def test_prompts_are_cut_only_at_fixed_positions_whatever_else_is_prefilling(checkpoints):
    """A prompt's prefill chunks end at multiples of max_batch_tokens (or at the prompt's end), alone or
    sharing steps with others: its numerics never depend on what else was scheduled (scheduler step 4)."""
    engine = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, prefix_cache=False,
                         max_batch_tokens=16)
    sched = engine.scheduler
    chunks: list[tuple[int, int, int]] = []  # (prompt length, start, end) of every prefill forward
    model = sched.model

    class Spy:  # the model, recording prefill forwards
        def __call__(self, ids, positions, cache, **kwargs):
            if ids.shape[0] == 1 and cache is not None and not hasattr(cache, "rows"):
                chunks.append((cache.keys.shape[3], int(positions[0, 0]), int(positions[0, -1]) + 1))
            return model(ids, positions, cache, **kwargs)

        def __getattr__(self, name):
            return getattr(model, name)

    sched.model = Spy()
    prompts = [[3000 + 11 * i + j for i in range(n)] for j, n in enumerate((5, 23, 40, 71, 9, 33))]
    engine.generate(prompts, SamplingParams(max_tokens=3, greedy=True))
    prefills = chunks  # decode forwards go through the pool's BatchView (it has `rows`), not recorded
    assert {length for length, _, _ in prefills} >= {5, 23, 40, 71, 9, 33}
    for length, start, end in prefills:
        assert start % 16 == 0, (length, start, end)
        assert end % 16 == 0 or end == length, (length, start, end)


def test_threads_sets_the_loop_threads_team_and_leaves_the_callers_alone(checkpoints) -> None:
    """`Engine.load(threads=N)`: the scheduler thread's forward passes run with N intra-op threads while
    the loading thread keeps its own setting (the serving recipe of model_core/scheduler.py, THREADS)."""
    caller = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        engine = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, threads=2)
        seen: list[tuple[str, int]] = []
        hook = engine.model.register_forward_hook(
            lambda *_: seen.append((threading.current_thread().name, torch.get_num_threads())))
        try:
            engine.generate([[5, 6, 7]], SamplingParams(max_tokens=3, greedy=True))
        finally:
            hook.remove()
        assert seen and {name for name, _ in seen} == {"model_core-scheduler"}
        assert {n for _, n in seen} == {2}
        assert torch.get_num_threads() == 1  # the caller's own team is untouched
        engine.scheduler.close()
    finally:
        torch.set_num_threads(caller)


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2"])
def test_threads_must_be_a_positive_integer(checkpoints, threads) -> None:
    with pytest.raises(ValueError, match="threads"):
        Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, threads=threads)
