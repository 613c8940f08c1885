"""The prompt-pack format and its validation: `pack_validate(path)` reads and checks one domain folder.

A pack folder holds `pack.yaml` and `evals/*.jsonl`. Validation runs in three layers, each error
naming the file and the field path so that a domain expert can fix it without reading code:

1. structure (JSON Schema, `PACK_SCHEMA` / `EVAL_CASE_SCHEMA`),
2. cross-field rules JSON Schema cannot say (regexes compile, rule ids unique, referenced refusal and
   escalation texts exist, the folder name matches `domain`),
3. the domain's regulatory floor (`DOMAIN_REQUIREMENTS`): texts the law or guidance in DOMAINS.md
   makes mandatory cannot be edited away by accident.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SCHEMA_VERSION = 1
EVAL_KINDS = ("must_answer", "must_refuse", "must_disclaim", "must_escalate")
RULE_ACTIONS = ("block", "refuse", "redact", "disclaim", "escalate", "flag")

_TEXT = {"type": "string", "minLength": 1}
_RULE_MATCHERS = [{"required": ["patterns"]}, {"required": ["keywords"]}]
_TEXT_MAP = {"type": "object", "minProperties": 1, "additionalProperties": _TEXT}

PACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "schema_version", "domain", "title", "description", "version", "language", "sampling",
        "instructions", "risk_controls", "disclaimer", "refusal", "escalation", "risk_rules",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "domain": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{1,31}$"},
        "title": {"type": "string", "minLength": 1, "maxLength": 80},
        "description": {"type": "string", "minLength": 1, "maxLength": 400},
        "version": {"type": "string", "minLength": 1, "maxLength": 64},
        "language": {"type": "string", "pattern": "^[a-z]{2}(-[A-Z]{2})?$"},
        "sampling": {
            "type": "object",
            "additionalProperties": False,
            "required": ["temperature", "top_p", "max_tokens"],
            "properties": {
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32768},
            },
        },
        "instructions": {"type": "string", "minLength": 200},
        "risk_controls": {"type": "array", "minItems": 1, "items": _TEXT},
        "disclaimer": _TEXT,
        "refusal": {**_TEXT_MAP, "required": ["default"]},
        "escalation": {**_TEXT_MAP, "required": ["human"]},
        "scope": {
            "type": "object",
            "additionalProperties": False,
            "required": ["topics"],
            "properties": {
                "summary": _TEXT,
                "topics": {"type": "array", "minItems": 1, "items": _TEXT},
                "examples": {"type": "array", "items": _TEXT},
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "risk_rules": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "description", "stage", "action"],
                "anyOf": _RULE_MATCHERS,
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{1,63}$"},
                    "description": _TEXT,
                    "stage": {"enum": ["input", "output"]},
                    "action": {"enum": list(RULE_ACTIONS)},
                    "patterns": {"type": "array", "minItems": 1, "items": _TEXT},
                    "keywords": {"type": "array", "minItems": 1, "items": _TEXT},
                    "refusal": _TEXT,
                    "escalation": _TEXT,
                    "message": _TEXT,
                },
            },
        },
    },
}

EVAL_CASE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "kind", "prompt"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"},
        "kind": {"enum": list(EVAL_KINDS)},
        "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
        "notes": {"type": "string"},
        "rule": {"type": "string"},
    },
}

# The regulatory floor per domain (see /work/shared/DOMAINS.md): (field path, phrase, why).
# Checked case-insensitively; `startswith:` phrases must open the text.
DOMAIN_REQUIREMENTS: dict[str, list[tuple[str, str, str]]] = {
    "legal": [
        ("disclaimer", "not a substitute for the advice of an attorney", "Tex. Gov't Code 81.101(c)"),
    ],
    "medical": [
        ("disclaimer", "not a diagnosis", "FDA clinical decision support guidance"),
        ("disclaimer", "clinician", "FDA CDS: say when to see a clinician"),
        ("disclaimer", "ai", "AI disclosure (California AB 489, SB 243)"),
        ("escalation.emergency", "startswith:call your local emergency number now", "emergencies first"),
        ("escalation.crisis", "988", "crisis protocol (SB 243): US 988 Suicide & Crisis Lifeline"),
        ("escalation.crisis", "local emergency number", "crisis protocol outside the US"),
    ],
    "finance": [
        ("disclaimer", "general", "FINRA 2111/Reg BI: education, not an individual recommendation"),
        ("disclaimer", "risk", "FINRA 2210: risk stated with any return figure"),
        ("escalation.crisis", "988", "crisis protocol (SB 243) applies to every domain"),
    ],
}

# The C loader when libyaml is present (several times faster); both are the *safe* loader.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PACK_VALIDATOR = Draft202012Validator(PACK_SCHEMA)
_EVAL_VALIDATOR = Draft202012Validator(EVAL_CASE_SCHEMA)


class PackValidationError(ValueError):
    """A pack file is invalid; `str()` reads `<file>: <field path>: <problem>`."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source, self.field, self.problem = source, field, problem
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")


def pack_validate(path: Path) -> dict[str, Any]:
    """Validate the pack folder `path` (or its `pack.yaml`) and return its data, eval cases included.

    Raises `PackValidationError` on the first problem, naming the file and the field path.
    """
    folder = path.parent if path.name == "pack.yaml" else path
    pack_file = folder / "pack.yaml"
    source = _display(pack_file)
    if not pack_file.is_file():
        raise PackValidationError(source, "", "file not found")
    try:
        raw = yaml.load(pack_file.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 - safe loader
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PackValidationError(source, "", f"not valid YAML ({exc})") from exc
    data = pack_data_validate(raw, source=source)
    if data["domain"] != folder.name:
        raise PackValidationError(source, "domain", f"must match the folder name {folder.name!r}")
    data["evals"] = evals_load(folder / "evals")
    return data


def pack_data_validate(data: Any, *, source: str) -> dict[str, Any]:
    """Validate pack content (as from YAML or a console edit); `source` names it in errors."""
    if not isinstance(data, dict):
        raise PackValidationError(source, "", "must be a mapping of fields")
    content = {key: value for key, value in data.items() if key != "evals"}
    _schema_check(_PACK_VALIDATOR, content, source)
    _rules_check(content, source)
    _requirements_check(content, source)
    if "evals" in data:
        _evals_check(data["evals"], source)
    return _messages_resolve(copy.deepcopy(data))


def evals_load(folder: Path) -> list[dict[str, Any]]:
    """Read every `*.jsonl` in `folder`; each line is one case. Errors name the file and line."""
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        raise PackValidationError(_display(folder), "", "no evaluation files (*.jsonl) found")
    cases: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for file in files:
        source = _display(file)
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{source}:{number}"
            try:
                case = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PackValidationError(where, "", f"not valid JSON ({exc.msg})") from exc
            _schema_check(_EVAL_VALIDATOR, case, where)
            if case["id"] in seen:
                first = seen[case["id"]]
                raise PackValidationError(where, "id", f"duplicate id {case['id']!r} (first in {first})")
            seen[case["id"]] = where
            cases.append({**case, "file": file.name})
    return cases


def pack_digest(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `data` (sorted keys, no whitespace): equal content, equal digest."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def pack_dirs(root: Path) -> list[Path]:
    """The domain folders under `root` (those holding a pack.yaml), sorted by name."""
    if not root.is_dir():
        raise PackValidationError(_display(root), "", "packs folder not found")
    return sorted(child for child in root.iterdir() if (child / "pack.yaml").is_file())


def _schema_check(validator: Draft202012Validator, instance: Any, source: str) -> None:
    # Report the deepest, then first-by-path error: the one a person can act on.
    errors = sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.path)), -len(e.path)))
    if not errors:
        return
    error = errors[0]
    raise PackValidationError(source, _field_path(error.absolute_path), _problem(error))


def _rules_check(data: dict[str, Any], source: str) -> None:
    seen: set[str] = set()
    for index, rule in enumerate(data["risk_rules"]):
        where = f"risk_rules[{index}]"
        if rule["id"] in seen:
            raise PackValidationError(source, f"{where}.id", f"duplicate rule id {rule['id']!r}")
        seen.add(rule["id"])
        for number, pattern in enumerate(rule.get("patterns", [])):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PackValidationError(source, f"{where}.patterns[{number}]", f"invalid regex ({exc})") from exc
        if rule["action"] == "escalate" and "escalation" not in rule:
            raise PackValidationError(source, f"{where}.escalation", "required when action is 'escalate'")
        if "escalation" in rule and rule["escalation"] not in data["escalation"]:
            known = ", ".join(sorted(data["escalation"]))
            raise PackValidationError(source, f"{where}.escalation", f"unknown escalation text (known: {known})")
        if "refusal" in rule and rule["refusal"] not in data["refusal"]:
            known = ", ".join(sorted(data["refusal"]))
            raise PackValidationError(source, f"{where}.refusal", f"unknown refusal text (known: {known})")


def _messages_resolve(data: dict[str, Any]) -> dict[str, Any]:
    """Give every rule that names a refusal or escalation text that text as its `message`.

    Packs name shared texts once (`escalation: crisis`); the safety pipeline reads the text a rule
    shows from the rule itself, so the stored version carries it resolved. An explicit `message` wins.
    """
    for rule in data["risk_rules"]:
        if "message" in rule:
            continue
        if "escalation" in rule:
            rule["message"] = data["escalation"][rule["escalation"]]
        elif "refusal" in rule:
            rule["message"] = data["refusal"][rule["refusal"]]
    return data


def _requirements_check(data: dict[str, Any], source: str) -> None:
    for field, phrase, reason in DOMAIN_REQUIREMENTS.get(data["domain"], []):
        value: Any = data
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str):
            raise PackValidationError(source, field, f"required for the {data['domain']} domain ({reason})")
        text = " ".join(value.lower().split())
        if phrase.startswith("startswith:"):
            ok = text.startswith(phrase.removeprefix("startswith:"))
            need = f"must begin with {phrase.removeprefix('startswith:')!r}"
        else:
            ok = re.search(rf"\b{re.escape(phrase)}\b", text) is not None
            need = f"must contain {phrase!r}"
        if not ok:
            raise PackValidationError(source, field, f"{need} ({reason})")


def _evals_check(cases: Any, source: str) -> None:
    if not isinstance(cases, list):
        raise PackValidationError(source, "evals", "must be a list of cases")
    for index, case in enumerate(cases):
        body = {key: value for key, value in case.items() if key != "file"} if isinstance(case, dict) else case
        _schema_check(_EVAL_VALIDATOR, body, f"{source}: evals[{index}]")


def _field_path(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _problem(error: Any) -> str:
    # jsonschema's messages quote the whole offending value; keep the common ones short and plain.
    validator, value = error.validator, error.validator_value
    if validator == "required":
        missing = [name for name in value if name not in (error.instance or {})]
        return f"missing required field {missing[0]!r}" if missing else error.message
    if validator in ("minimum", "maximum", "exclusiveMinimum") and error.parent is None:
        bounds = error.schema
        high = bounds.get("maximum")
        if "exclusiveMinimum" in bounds and high is not None:
            return f"must be greater than {bounds['exclusiveMinimum']} and at most {high} (got {error.instance!r})"
        if "minimum" in bounds and high is not None:
            return f"must be between {bounds['minimum']} and {high} (got {error.instance!r})"
    if validator == "enum":
        return f"must be one of {', '.join(map(str, value))} (got {error.instance!r})"
    if validator == "type":
        return f"must be of type {value} (got {type(error.instance).__name__})"
    if validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown field")
    if validator == "anyOf" and error.schema.get("anyOf") == _RULE_MATCHERS:
        return "needs 'patterns' or 'keywords'"
    if validator == "minItems":
        return f"must have at least {value} item{'s' if value != 1 else ''}"
    if validator == "pattern":
        return f"{error.instance!r} is not in the required format ({value})"
    if validator == "minLength":
        return "must not be empty" if value == 1 else f"is too short (at least {value} characters)"
    return error.message


def _display(path: Path) -> str:
    # Relative paths read better in errors ("domains/finance/pack.yaml") when run from the repo root.
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
