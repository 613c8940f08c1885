"""Conversations, messages and turn orchestration: submit, generate (worker), stream, reconcile, chat UI."""
