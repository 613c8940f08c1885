"""The vocabulary side of constrained decoding: exact token bytes, a byte trie and string stats.

A constraint must know the exact bytes each token id contributes to the output. Decoding a token
on its own is not enough for byte-level BPE (GPT-2 / Llama-3 / Qwen / SmolLM2 style), where a token
may carry half a UTF-8 character and decodes to U+FFFD alone. ``token_bytes_from_pieces`` maps the
vocabulary pieces back to bytes: byte-level pieces through the inverse of GPT-2's
``bytes_to_unicode`` table, SentencePiece pieces through ``▁`` -> space and ``<0xNN>`` -> byte.

``TokenVocabulary`` precomputes, once per vocabulary, the trie of token byte strings used to find
allowed tokens and, for the JSON-string fast path, each token's character count when it is "clean"
(complete UTF-8 with no quote, backslash or control character) or else its clean prefix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


_BYTE_DECODER = {c: b for b, c in _bytes_to_unicode().items()}


def token_bytes_from_pieces(
    pieces: Sequence[str | None], *, special_ids: Iterable[int] = (), byte_level: bool | None = None,
) -> list[bytes | None]:
    """Exact output bytes per token id from the tokenizer's vocabulary pieces.

    ``pieces[i]`` is the piece string of id ``i`` (``tokenizer.convert_ids_to_tokens`` /
    ``Tokenizer.id_to_token``); ``special_ids`` (control tokens such as ``<|im_end|>``) map to
    ``None`` so a constraint never emits them as text. ``byte_level=None`` detects the scheme: a
    vocabulary whose pieces all live in the GPT-2 byte alphabet is byte-level.
    """
    special = set(special_ids)
    if byte_level is None:
        sample = [p for i, p in enumerate(pieces) if p and i not in special][:5000]
        byte_level = bool(sample) and all(all(ch in _BYTE_DECODER for ch in p) for p in sample)
    out: list[bytes | None] = []
    for i, piece in enumerate(pieces):
        if piece is None or i in special or piece == "":
            out.append(None)
        elif byte_level:
            if all(ch in _BYTE_DECODER for ch in piece):
                out.append(bytes(_BYTE_DECODER[ch] for ch in piece))
            else:  # an added non-special token stored as plain text
                out.append(piece.encode("utf-8"))
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:5], 16)]))
        else:
            out.append(piece.replace("▁", " ").encode("utf-8"))
    return out


def token_bytes_from_tokenizer(tokenizer: Any) -> list[bytes | None]:
    """Token bytes for a transformers tokenizer or a ``tokenizers.Tokenizer``."""
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        size = len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        special = set(tokenizer.all_special_ids)
        special |= {i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special}
    else:
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        pieces = [tokenizer.id_to_token(i) for i in range(size)]
        special = {i for i, tok in tokenizer.get_added_tokens_decoder().items() if tok.special}
    return token_bytes_from_pieces(pieces, special_ids=special)


def _clean_prefix(data: bytes) -> tuple[int, int]:
    """(bytes, chars) of the longest prefix made of complete, JSON-string-plain characters."""
    i = chars = 0
    n_bytes = len(data)
    while i < n_bytes:
        b = data[i]
        if b < 0x80:
            if b < 0x20 or b in (0x22, 0x5C):
                break
            i += 1
        else:
            width = 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
            chunk = data[i:i + width]
            if width == 0 or len(chunk) < width:
                break
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                break
            i += width
        chars += 1
    return i, chars


LONG_TOKEN_BYTES = 16


class VocabPart:
    """A subset of the vocabulary: its byte trie and JSON-string statistics.

    ``trie`` nodes are ``[children: dict[byte, node], token_ids: list]``; ``clean_chars[id]`` is
    the character count of a clean token of this part (``-1`` otherwise); ``unclean`` lists
    ``(id, clean_prefix_bytes, clean_prefix_chars)`` for the part's other tokens.
    """

    def __init__(self, size: int) -> None:
        self.trie: list = [{}, []]
        self.clean_chars = np.full(size, -1, dtype=np.int32)
        self.unclean: list[tuple[int, int, int]] = []

    def add(self, tid: int, data: bytes) -> None:
        node = self.trie
        for byte in data:
            nxt = node[0].get(byte)
            if nxt is None:
                nxt = node[0][byte] = [{}, []]
            node = nxt
        node[1].append(tid)
        prefix_bytes, prefix_chars = _clean_prefix(data)
        if prefix_bytes == len(data):
            self.clean_chars[tid] = prefix_chars
        else:
            self.unclean.append((tid, prefix_bytes, prefix_chars))


class TokenVocabulary:
    """Token bytes + EOS ids, split into short and long tokens, each part indexed.

    Masks for short tokens (at most ``LONG_TOKEN_BYTES`` bytes) are cached per canonical state
    (see ``Grammar.mask_key``); the ~0.3% of longer tokens (runs of spaces, dashes) are checked
    against the exact state at every step, which keeps the canonical window, and so the cache,
    effective.
    """

    _cache: dict[tuple[int, tuple[int, ...]], tuple[Any, TokenVocabulary]] = {}
    _lock = threading.Lock()

    def __init__(self, tokens: Sequence[bytes | str | None], eos_ids: Iterable[int]) -> None:
        self.eos_ids = frozenset(int(e) for e in eos_ids)
        if not self.eos_ids:
            raise ValueError("a constraint needs at least one EOS token id to end the output")
        self.tokens: list[bytes | None] = [
            (t.encode("utf-8") if isinstance(t, str) else t) or None for t in tokens
        ]
        self.short = VocabPart(len(self.tokens))
        self.long = VocabPart(len(self.tokens))
        for tid, data in enumerate(self.tokens):
            if data is None or tid in self.eos_ids:
                self.tokens[tid] = None
            elif len(data) <= LONG_TOKEN_BYTES:
                self.short.add(tid, data)
            else:
                self.long.add(tid, data)

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def get(cls, tokens: Sequence[bytes | str | None] | TokenVocabulary, eos_ids: Iterable[int]) -> TokenVocabulary:
        """The cached index of ``tokens`` (built on first use; keyed by list identity and EOS ids)."""
        eos = tuple(sorted(int(e) for e in eos_ids))
        if isinstance(tokens, TokenVocabulary):
            if eos and set(eos) != tokens.eos_ids:
                raise ValueError("eos_ids differ from the prebuilt TokenVocabulary's")
            return tokens
        key = (id(tokens), eos)
        with cls._lock:
            hit = cls._cache.get(key)
            if hit is not None and hit[0] is tokens and len(hit[1]) == len(tokens):
                return hit[1]
        vocab = cls(tokens, eos)
        with cls._lock:
            if len(cls._cache) >= 8:
                cls._cache.pop(next(iter(cls._cache)))
            cls._cache[key] = (tokens, vocab)  # holds the list so its id is not reused
        return vocab


_VOCABS: dict[tuple[int, tuple[int, ...]], tuple[Any, TokenVocabulary]] = {}
_VOCABS_LOCK = threading.Lock()


def vocabulary_for_tokenizer(tokenizer: Any, eos_ids: Iterable[int]) -> TokenVocabulary:
    """The (cached) constraint vocabulary of an engine tokenizer.

    Accepts ``model_core.tokenizer.Tokenizer`` (uses its ``backend``), a ``tokenizers.Tokenizer`` or
    a transformers tokenizer. Build it once per engine: it costs about a second for 50k tokens.
    """
    backend = getattr(tokenizer, "backend", tokenizer)
    eos = tuple(sorted(int(e) for e in eos_ids))
    key = (id(backend), eos)
    with _VOCABS_LOCK:
        hit = _VOCABS.get(key)
        if hit is not None and hit[0] is backend:
            return hit[1]
    vocab = TokenVocabulary(token_bytes_from_tokenizer(backend), eos)
    with _VOCABS_LOCK:
        if len(_VOCABS) >= 8:
            _VOCABS.pop(next(iter(_VOCABS)))
        _VOCABS[key] = (backend, vocab)
    return vocab
