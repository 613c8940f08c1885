"""ReasoningSplitter: the reasoning/answer split of a streamed R1 completion, whatever the token cuts.

The property tests compare the streaming splitter, fed random chunkings, with `expected_split`, a
direct (non-streaming) statement of the rules in model_core/reasoning.py's docstring.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.reasoning import ReasoningSplitter, prompt_opens_reasoning

OPEN, CLOSE = "<think>", "</think>"
LONGEST_PARTIAL_TAG = len(CLOSE) - 1


def expected_split(text: str, starts_in_reasoning: bool) -> tuple[str, str]:
    """(reasoning, answer) of a whole completion, computed without streaming."""
    reasoning = answer = ""
    in_reasoning = skip = starts_in_reasoning
    while True:
        if skip:
            text = text.lstrip()
        if in_reasoning:
            while text.startswith(OPEN):  # the model repeating the block's opening tag
                text = text[len(OPEN):].lstrip()
            j = text.find(CLOSE)
            if j == -1:
                return reasoning + text, answer
            reasoning, text = reasoning + text[:j], text[j + len(CLOSE):]
        else:
            i, j = text.find(OPEN), text.find(CLOSE)
            if i == -1 and j == -1:
                return reasoning, answer + text
            if j != -1 and (i == -1 or j < i):  # stray closing tag: dropped, what follows is answer
                answer, text = answer + text[:j], text[j + len(CLOSE):]
                skip = True
                continue
            answer, text = answer + text[:i], text[i + len(OPEN):]
        in_reasoning, skip = not in_reasoning, True


def run(chunks: list[str], starts_in_reasoning: bool) -> tuple[str, str, list[tuple[str, str]]]:
    splitter = ReasoningSplitter(starts_in_reasoning)
    pieces = [p for chunk in chunks for p in splitter.feed(chunk)] + splitter.flush()
    reasoning = "".join(t for k, t in pieces if k == "reasoning")
    answer = "".join(t for k, t in pieces if k == "answer")
    return reasoning, answer, pieces


def chunk(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# Texts built from tag fragments, whole tags, whitespace and words, so tags and near-tags land
# everywhere, including split between chunks.
fragments = st.sampled_from([OPEN, CLOSE, "<", "</", "</th", "<thi", "think>", "</think", ">", "/",
                             "\n", "\n\n", " ", "a", "Hello", "2+2=4", "é≠", "<b>"])
texts = st.lists(fragments, max_size=24).map("".join)
cut_lists = st.lists(st.integers(min_value=0, max_value=400), max_size=30)


@settings(max_examples=300, deadline=None)
@given(text=texts, cuts=cut_lists, starts=st.booleans())
def test_split_does_not_depend_on_chunking(text: str, cuts: list[int], starts: bool) -> None:
    reasoning, answer, _ = run(chunk(text, cuts), starts)
    assert (reasoning, answer) == expected_split(text, starts)


@settings(max_examples=300, deadline=None)
@given(text=texts, cuts=cut_lists, starts=st.booleans())
def test_nothing_is_shown_early_or_held_back_long(text: str, cuts: list[int], starts: bool) -> None:
    """After every chunk, what was emitted is a prefix of the final streams (so no partial tag, nor any
    text, is ever taken back), and at most a partial tag's worth of characters is still held."""
    final_r, final_a = expected_split(text, starts)
    splitter = ReasoningSplitter(starts)
    got_r = got_a = ""
    seen = ""
    for piece_text in chunk(text, cuts):
        seen += piece_text
        for kind, t in splitter.feed(piece_text):
            assert t, "empty pieces are never emitted"
            if kind == "reasoning":
                got_r += t
            else:
                got_a += t
        assert final_r.startswith(got_r) and final_a.startswith(got_a)
        now_r, now_a = expected_split(seen, starts)
        assert now_r.startswith(got_r) and now_a.startswith(got_a)
        assert (len(now_r) - len(got_r)) + (len(now_a) - len(got_a)) <= LONGEST_PARTIAL_TAG


@settings(max_examples=200, deadline=None)
@given(reasoning=st.text(st.characters(blacklist_characters="<"), max_size=40),
       answer=st.text(st.characters(blacklist_characters="<"), max_size=40),
       cuts=cut_lists)
def test_r1_completion_char_by_char_and_random_tokens(reasoning: str, answer: str, cuts: list[int]) -> None:
    """The R1 shape: prompt ended with `<think>\\n`, output is reasoning, `\\n</think>\\n\\n`, answer."""
    text = reasoning + "\n</think>\n\n" + answer
    for chunks in (list(text), chunk(text, cuts)):
        got_r, got_a, pieces = run(chunks, starts_in_reasoning=True)
        assert got_r == (reasoning + "\n").lstrip()
        assert got_a == answer.lstrip()
        assert all("<" not in t for _, t in pieces)


def test_missing_opening_tag_is_tolerated() -> None:
    got_r, got_a, _ = run(["Let me", " think.\n</th", "ink>\n\n", "It is 4."], starts_in_reasoning=True)
    assert (got_r, got_a) == ("Let me think.\n", "It is 4.")


def test_opening_tag_when_not_starting_in_reasoning() -> None:
    got_r, got_a, pieces = run(["<", "th", "ink>\nhmm", "</", "think>\n", "\nDone"], starts_in_reasoning=False)
    assert (got_r, got_a) == ("hmm", "Done")
    assert pieces == [("reasoning", "hmm"), ("answer", "Done")]


def test_repeated_opening_tag_is_swallowed() -> None:
    got_r, got_a, _ = run(["<think>\n", "plan", "</think>", "ok"], starts_in_reasoning=True)
    assert (got_r, got_a) == ("plan", "ok")


def test_text_without_tags_is_all_answer_verbatim() -> None:
    """Raw continuations (Zero profile, non-R1 models) keep their leading space."""
    got_r, got_a, _ = run([" Paris", " is", " <b>nice</b>"], starts_in_reasoning=False)
    assert (got_r, got_a) == ("", " Paris is <b>nice</b>")


def test_partial_tag_at_end_of_stream_is_released_as_text() -> None:
    splitter = ReasoningSplitter(starts_in_reasoning=True)
    assert splitter.feed("x < y and </thi") == [("reasoning", "x < y and ")]
    assert splitter.flush() == [("reasoning", "</thi")]
    assert not splitter.saw_close


def test_a_second_reasoning_block_after_the_answer_started_is_reasoning_not_answer() -> None:
    """A weak model thinking twice: the customer never sees `<think>` or what is inside it."""
    got_r, got_a, pieces = run(["Plan.</think>\n\nYou are talking to Verity.\n\n<th", "ink>\nI must decline.",
                                "\n</think>\n\nHere is the", " answer. </think>Done."], starts_in_reasoning=True)
    assert got_r == "Plan.I must decline.\n"
    assert got_a == "You are talking to Verity.\n\nHere is the answer. Done."
    assert all("<" not in text for _, text in pieces)


def test_unclosed_reasoning_stays_reasoning() -> None:
    splitter = ReasoningSplitter(starts_in_reasoning=True)
    pieces = splitter.feed("still thinking") + splitter.flush()
    assert pieces == [("reasoning", "still thinking")]
    assert splitter.in_reasoning and not splitter.saw_close


def test_prompt_opens_reasoning() -> None:
    assert prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜><think>\n")
    assert not prompt_opens_reasoning("<|im_start|>assistant\n")
    assert not prompt_opens_reasoning("<｜Assistant｜></think>")
