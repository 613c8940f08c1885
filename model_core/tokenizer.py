"""The tokenizer: a thin wrapper over the `tokenizers` library, plus streaming detokenisation.

Both checkpoint formats end up here: a Hugging Face directory brings its `tokenizer.json`, a GGUF file
gets one rebuilt from its metadata (gguf_loader.py). Encoding and decoding are exactly those of the
`tokenizers` object, which is what transformers runs underneath, so ids match transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from model_core.errors import CheckpointError


class Tokenizer:
    """encode/decode plus the special tokens the engine needs (bos, eos, the chat template)."""

    def __init__(self, backend: HFTokenizer, *, bos_token: str | None = None, eos_token: str | None = None,
                 chat_template: str | None = None) -> None:
        self.backend = backend
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.chat_template = chat_template
        self.bos_token_id = backend.token_to_id(bos_token) if bos_token else None
        self.eos_token_id = backend.token_to_id(eos_token) if eos_token else None

    @classmethod
    def from_dir(cls, directory: Path) -> Tokenizer:
        """Read `tokenizer.json` and `tokenizer_config.json` (and `chat_template.jinja` if present)."""
        tok_file = directory / "tokenizer.json"
        if not tok_file.is_file():
            raise CheckpointError(f"{tok_file}: file is missing; expected the tokenizer in tokenizers' JSON format",
                                  path=str(tok_file))
        try:
            backend = HFTokenizer.from_file(str(tok_file))
        except Exception as exc:  # the library raises a bare Exception on malformed JSON
            raise CheckpointError(f"{tok_file}: cannot be read as a tokenizer ({exc})", path=str(tok_file)) from exc
        cfg: dict = {}
        cfg_file = directory / "tokenizer_config.json"
        if cfg_file.is_file():
            try:
                cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise CheckpointError(f"{cfg_file}: invalid JSON ({exc})", path=str(cfg_file)) from exc
        template = cfg.get("chat_template")
        if isinstance(template, list):  # several named templates: the "default" one is the chat one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        jinja_file = directory / "chat_template.jinja"
        if template is None and jinja_file.is_file():
            template = jinja_file.read_text(encoding="utf-8")
        return cls(backend, bos_token=_token_text(cfg.get("bos_token")), eos_token=_token_text(cfg.get("eos_token")),
                   chat_template=template)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def save(self, directory: Path) -> None:
        self.backend.save(str(directory / "tokenizer.json"))


def _token_text(value: object) -> str | None:
    """tokenizer_config stores special tokens as a string or as an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas, never splitting a UTF-8 character.

    Decoding the whole list each step would cost O(n) per token; instead it decodes a short window
    (from a few tokens back, so merges of byte-level pieces and leading spaces come out right) and
    emits the new suffix once it no longer ends in an incomplete character.
    """

    def __init__(self, tokenizer: Tokenizer, prefix_ids: list[int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = list(prefix_ids or [])
        # the last few prompt tokens give the decoder context (e.g. whether a space is leading)
        self.prefix_offset = max(len(self.ids) - 5, 0)
        self.read_offset = len(self.ids)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        prefix_text = decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = decode(self.ids[self.prefix_offset:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is left at the end (an incomplete character is emitted as U+FFFD)."""
        prefix_text = self.tokenizer.decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = self.tokenizer.decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        return new_text[len(prefix_text):] if len(new_text) > len(prefix_text) else ""
