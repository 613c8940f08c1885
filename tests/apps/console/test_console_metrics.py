"""`/metrics` (Prometheus text) and the dashboard page with its chart data."""

from __future__ import annotations

import json
import re

from django.test import Client, override_settings


def test_metrics_text_format_and_figures(staff, make_flagged):
    make_flagged(staff.tenant, staff.users["customer"], input_action="block")
    make_flagged(staff.tenant, staff.users["customer"], input_action="allow", content="ok")
    response = staff.client("admin").get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert 'verity_conversations{domain="finance"} 2' in text
    assert 'verity_reply_block_ratio{domain="finance"} 0.5' in text
    assert '# TYPE verity_pack_versions gauge' in text and 'status="published"' in text
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r'^[a-z_]+(\{[^}]*\})? [-0-9.e+]+$', line), line


def test_metrics_needs_the_token_or_an_allowed_role(staff):
    assert Client().get("/metrics").status_code == 401
    assert staff.client("customer").get("/metrics").status_code == 403
    with override_settings(VERITY_METRICS_TOKEN="s3cret-token"):
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_dashboard_embeds_chart_data_and_only_its_tenants_numbers(staff, other_staff, make_flagged):
    make_flagged(staff.tenant, staff.users["customer"], input_action="escalate")
    make_flagged(other_staff.tenant, other_staff.users["customer"], domain="legal")
    page = staff.client("expert").get("/console/dashboard/").content.decode()
    data = json.loads(re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', page,
                                re.S).group(1))
    assert list(data["daily"]["series"]) == ["finance"] and sum(data["daily"]["series"]["finance"]) == 1
    assert data["rates"] == [{"domain": "finance", "block": 0.0, "escalation": 1.0, "retraction": 0.0}]
    assert 'id="chart-daily"' in page


def test_percentile_nearest_rank():
    from apps.console.stats import percentile

    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(range(1, 101)), 95) == 95


def test_metrics_carry_the_loaded_engines_facts(staff, monkeypatch):
    from apps.console import metrics

    monkeypatch.setattr(metrics, "engine_describe", lambda: {
        "checkpoint_present": True, "loaded_profiles": ["r1"],
        "info": {"name": 'smol "135m"', "architecture": "llama", "profile": "r1", "dtype": "float32",
                 "device": "cpu", "context_length": 8192}})
    text = staff.client("admin").get("/metrics").content.decode()
    assert 'verity_engine_info{name="smol \\"135m\\"",architecture="llama"' in text
    assert "verity_engine_context_length 8192" in text and 'verity_engine_loaded{profile="r1"} 1' in text
