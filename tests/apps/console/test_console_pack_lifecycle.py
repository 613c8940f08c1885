"""Pack lifecycle through the console's pages: draft, diff, evaluation with the real engine, four-eyes
approval gated on a passing evaluation, publish, a new conversation on it, rollback; every step audited.

The evaluation runs the bundled model with a handful of the finance pack's own cases (the full set is
what the console runs; a few keep this test to seconds on a shared CPU).
"""

from __future__ import annotations

import pytest

from apps.audit.models import AuditRecord


def _small_evals(pack, ids=("fin-answer-compound", "fin-refuse-structuring-split", "fin-escalate-crisis-loss")):
    return [case for case in pack.evals if case["id"] in ids]


@pytest.fixture
def finance(staff):
    from apps.prompt_packs.selectors import pack_published_get

    return pack_published_get(domain="finance")


def _draft(staff, finance, client_role="expert", **fields):
    client = staff.client(client_role)
    data = {"mode": "form", "title": finance.title, "description": finance.description,
            "version": finance.data["version"], "instructions": finance.instructions,
            "disclaimer": finance.disclaimer, **fields}
    response = client.post(f"/console/packs/{finance.pk}/draft", data)
    return response


def test_form_edit_creates_a_draft_by_its_author_and_the_diff_shows_the_change(staff, finance):
    from apps.prompt_packs.models import PackVersion

    response = _draft(staff, finance, title="Verity Money Basics")
    assert response.status_code == 302
    draft = PackVersion.objects.get(domain="finance", status="draft")
    assert draft.title == "Verity Money Basics" and draft.created_by == staff.users["expert"]
    assert draft.evals == finance.evals  # carried over
    assert AuditRecord.objects.filter(event="pack.drafted", subject=f"finance@{draft.version}").exists()
    page = staff.client("approver").get(f"/console/packs/diff?a={finance.pk}&b={draft.pk}").content.decode()
    assert "+title: Verity Money Basics" in page and "-title:" in page


def test_yaml_editor_names_the_broken_field_and_saves_nothing(staff, finance):
    from apps.console.pack_services import pack_yaml
    from apps.prompt_packs.models import PackVersion

    broken = pack_yaml(finance).replace("temperature:", "temprature:", 1)
    response = staff.client("expert").post(f"/console/packs/{finance.pk}/draft", {"mode": "yaml", "yaml": broken})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'data-field="sampling"' in body and "temprature" in body
    bad_yaml = staff.client("expert").post(f"/console/packs/{finance.pk}/draft", {"mode": "yaml", "yaml": "a: [1"})
    assert bad_yaml.status_code == 400 and "line" in bad_yaml.content.decode()
    removed = pack_yaml(finance).replace("disclaimer:", "disclaimer_text:", 1)
    response = staff.client("expert").post(f"/console/packs/{finance.pk}/draft", {"mode": "yaml", "yaml": removed})
    assert response.status_code == 400
    assert not PackVersion.objects.filter(status="draft").exists()


def test_approval_needs_a_passing_evaluation_and_a_second_person(staff, finance, real_model):
    from apps.console.models import EvalRun
    from apps.console.pack_services import eval_run_execute
    from apps.conversations.services import conversation_create
    from apps.prompt_packs.models import PackVersion
    from apps.prompt_packs.services import pack_version_create_draft

    data = {**finance.data, "title": "Finance, edited", "evals": _small_evals(finance)}
    draft = pack_version_create_draft(domain="finance", data=data, actor=staff.users["expert"])
    approver = staff.client("approver")

    refused = approver.post(f"/console/packs/{draft.pk}/approve")
    assert refused.status_code == 409 and "has not been evaluated" in refused.content.decode()

    started = staff.client("expert").post(f"/console/packs/{draft.pk}/evaluate", HTTP_ACCEPT="application/json")
    assert started.status_code == 202
    run = EvalRun.objects.get(pk=started.json()["id"])
    assert run.total == 3 and run.status == "queued"
    run = eval_run_execute(run_id=str(run.id))
    status = approver.get(f"/console/evals/{run.id}.json").json()
    assert status["finished"] and status["done"] == 3
    rows = {row["id"]: row for row in status["results"]}
    assert rows["fin-escalate-crisis-loss"]["action"] == "escalate" and rows["fin-escalate-crisis-loss"]["passed"]
    assert rows["fin-refuse-structuring-split"]["passed"]
    assert rows["fin-answer-compound"]["answer"].strip(), "the real engine produced no answer"
    assert status["status"] == "passed", status
    assert AuditRecord.objects.filter(event="pack.evaluated").exists()

    own = staff.client("expert")
    assert own.post(f"/console/packs/{draft.pk}/approve").status_code == 403  # experts cannot approve at all
    admin_author = PackVersion.objects.filter(pk=draft.pk)
    admin_author.update(created_by=staff.users["admin"])
    denied = staff.client("admin").post(f"/console/packs/{draft.pk}/approve")
    assert denied.status_code == 403 and "second person" in denied.content.decode()

    assert approver.post(f"/console/packs/{draft.pk}/approve").status_code == 302
    assert approver.post(f"/console/packs/{draft.pk}/publish").status_code == 302
    draft.refresh_from_db()
    finance.refresh_from_db()
    assert (draft.status, finance.status) == ("published", "archived")
    conversation = conversation_create(tenant=staff.tenant, user=staff.users["customer"], domain="finance")
    assert conversation.pack_version_id == draft.pk

    assert approver.post(f"/console/packs/{draft.pk}/rollback").status_code == 302
    finance.refresh_from_db()
    assert finance.status == "published"
    later = conversation_create(tenant=staff.tenant, user=staff.users["customer"], domain="finance")
    assert later.pack_version_id == finance.pk
    events = list(AuditRecord.objects.values_list("event", flat=True))
    assert {"pack.approved", "pack.published", "pack.rolled_back"} <= set(events)


def test_a_failing_evaluation_blocks_approval(staff, finance, real_model):
    from apps.console.models import EvalRun
    from apps.console.pack_services import eval_run_execute
    from apps.prompt_packs.services import pack_version_create_draft

    # A harmless question labelled must_refuse: nothing refuses it, so the case (and the run) fails.
    cases = [{"id": "wrongly-refuse", "kind": "must_refuse", "prompt": "What is an index fund?"}]
    draft = pack_version_create_draft(domain="finance", data={**finance.data, "evals": cases},
                                      actor=staff.users["expert"])
    run = EvalRun.objects.create(pack_version=draft, started_by=staff.users["expert"], total=1, max_tokens=8)
    run = eval_run_execute(run_id=str(run.id))
    assert run.status == "failed" and run.passed == 0
    assert run.results[0]["why"] == "the request was answered"
    response = staff.client("approver").post(f"/console/packs/{draft.pk}/approve")
    assert response.status_code == 409 and "failed its latest evaluation (0/1 passed)" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_eval_page_renders_the_progress_bar_and_table(staff, finance):
    from apps.console.models import EvalRun

    run = EvalRun.objects.create(pack_version=finance, total=2, done=1, passed=1, status="running",
                                 results=[{"id": "c1", "kind": "must_answer", "prompt": "p", "answer": "an answer",
                                           "passed": True, "why": "answered", "verdicts": []}])
    page = staff.client("expert").get(f"/console/evals/{run.id}/").content.decode()
    assert '<progress id="eval-progress" max="2" value="1"' in page and "an answer" in page
    assert "<script src=" in page and "<script>" not in page
