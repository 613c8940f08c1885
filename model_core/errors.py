"""Errors raised by model_core.

Every error a caller can trigger with bad input is one of these, with a message that names the
file, tensor or field at fault and what was expected. They carry no Django types on purpose:
`apps.inference` maps them onto `ApplicationError` codes.
"""

from __future__ import annotations


class ModelCoreError(Exception):
    """Base class of every error model_core raises on purpose."""


class CheckpointError(ModelCoreError):
    """A checkpoint is missing, broken or of a kind model_core does not serve.

    The message names the file, tensor or config field and what was expected, so an operator can
    fix the checkpoint without reading model_core's source.
    """

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        self.path = path
        self.field = field
        super().__init__(message)


class ContextLengthError(ModelCoreError, ValueError):
    """A prompt does not fit the profile's context window (4,096 tokens for Zero, the
    checkpoint's window for R1)."""

    def __init__(self, prompt_tokens: int, limit: int, profile: str) -> None:
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        self.profile = profile
        super().__init__(
            f"prompt of {prompt_tokens} tokens does not fit the {profile!r} profile's context window of "
            f"{limit} tokens (at least one token must remain for the answer); shorten the prompt"
        )
