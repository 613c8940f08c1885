"""pack_validate: the real packs pass; a broken pack is refused naming the file and the field path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.prompt_packs.schema import PackValidationError, pack_data_validate, pack_digest, pack_validate
from tests.apps.prompt_packs.conftest import DOMAINS, REAL_DOMAINS, pack_yaml_edit


@pytest.mark.parametrize("domain", REAL_DOMAINS)
def test_real_pack_validates_with_its_evals(domain):
    data = pack_validate(DOMAINS / domain)
    assert data["domain"] == domain
    assert data["sampling"] == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 1024}
    assert len(data["evals"]) >= 40
    assert pack_validate(DOMAINS / domain / "pack.yaml") == data  # the folder or its pack.yaml


def _refused(root: Path, domain: str) -> PackValidationError:
    with pytest.raises(PackValidationError) as caught:
        pack_validate(root / domain)
    return caught.value


def test_temperature_out_of_range_names_file_and_field(packs_root):
    pack_yaml_edit(packs_root, "finance", lambda d: d["sampling"].update(temperature=3.5))
    error = _refused(packs_root, "finance")
    assert error.source.endswith("finance/pack.yaml")
    assert error.field == "sampling.temperature"
    assert str(error).endswith("finance/pack.yaml: sampling.temperature: must be between 0 and 2 (got 3.5)")


def test_missing_field_is_named(packs_root):
    pack_yaml_edit(packs_root, "legal", lambda d: d.pop("disclaimer"))
    error = _refused(packs_root, "legal")
    assert "missing required field 'disclaimer'" in str(error)


def test_bad_regex_names_the_rule_and_pattern(packs_root):
    pack_yaml_edit(packs_root, "medical", lambda d: d["risk_rules"][2]["patterns"].__setitem__(0, "(unclosed"))
    error = _refused(packs_root, "medical")
    assert error.field == "risk_rules[2].patterns[0]"
    assert "invalid regex" in error.problem


def test_unknown_action_is_refused(packs_root):
    pack_yaml_edit(packs_root, "finance", lambda d: d["risk_rules"][0].update(action="ignore"))
    error = _refused(packs_root, "finance")
    assert error.field == "risk_rules[0].action"
    assert "must be one of" in error.problem


def test_escalation_reference_must_exist(packs_root):
    pack_yaml_edit(packs_root, "finance", lambda d: d["risk_rules"][0].update(escalation="nowhere"))
    assert _refused(packs_root, "finance").field == "risk_rules[0].escalation"


def test_domain_must_match_folder(packs_root):
    pack_yaml_edit(packs_root, "finance", lambda d: d.update(domain="banking"))
    assert _refused(packs_root, "finance").field == "domain"


def test_unknown_top_level_field_is_refused(packs_root):
    pack_yaml_edit(packs_root, "legal", lambda d: d.update(temprature=0.2))
    assert "unknown field" in str(_refused(packs_root, "legal"))


def test_legal_disclaimer_cannot_drop_the_attorney_statement(packs_root):
    pack_yaml_edit(packs_root, "legal", lambda d: d.update(disclaimer="General information only."))
    error = _refused(packs_root, "legal")
    assert error.field == "disclaimer"
    assert "not a substitute for the advice of an attorney" in error.problem


def test_medical_emergency_text_must_come_first(packs_root):
    pack_yaml_edit(
        packs_root, "medical",
        lambda d: d["escalation"].update(emergency="This may be serious. Call your local emergency number now."),
    )
    assert _refused(packs_root, "medical").field == "escalation.emergency"


def test_invalid_yaml_is_reported(packs_root):
    (packs_root / "finance" / "pack.yaml").write_text("domain: [unclosed\n", encoding="utf-8")
    assert "not valid YAML" in str(_refused(packs_root, "finance"))


def test_eval_line_errors_name_file_and_line(packs_root):
    evals = packs_root / "legal" / "evals" / "core.jsonl"
    lines = evals.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[2]) | {"kind": "must_guess"}
    evals.write_text("\n".join([*lines[:2], json.dumps(broken), *lines[3:]]) + "\n", encoding="utf-8")
    error = _refused(packs_root, "legal")
    assert error.source.endswith("legal/evals/core.jsonl:3")
    assert error.field == "kind"


def test_eval_line_that_is_not_json(packs_root):
    with (packs_root / "medical" / "evals" / "core.jsonl").open("a", encoding="utf-8") as out:
        out.write("{not json\n")
    assert "not valid JSON" in str(_refused(packs_root, "medical"))


def test_duplicate_eval_ids_are_refused(packs_root):
    evals = packs_root / "finance" / "evals" / "core.jsonl"
    first = evals.read_text(encoding="utf-8").splitlines()[0]
    with evals.open("a", encoding="utf-8") as out:
        out.write(first + "\n")
    assert "duplicate id" in str(_refused(packs_root, "finance"))


def test_pack_without_evals_is_refused(packs_root):
    for file in (packs_root / "legal" / "evals").glob("*.jsonl"):
        file.unlink()
    assert "no evaluation files" in str(_refused(packs_root, "legal"))


def test_rule_messages_are_filled_from_named_texts():
    data = pack_validate(DOMAINS / "medical")
    rules = {rule["id"]: rule for rule in data["risk_rules"]}
    assert rules["med.emergency"]["message"] == data["escalation"]["emergency"]
    assert rules["med.crisis"]["message"] == data["escalation"]["crisis"]
    assert rules["med.dose_beyond_label"]["message"] == data["refusal"]["dosing"]


def test_digest_is_stable_and_content_sensitive():
    data = pack_validate(DOMAINS / "finance")
    assert pack_digest(data) == pack_digest(pack_validate(DOMAINS / "finance"))
    changed = pack_data_validate({**data, "title": "Finance (new)"}, source="edit")
    assert pack_digest(changed) != pack_digest(data)
