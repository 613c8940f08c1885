"""Shared kernel: base models, ApplicationError and its JSON rendering, request parsing, middleware."""
