"""/console/ routes. Every view here is wrapped by `roles.console_view` (the matrix test checks it)."""

from django.urls import path

from apps.console import views_arena, views_audit, views_ops, views_packs, views_review

app_name = "console"
urlpatterns = [
    path("", views_ops.home, name="home"),
    path("dashboard/", views_ops.dashboard, name="dashboard"),
    path("metrics", views_ops.metrics, name="metrics"),
    path("packs/", views_packs.packs_page, name="packs"),
    path("packs/diff", views_packs.diff_page, name="pack-diff"),
    path("packs/<int:pk>/", views_packs.version_page, name="pack-version"),
    path("packs/<int:pk>/draft", views_packs.draft_save, name="pack-draft"),
    path("packs/<int:pk>/evaluate", views_packs.eval_start, name="pack-evaluate"),
    path("packs/<int:pk>/approve", views_packs.approve, name="pack-approve"),
    path("packs/<int:pk>/publish", views_packs.publish, name="pack-publish"),
    path("packs/<int:pk>/rollback", views_packs.rollback, name="pack-rollback"),
    path("packs/<int:pk>/canary", views_packs.canary_start, name="canary-start"),
    path("packs/canary/<slug:domain>/", views_packs.canary_page, name="canary"),
    path("packs/canary/<slug:domain>/clear", views_packs.canary_clear, name="canary-clear"),
    path("evals/<str:run_id>/", views_packs.eval_page, name="eval-page"),
    path("evals/<str:run_id>.json", views_packs.eval_status, name="eval-status"),
    path("review/", views_review.queue_page, name="review"),
    path("review/<str:item_id>/", views_review.item_page, name="review-item"),
    path("review/<str:item_id>/<str:action>", views_review.item_action, name="review-action"),
    path("audit/", views_audit.audit_page, name="audit"),
    path("audit/verify", views_audit.verify, name="audit-verify"),
    path("audit/export.jsonl", views_audit.export, name="audit-export"),
    path("audit/<int:seq>/", views_audit.record_page, name="audit-record"),
    path("arena/", views_arena.arena_page, name="arena"),
    path("arena/start", views_arena.arena_start, name="arena-start"),
    path("arena/<str:match_id>/", views_arena.match_page, name="arena-match"),
    path("arena/<str:match_id>/events.json", views_arena.match_events, name="arena-events"),
    path("arena/<str:match_id>/vote", views_arena.match_vote, name="arena-vote"),
]
