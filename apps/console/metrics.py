"""Prometheus text exposition (format 0.0.4) of Verity's app and engine figures.

Written by hand (a handful of gauges does not justify a client library): counts per domain and status,
replies awaiting a worker, block/escalation rates, reply latency p50/p95 and what `apps.inference`
reports about the loaded engine. Label values are escaped as the format requires.
"""

from __future__ import annotations

from typing import Any

from apps.console.stats import app_counts, domain_stats
from apps.inference.services import engine_describe


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def gauge(self, name: str, help_text: str, value: float | int | None, /, **labels: Any) -> None:
        # Positional-only: a label may itself be called "name" (the engine's checkpoint name).
        if value is None:
            return
        if name not in self._declared:
            self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            self._declared.add(name)
        self.lines.append(f"{name}{_labels(labels)} {float(value):.6g}")


def metrics_text() -> str:
    out = _Exposition()
    counts = app_counts()
    for row in counts["conversations"]:
        out.gauge("verity_conversations", "Conversations stored, per domain.", row["n"], domain=row["domain"])
    for row in counts["messages"]:
        out.gauge("verity_messages", "Messages stored, per domain and status.", row["n"],
                  domain=row["conversation__domain"], status=row["status"])
    for row in counts["packs"]:
        out.gauge("verity_pack_versions", "Prompt pack versions, per domain and status.", row["n"],
                  domain=row["domain"], status=row["status"])
    out.gauge("verity_replies_pending", "Replies pending or streaming (the queue depth).", counts["pending"])
    for row in domain_stats():
        domain = row["domain"]
        out.gauge("verity_reply_block_ratio", "Share of replies blocked.", row["block_rate"], domain=domain)
        out.gauge("verity_reply_escalation_ratio", "Share of replies escalated.", row["escalation_rate"],
                  domain=domain)
        out.gauge("verity_reply_retraction_ratio", "Share of replies retracted.", row["retraction_rate"],
                  domain=domain)
        for q in ("50", "95"):
            out.gauge("verity_reply_latency_seconds", "Reply latency over recent replies.",
                      row[f"latency_p{q}_s"], domain=domain, quantile=f"0.{q}")
    engine = engine_describe()
    out.gauge("verity_engine_checkpoint_present", "1 when the model checkpoint exists.",
              int(bool(engine.get("checkpoint_present"))))
    for profile in engine.get("loaded_profiles", []):
        out.gauge("verity_engine_loaded", "1 for each engine profile loaded in this process.", 1, profile=profile)
    info = engine.get("info") or {}
    if info:
        out.gauge("verity_engine_info", "The loaded engine (labels carry the facts).", 1,
                  **{key: info.get(key, "") for key in ("name", "architecture", "profile", "dtype", "device")})
        out.gauge("verity_engine_context_length", "Context window of the loaded engine, tokens.",
                  info.get("context_length"))
    return "\n".join(out.lines) + "\n"
