"""Chat formats: a checkpoint's own Jinja chat template, rendered like transformers does, plus R1 rules.

Rendering copies the semantics of transformers' `apply_chat_template` (utils/chat_template_utils.py):
an `ImmutableSandboxedEnvironment` with `trim_blocks`, `lstrip_blocks` and the `loopcontrols`
extension; globals `raise_exception`, `strftime_now`, `dict`, `namespace`; a `tojson` filter that does
not HTML-escape; `bos_token`/`eos_token` (and any other special tokens given) in the context;
`tools` and `documents` None; message keys whose value is None dropped; a message's reasoning
exposed as `reasoning_content` (and `thinking`) as transformers aliases it. So any Hugging Face
checkpoint's template renders to the same text, and the same token ids, as transformers gives.

R1 rules, applied before rendering when the template is a DeepSeek-R1 one (DeepSeek-R1 model card):
- earlier reasoning never goes back into the prompt: `reasoning_content`/`thinking`/`reasoning` keys
  are removed and `<think>...</think>` is cut from assistant content (keeping what follows, as R1's
  own template does with `content.split('</think>')[-1]`, so ids stay identical to transformers');
- no system prompt: each system message's text moves to the start of the next user turn. This one
  changes the ids a template would give, so it is opt-in (`instructions_in_user_turn=True`): the engine
  applies it to the prompts it generates from, while `render` by default stays token-exact with
  transformers' `apply_chat_template`, system messages included;
- the generation prompt ends with `<think>\\n` (added when the template does not write it itself).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from model_core.reasoning import CLOSE_TAG, OPEN_TAG

__all__ = ["ChatFormat", "ChatTemplateError", "validate_messages"]

ROLES = frozenset({"system", "user", "assistant", "tool"})
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
_R1_GENERATION_SUFFIX = OPEN_TAG + "\n"


class ChatTemplateError(ValueError):
    """The chat template does not compile, or it refused the conversation (`raise_exception`)."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson HTML-escapes `<>&'`, which would change the prompt; transformers overrides it.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateDict:
    """`dict(...)` for templates without exposing the dict type itself (transformers does the same)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """Jinja's namespace, refusing underscore attributes so templates cannot reach interpreter internals."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - Jinja's own signature trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set namespace attribute {name!r}")


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Check a conversation and return plain-dict copies with None-valued keys dropped (as transformers
    does). A ValueError names the message index and the problem."""
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} objects")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be an object with 'role' and 'content', got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}")
        content = message.get("content")
        # A tool-calling assistant turn may have no text (OpenAI sends content null there).
        if not isinstance(content, str) and not (content is None and role == "assistant"
                                                 and message.get("tool_calls")):
            raise ValueError(f"messages[{i}].content must be a string, got {type(content).__name__}")
        clean.append({key: value for key, value in message.items() if value is not None})
    return clean


def _strip_reasoning(content: str) -> str:
    if CLOSE_TAG in content:
        return content.split(CLOSE_TAG)[-1]
    if content.lstrip().startswith(OPEN_TAG):
        return ""  # reasoning that never closed: nothing of it is an answer
    return content


def apply_r1_rules(messages: list[dict[str, Any]], *, instructions_in_user_turn: bool = True,
                   ) -> list[dict[str, Any]]:
    """The DeepSeek-R1 history rules (module docstring); returns new message dicts."""
    out: list[dict[str, Any]] = []
    waiting_system: list[str] = []
    for message in messages:
        message = {k: v for k, v in message.items() if k not in _REASONING_KEYS}
        if message["role"] == "system" and instructions_in_user_turn:
            waiting_system.append(message["content"])
            continue
        if message["role"] == "assistant" and isinstance(message.get("content"), str):
            message["content"] = _strip_reasoning(message["content"])
        if message["role"] == "user" and waiting_system:
            message["content"] = "\n\n".join([*waiting_system, message["content"]])
            waiting_system = []
        out.append(message)
    if waiting_system:
        # Instructions after the last user turn (or a conversation of instructions only): they join
        # the last user turn, or become one, rather than being lost.
        text = "\n\n".join(waiting_system)
        last_user = next((m for m in reversed(out) if m["role"] == "user"), None)
        if last_user is None:
            out.append({"role": "user", "content": text})
        else:
            last_user["content"] = last_user["content"] + "\n\n" + text
    return out


def _alias_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    # transformers exposes a message's reasoning under `reasoning_content` and `thinking` whatever
    # name it came in, so templates that read either one see it.
    reasoning = next((message[k] for k in _REASONING_KEYS if message.get(k) is not None), None)
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, "reasoning_content": reasoning}


class ChatFormat:
    """Renders conversations with a checkpoint's chat template; `is_r1=None` detects R1 templates."""

    def __init__(self, template: str, *, bos_token: str | None, eos_token: str | None,
                 is_r1: bool | None = None, special_tokens: Mapping[str, Any] | None = None) -> None:
        if not isinstance(template, str) or not template.strip():
            raise ChatTemplateError("the checkpoint has no chat template")
        try:
            self._template = _environment().from_string(template)
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(f"chat template does not compile (line {exc.lineno}): {exc.message}") from exc
        self.template = template
        self.is_r1 = self.detect_r1(template) if is_r1 is None else bool(is_r1)
        # transformers passes the whole special-tokens map (pad, unk, additional...); bos/eos win.
        self._context: dict[str, Any] = {**(special_tokens or {}), "bos_token": bos_token, "eos_token": eos_token}

    @staticmethod
    def detect_r1(template: str) -> bool:
        """DeepSeek-R1 templates (R1, R1-Distill-Qwen/Llama, R1-0528) use DeepSeek's role markers and
        cut reasoning at `</think>`; V3.1's hybrid template also does, but has a `thinking` switch."""
        return ("<｜Assistant｜>" in template and CLOSE_TAG in template
                and re.search(r"\bthinking\b", template) is None)

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, *,
               instructions_in_user_turn: bool = False, **template_kwargs: Any) -> str:
        """The prompt text for `messages`; for R1 checkpoints with the R1 rules applied (system messages
        folded into the next user turn only with `instructions_in_user_turn=True`)."""
        clean = validate_messages(messages)
        if self.is_r1:
            clean = apply_r1_rules(clean, instructions_in_user_turn=instructions_in_user_turn)
        clean = [_alias_reasoning(m) for m in clean]
        context = {**self._context, **template_kwargs}
        try:
            text = self._template.render(messages=clean, tools=None, documents=None,
                                         add_generation_prompt=add_generation_prompt, **context)
        except jinja2.exceptions.TemplateError as exc:
            raise ChatTemplateError(f"chat template refused the conversation: {exc}") from exc
        if self.is_r1 and add_generation_prompt and not text.endswith(_R1_GENERATION_SUFFIX):
            text = text + "\n" if text.endswith(OPEN_TAG) else text + _R1_GENERATION_SUFFIX
        return text
