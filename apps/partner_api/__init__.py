"""Partner REST API (/v1): OpenAI-compatible chat completions, conversations, keys, limits, contract."""
