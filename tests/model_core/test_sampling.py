"""Sampling: parameter validation, the logits processors on crafted logits, seeded sampling, stop strings."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.sampling import (
    Sampler,
    SamplingParams,
    StopMatcher,
    build_processors,
    min_p_processor,
    penalty_processor,
    sample_rows,
    top_k_processor,
    top_p_processor,
)


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits)).flatten().tolist())


def from_probs(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs).log()


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", 0), ("max_tokens", 2.5), ("temperature", -1), ("temperature", math.nan),
    ("temperature", math.inf), ("top_p", 0), ("top_p", 1.5), ("top_k", -1), ("top_k", True),
    ("min_p", -0.1), ("min_p", 1.1), ("repetition_penalty", 0), ("presence_penalty", 2.5),
    ("frequency_penalty", -3), ("seed", "42"), ("seed", 1.0), ("stop", [""]), ("stop", [1]),
    ("stop_token_ids", [-1]), ("stop_token_ids", ["2"]), ("greedy", "yes"),
    ("response_format", {"type": "xml"}), ("response_format", "json"),
])
def test_out_of_range_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be .*got {re.escape(repr(value))}$"):
        SamplingParams(**{field: value})


def test_error_message_reads_naturally() -> None:
    with pytest.raises(ValueError, match=r"^temperature must be >= 0, got -1$"):
        SamplingParams(temperature=-1)


def test_temperature_zero_is_greedy_and_a_single_stop_string_is_a_list() -> None:
    params = SamplingParams(temperature=0, stop="\n\n", response_format={"type": "json_object"})
    assert params.greedy and params.is_greedy
    assert params.stop == ["\n\n"]
    assert SamplingParams().stop == [] and SamplingParams().stop is not SamplingParams().stop


# ----------------------------------------------------------------------------- processors


def test_top_k_keeps_the_k_largest_and_all_ties_at_the_kth() -> None:
    logits = torch.tensor([1.0, 5.0, 3.0, 4.0, 2.0])
    assert kept(top_k_processor(2)(None, logits)) == {1, 3}
    assert kept(top_k_processor(3)(None, logits)) == {1, 2, 3}
    assert kept(top_k_processor(2)(None, torch.tensor([5.0, 5.0, 5.0, 1.0]))) == {0, 1, 2}
    assert kept(top_k_processor(99)(None, logits)) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize(("top_p", "expected"), [(0.4, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2}), (0.99, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_reaching_the_mass(top_p: float, expected: set[int]) -> None:
    logits = from_probs([0.5, 0.3, 0.15, 0.05])
    assert kept(top_p_processor(top_p)(None, logits)) == expected
    shuffled = logits[[3, 1, 0, 2]]  # order of the vocabulary must not matter
    assert kept(top_p_processor(top_p)(None, shuffled)) == {[3, 1, 0, 2].index(i) for i in expected}


@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0])
@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.999])
def test_top_p_on_a_large_vocabulary_matches_a_full_sort(scale: float, top_p: float) -> None:
    """Flat distributions put the nucleus far beyond the first search window (64 tokens)."""
    logits = torch.randn(2, 5000, generator=torch.Generator().manual_seed(int(scale * 100))) * scale
    got = top_p_processor(top_p)(None, logits)
    for row in range(2):
        probs, order = torch.sort(torch.softmax(logits[row], -1), descending=True)
        n_keep = int(((torch.cumsum(probs, -1) - probs) < top_p).sum())
        assert kept(got[row]) == set(order[:n_keep].tolist())


@pytest.mark.parametrize(("min_p", "expected"), [(0.5, {0, 1}), (0.2, {0, 1, 2}), (0.05, {0, 1, 2, 3}), (1.0, {0})])
def test_min_p_keeps_tokens_at_least_min_p_times_the_top(min_p: float, expected: set[int]) -> None:
    assert kept(min_p_processor(min_p)(None, from_probs([0.5, 0.3, 0.15, 0.05]))) == expected


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits() -> None:
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    out = penalty_processor(repetition=2.0)([0, 1, 1], logits)
    assert out.tolist() == [1.0, -4.0, 1.0, 0.5]
    assert logits.tolist() == [2.0, -2.0, 1.0, 0.5], "the caller's logits are not modified"


def test_presence_and_frequency_penalties_count_occurrences() -> None:
    out = penalty_processor(presence=0.5, frequency=0.25)(torch.tensor([0, 1, 1]), torch.zeros(4))
    assert out.tolist() == [-0.75, -1.0, 0.0, 0.0]


def test_penalties_per_row_in_a_batch() -> None:
    out = penalty_processor(presence=1.0)([[0], [2, 3]], torch.zeros(2, 4))
    assert out.tolist() == [[-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, -1.0]]


def test_neutral_parameters_add_no_processors() -> None:
    assert build_processors(SamplingParams()) == []
    assert len(build_processors(SamplingParams(top_k=5, top_p=0.9, min_p=0.1, temperature=0.6))) == 4
    # Greedy ignores the warpers (they never change the arg-max) but not the penalties.
    assert len(build_processors(SamplingParams(greedy=True, top_k=5, repetition_penalty=1.3))) == 1


# ----------------------------------------------------------------------------- sampler


def test_greedy_is_argmax() -> None:
    logits = torch.randn(5, 1000, generator=torch.Generator().manual_seed(0))
    for params in (SamplingParams(greedy=True), SamplingParams(temperature=0)):
        sampler = Sampler(params)
        assert [sampler.sample(row, []) for row in logits] == logits.argmax(-1).tolist()


def test_greedy_with_repetition_penalty_avoids_the_repeated_token() -> None:
    assert Sampler(SamplingParams(greedy=True, repetition_penalty=2.0)).sample(torch.tensor([3.0, 2.0]), [0]) == 1


def draw(params: SamplingParams, n: int = 40) -> list[int]:
    sampler, logits = Sampler(params), torch.zeros(50)  # uniform: every draw is pure randomness
    return [sampler.sample(logits, []) for _ in range(n)]


def test_same_seed_same_tokens_whatever_the_global_rng() -> None:
    torch.manual_seed(1)
    first = draw(SamplingParams(seed=1234))
    torch.manual_seed(999)
    torch.rand(10)
    assert draw(SamplingParams(seed=1234)) == first
    assert draw(SamplingParams(seed=1235)) != first
    assert draw(SamplingParams()) != draw(SamplingParams()), "no seed: fresh randomness each time"


def test_sampling_follows_the_distribution() -> None:
    sampler = Sampler(SamplingParams(seed=7))
    logits = from_probs([0.7, 0.2, 0.1])
    counts = torch.bincount(torch.tensor([sampler.sample(logits, []) for _ in range(4000)]), minlength=3)
    assert torch.allclose(counts / 4000, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


def test_sampled_tokens_stay_inside_the_kept_set() -> None:
    logits = torch.tensor([1.0, 5.0, 3.0, 4.5, 2.0])
    sampler = Sampler(SamplingParams(top_k=2, temperature=5.0, seed=3))
    assert set(sampler.sample(logits, []) for _ in range(300)) == {1, 3}
    sampler = Sampler(SamplingParams(min_p=0.5, seed=3))
    assert set(sampler.sample(from_probs([0.5, 0.3, 0.15, 0.05]), []) for _ in range(300)) == {0, 1}


def test_extra_processors_run_first_and_fully_masked_logits_raise() -> None:
    def only_2_and_3(ids: object, logits: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(logits, -math.inf)
        mask[..., 2:4] = 0
        return logits + mask

    sampler = Sampler(SamplingParams(top_k=1, seed=0), processors=[only_2_and_3])
    assert sampler.sample(torch.tensor([9.0, 8.0, 1.0, 2.0]), []) == 3  # top-k over the allowed tokens
    banned = Sampler(SamplingParams(seed=0), processors=[lambda ids, lg: torch.full_like(lg, -math.inf)])
    with pytest.raises(RuntimeError, match="every logit was masked"):
        banned.sample(torch.zeros(4), [])
    with pytest.raises(RuntimeError, match="every logit was masked"):
        Sampler(SamplingParams(greedy=True), processors=[lambda ids, lg: torch.full_like(lg, -math.inf)]).sample(
            torch.zeros(4), [])


def test_batched_forms_match_one_by_one() -> None:
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(5))
    rows = [[1, 2], [], [7]]
    params = SamplingParams(seed=11, top_p=0.9, presence_penalty=1.0)
    expected = [Sampler(params).sample(logits[i], rows[i]) for i in range(3)]
    # Same parameters for every row (n > 1): one generator, rows drawn together.
    assert len(Sampler(params).sample_batch(logits, rows)) == 3
    greedy = Sampler(SamplingParams(greedy=True)).sample_batch(logits, rows)
    assert greedy == logits.argmax(-1).tolist()
    # A continuous batch: each row has its own sampler, as if sampled alone.
    samplers = [Sampler(SamplingParams(greedy=True)), Sampler(params), Sampler(params)]
    got = sample_rows(samplers, logits, rows)
    assert got[0] == int(logits[0].argmax())
    assert got[1:] == expected[1:]


# ----------------------------------------------------------------------------- stop strings


def test_stop_string_split_across_tokens_is_never_emitted() -> None:
    matcher = StopMatcher(["\n\nUser:"])
    outputs = [matcher.feed(t) for t in ["Hello", " world", "\n", "\nUs", "er:", " more"]]
    assert outputs == [("Hello", False), (" world", False), ("", False), ("", False), ("", True), ("", True)]
    assert matcher.flush() == "" and matcher.matched == "\n\nUser:"


def test_held_text_is_released_when_it_stops_matching() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("go ST") == ("go ", False)
    assert matcher.feed("ILL") == ("STILL", False)
    assert matcher.feed("xyz") == ("xyz", False)
    assert matcher.feed("ST") == ("", False)
    assert matcher.flush() == "ST" and not matcher.stopped


def test_a_longer_stop_string_that_starts_earlier_wins() -> None:
    """"b" is complete after "ab", but "abc" may still start at 0: wait, as the whole text would stop there."""
    matcher = StopMatcher(["abc", "b"])
    assert matcher.feed("xab") == ("x", False)
    assert matcher.feed("c!") == ("", True) and matcher.matched == "abc"
    matcher = StopMatcher(["abc", "b"])
    assert matcher.feed("xab") == ("x", False)
    assert matcher.feed("d") == ("a", True) and matcher.matched == "b"
    matcher = StopMatcher(["abc", "b"])
    assert matcher.feed("xab") == ("x", False)
    assert matcher.flush() == "a" and matcher.matched == "b"


def test_no_stop_strings_passes_text_through() -> None:
    matcher = StopMatcher([])
    assert matcher.feed("anything") == ("anything", False) and matcher.flush() == ""


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab\nc", max_size=40),
    stops=st.lists(st.text(alphabet="ab\nc", min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=20),
)
def test_stop_matching_does_not_depend_on_chunking(text: str, stops: list[str], cuts: list[int]) -> None:
    """Output = text before the earliest stop string, never a stop string, for any token cuts."""
    hits = [i for i in (text.find(s) for s in stops) if i != -1]
    expected = text[:min(hits)] if hits else text
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    matcher, shown = StopMatcher(stops), ""
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece, stopped = matcher.feed(text[a:b])
        shown += piece
        assert expected.startswith(shown)
        if stopped:
            break
    shown += matcher.flush()
    assert shown == expected
    assert matcher.stopped == bool(hits)
