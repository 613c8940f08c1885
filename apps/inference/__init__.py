"""The only app that imports model_core: engine lifecycle (one per process), sampling, token counting."""
