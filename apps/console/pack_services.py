"""Console services for the pack lifecycle: save a draft, evaluate it, approve, publish, roll back.

The lifecycle itself (four eyes, one published version per domain) lives in `apps.prompt_packs.services`;
this module adds what the console promises on top: drafts edited as form fields or raw YAML,
evaluation runs with the real engine and safety pipeline, and the gate "approval needs a passing
evaluation of exactly this version". Every step appends an audit record.
"""

from __future__ import annotations

import copy
import difflib
import logging
import threading
from typing import Any

import yaml
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from apps.audit.services import audit_append
from apps.console.evaluation import case_run, eval_summary
from apps.console.models import EvalRun, EvalStatus
from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackStatus, PackVersion
from apps.prompt_packs.services import (
    pack_version_approve,
    pack_version_create_draft,
    pack_version_publish,
)
from apps.safety.pipeline import SafetyPipeline

logger = logging.getLogger(__name__)

# Share of evaluation cases that must pass (every must_escalate case must pass regardless).
EVAL_MIN_PASS_RATE = float(getattr(settings, "VERITY_CONSOLE_EVAL_MIN_PASS_RATE", 0.9))
EVAL_MAX_TOKENS = int(getattr(settings, "VERITY_CONSOLE_EVAL_MAX_TOKENS", 24))
# The form's simple fields; everything else is edited in the raw YAML editor.
FORM_FIELDS = ("title", "description", "version", "instructions", "disclaimer")


def pack_yaml(version: PackVersion) -> str:
    """The pack's content as YAML for the raw editor (evaluation cases stay out: edited in evals/)."""
    content = {key: value for key, value in version.data.items() if key != "evals"}
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100)


def _yaml_parse(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ApplicationError(ErrorCode.VALIDATION, f"pack.yaml is not valid YAML{where}: "
                               f"{getattr(exc, 'problem', exc)}", field="yaml") from None
    if not isinstance(data, dict):
        raise ApplicationError(ErrorCode.VALIDATION, "pack.yaml must be a mapping of fields.", field="yaml")
    return data


def pack_draft_save(*, base: PackVersion, actor: Any, fields: dict[str, str] | None = None,
                    raw_yaml: str | None = None) -> PackVersion:
    """A new draft from `base`: the raw YAML when given, else `base` with the form fields changed.

    Validation errors come back as ApplicationError(VALIDATION) whose `field` names the pack field.
    The base's evaluation cases are carried over unchanged.
    """
    if raw_yaml is not None and raw_yaml.strip():
        data = _yaml_parse(raw_yaml)
        data.pop("evals", None)
    else:
        data = {key: value for key, value in copy.deepcopy(base.data).items() if key != "evals"}
        for name, value in (fields or {}).items():
            if name not in FORM_FIELDS:
                raise ApplicationError(ErrorCode.VALIDATION, f"Unknown pack field {name!r}.", field=name)
            data[name] = value.replace("\r\n", "\n").strip() + ("\n" if name in ("instructions",) else "")
    # Rule texts resolved by the validator (`message`) are derived; drop them so edits re-resolve.
    for rule in data.get("risk_rules", []) or []:
        if isinstance(rule, dict) and ("escalation" in rule or "refusal" in rule):
            rule.pop("message", None)
    data["evals"] = copy.deepcopy(base.data.get("evals", []))
    with transaction.atomic():
        draft = pack_version_create_draft(domain=base.domain, data=data, actor=actor,
                                          source=f"{base.domain}/pack.yaml")
        audit_append(event="pack.drafted", actor=actor, tenant=None, subject=draft,
                     payload={"domain": draft.domain, "version": draft.version, "from": base.version,
                              "digest": draft.digest}, pack_version=draft)
    return draft


def pack_diff(*, old: PackVersion, new: PackVersion) -> list[dict[str, str]]:
    """A unified diff of two versions' YAML, as lines tagged add/del/ctx/hunk for the template."""
    if old.domain != new.domain:
        raise ApplicationError(ErrorCode.VALIDATION, "Only versions of the same domain can be compared.",
                               field="b")
    lines = difflib.unified_diff(pack_yaml(old).splitlines(), pack_yaml(new).splitlines(),
                                 f"{old.domain} v{old.version}", f"{new.domain} v{new.version}", lineterm="")
    out = []
    for line in lines:
        kind = "hunk" if line.startswith("@@") else "head" if line.startswith(("---", "+++")) else \
            "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx"
        out.append({"kind": kind, "text": line})
    return out


def eval_run_start(*, version: PackVersion, actor: Any, profile: str = "r1",
                   max_tokens: int | None = None) -> EvalRun:
    """Queue an evaluation of `version`; the work runs in the background (see `eval_run_execute`)."""
    cases = version.evals
    if not cases:
        raise ApplicationError(ErrorCode.VALIDATION, f"{version} has no evaluation cases.", field="evals")
    if profile not in ("r1", "zero"):
        raise ApplicationError(ErrorCode.VALIDATION, f"Unknown engine profile {profile!r}.", field="profile")
    run = EvalRun.objects.create(pack_version=version, started_by=actor, profile=profile, total=len(cases),
                                 max_tokens=max_tokens or EVAL_MAX_TOKENS)
    transaction.on_commit(lambda: eval_run_dispatch(str(run.id)))
    return run


def eval_run_dispatch(run_id: str) -> None:
    """A Celery task in services mode; a daemon thread in the embedded default."""
    if settings.VERITY_MODE == "services":
        from apps.console.tasks import console_eval_run

        try:
            console_eval_run.apply_async(args=[run_id], queue=settings.CELERY_TASK_DEFAULT_QUEUE)
            return
        except Exception:  # a broker outage must not lose the run: run it here instead
            logger.exception("could not enqueue eval run %s; running it in-process", run_id)

    def work() -> None:
        close_old_connections()
        try:
            eval_run_execute(run_id=run_id)
        finally:
            close_old_connections()

    threading.Thread(target=work, name=f"verity-eval-{run_id[:8]}", daemon=True).start()


def eval_run_execute(*, run_id: str) -> EvalRun:
    """Run every case, saving progress after each so that the console's progress bar moves."""
    run = EvalRun.objects.select_related("pack_version").get(pk=run_id)
    if run.status not in (EvalStatus.QUEUED,):
        return run  # idempotent: a redelivered task finds the run already taken
    if not EvalRun.objects.filter(pk=run.pk, status=EvalStatus.QUEUED).update(status=EvalStatus.RUNNING):
        return EvalRun.objects.get(pk=run.pk)
    pack = run.pack_version
    rows: list[dict[str, Any]] = []
    try:
        pipeline = SafetyPipeline.for_pack(pack)
        for case in pack.evals:
            rows.append(case_run(pack, case, pipeline=pipeline, profile=run.profile, max_tokens=run.max_tokens))
            EvalRun.objects.filter(pk=run.pk).update(done=len(rows), passed=sum(r["passed"] for r in rows),
                                                     results=rows)
        summary = eval_summary(rows, min_pass_rate=EVAL_MIN_PASS_RATE)
        status = EvalStatus.PASSED if summary["gate"] else EvalStatus.FAILED
        error = ""
    except Exception as exc:  # fail closed: an error is never a pass
        logger.exception("eval run %s failed", run_id)
        summary, status, error = eval_summary(rows, min_pass_rate=EVAL_MIN_PASS_RATE), EvalStatus.ERROR, \
            f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        EvalRun.objects.filter(pk=run.pk).update(status=status, error=error, finished_at=timezone.now(),
                                                 done=len(rows), passed=summary["passed"], results=rows)
        audit_append(event="pack.evaluated", actor=run.started_by, tenant=None, subject=pack,
                     payload={"run": str(run.pk), "status": status, **summary}, pack_version=pack,
                     model_version=run.profile)
    return EvalRun.objects.get(pk=run.pk)


def eval_latest(version: PackVersion) -> EvalRun | None:
    return EvalRun.objects.filter(pack_version=version).order_by("-created_at").first()


def pack_approve(*, version: PackVersion, actor: Any) -> PackVersion:
    """Approve a draft: never its author (the pack service refuses), only with a passing evaluation."""
    if version.created_by_id is not None and version.created_by_id == getattr(actor, "pk", None):
        raise ApplicationError(ErrorCode.PERMISSION_DENIED,
                               f"{version} was drafted by you; a second person must approve it.")
    latest = EvalRun.objects.filter(pack_version=version).exclude(
        status__in=(EvalStatus.QUEUED, EvalStatus.RUNNING)).order_by("-created_at").first()
    if latest is None or latest.status != EvalStatus.PASSED:
        state = "has not been evaluated" if latest is None else f"failed its latest evaluation " \
            f"({latest.passed}/{latest.total} passed)"
        raise ApplicationError(ErrorCode.CONFLICT, f"{version} {state}; approval needs a passing evaluation.",
                               field="evaluation", data={"version": version.pk})
    return pack_version_approve(version=version, actor=actor)


def pack_publish(*, version: PackVersion, actor: Any) -> PackVersion:
    """Publish an approved version; publishing an archived, once-published one is a rollback."""
    rollback = version.status == PackStatus.ARCHIVED
    with transaction.atomic():
        version = pack_version_publish(version=version, actor=actor)
        if rollback:
            audit_append(event="pack.rolled_back", actor=actor, tenant=None, subject=version,
                         payload={"domain": version.domain, "version": version.version}, pack_version=version)
    return version


def pack_rollback(*, domain: str, actor: Any) -> PackVersion:
    """Re-publish the version that was published before the current one."""
    previous = (PackVersion.objects.filter(domain=domain, status=PackStatus.ARCHIVED, published_at__isnull=False)
                .order_by("-published_at").first())
    if previous is None:
        raise ApplicationError(ErrorCode.CONFLICT, f"{domain} has no earlier published version to roll back to.",
                               field="domain")
    return pack_publish(version=previous, actor=actor)
