"""Issue 6, check 3: PII detection on >= 1,000 generated labelled strings, and no PII in logs or results.

The labelled set comes from tests/apps/safety/pii_generated.py (seeded). A finding counts as a true
positive when it overlaps a label of the same entity type; any other finding is a false positive.
The second part runs a real chat turn carrying a test subject's PII through a real Celery worker and
the real model, then reads the worker's log file, this process's log records and the Celery result
keys in Redis for any of it.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import pytest

from apps.safety import pii
from tests.apps.safety.pii_generated import labelled_set

N_CASES = 1200


def _score(cases: list[tuple[str, list[tuple[int, int, str]]]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    for text, labels in cases:
        matched: set[int] = set()
        for finding in pii.detect(text):
            hit = next((i for i, (start, end, kind) in enumerate(labels)
                        if kind == finding.kind and finding.start < end and start < finding.end), None)
            if hit is None:
                counts[finding.kind or "?"]["fp"] += 1
            else:
                matched.add(hit)
        for index, (_start, _end, kind) in enumerate(labels):
            counts[kind]["tp" if index in matched else "fn"] += 1
    return counts


def _rates(counts: dict[str, dict[str, int]], kinds: set[str] | None = None) -> tuple[float, float]:
    rows = [row for kind, row in counts.items() if kinds is None or kind in kinds]
    tp, fp, fn = (sum(row[k] for row in rows) for k in ("tp", "fp", "fn"))
    return tp / max(1, tp + fn), tp / max(1, tp + fp)


@pytest.fixture(scope="module")
def counts() -> dict[str, dict[str, int]]:
    cases = labelled_set(N_CASES)
    assert len(cases) >= 1000 and sum(1 for _, labels in cases if not labels) >= 300
    counts = _score(cases)
    print("\nPII labelled set: kind, tp, fp, fn, recall, precision")
    for kind in sorted(counts):
        recall, precision = _rates(counts, {kind})
        row = counts[kind]
        print(f"  {kind:14s} {row['tp']:4d} {row['fp']:3d} {row['fn']:3d}  {recall:.3f}  {precision:.3f}")
    recall, precision = _rates(counts)
    print(f"  {'ALL':14s} recall {recall:.4f} precision {precision:.4f}")
    return counts


def test_the_set_covers_every_kind(counts):
    assert {"CREDIT_CARD", "IBAN_CODE", "US_SSN", "PHONE_NUMBER", "EMAIL_ADDRESS", "PERSON"} <= set(counts)
    assert all(counts[kind]["tp"] + counts[kind]["fn"] >= 100 for kind in counts if kind != "?")


def test_checksummed_numbers_phones_and_emails_meet_the_bounds(counts):
    recall, precision = _rates(counts, {"CREDIT_CARD", "IBAN_CODE", "US_SSN", "PHONE_NUMBER", "EMAIL_ADDRESS"})
    assert recall >= 0.99 and precision >= 0.95, (recall, precision)


def test_recall_and_precision_over_all_kinds_meet_issue_6_check_3(counts):
    recall, precision = _rates(counts)
    assert recall >= 0.99 and precision >= 0.95, (recall, precision)


def test_names_alone_meet_the_recall_bound(counts):
    # The negatives include organisations named after people ("Morgan Stanley", "Charles Schwab"),
    # which read as names to anything without world knowledge; names' own precision is held to 90%.
    recall, precision = _rates(counts, {"PERSON"})
    assert recall >= 0.99 and precision >= 0.90, (recall, precision)


def test_the_names_are_not_just_the_recognisers_gazetteer():
    from apps.safety.names import gazetteer

    names = gazetteer()
    people = [text[start:end] for text, labels in labelled_set(N_CASES) for start, end, kind in labels
              if kind == "PERSON"]
    unknown = [person for person in people
               if not all(names.is_given(w) or names.is_surname(w) for w in person.split() if w[0].isupper())]
    assert len(unknown) >= 0.2 * len(people), (len(unknown), len(people))


SUBJECT = {"name": "Ottoline Wreford-Baines", "email": "ottoline.wb@example.org", "ssn": "219-09-9999",
           "card": "5555 5555 5555 4444", "phone": "(415) 867-5309"}


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_no_pii_of_a_subject_in_logs_or_celery_results_after_a_chat_turn(packs, customer, real_model,
                                                                          start_worker, caplog):
    import redis
    from django.conf import settings

    from apps.accounts.services import demo_tenant_get
    from apps.conversations.services import conversation_create, turn_submit
    from apps.conversations.streams import events_follow

    caplog.set_level(logging.DEBUG)
    worker = start_worker("pii")
    conversation = conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")
    text = (f"I'm {SUBJECT['name']}, SSN {SUBJECT['ssn']}, card {SUBJECT['card']}, phone {SUBJECT['phone']}, "
            f"email {SUBJECT['email']}. Can I move my savings into an index fund?")
    reply = turn_submit(conversation=conversation, text=text).reply
    events = list(events_follow(str(reply.id), timeout_s=300))
    assert events and events[-1][1] == "done", events[-3:]
    worker.stop()
    logged = worker.log() + "\n".join(record.getMessage() for record in caplog.records)
    results = _celery_results(redis.Redis.from_url(settings.CELERY_BROKER_URL))
    needles = [*SUBJECT.values(), "Wreford", SUBJECT["card"].replace(" ", ""), "867-5309"]
    assert "Task apps.conversations.tasks" in worker.log()  # the worker did log the task
    assert [n for n in needles if n in logged] == [], "PII in the application logs"
    assert [n for n in needles if any(n in value for value in results)] == [], "PII in Celery results"


def _celery_results(client: Any) -> list[str]:
    values = []
    for key in client.scan_iter(match="celery-task-meta-*", count=500):
        raw = client.get(key)
        values.append(raw.decode(errors="replace") if raw else "")
    return values
