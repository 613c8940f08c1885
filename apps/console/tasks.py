"""Celery tasks of the console (services mode): evaluation runs take ids and are idempotent."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="console.eval_run", acks_late=True, ignore_result=True)
def console_eval_run(run_id: str) -> None:
    from apps.console.pack_services import eval_run_execute

    eval_run_execute(run_id=run_id)
