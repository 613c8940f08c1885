"""URL map: chat (web front door), accounts, health, admin; later apps mount when they exist."""

from importlib.util import find_spec

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from apps.core.views import healthz

urlpatterns = [
    path("", RedirectView.as_view(url="/chat/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("apps.accounts.urls")),
    path("chat/", include("apps.conversations.urls")),
    path("admin/", admin.site.urls),
]
# Front doors built in later issues mount as soon as their URL module exists.
if find_spec("apps.partner_api.urls") if find_spec("apps.partner_api") else None:
    urlpatterns.append(path("v1/", include("apps.partner_api.urls")))
if find_spec("apps.console.urls") if find_spec("apps.console") else None:
    urlpatterns.append(path("console/", include("apps.console.urls")))
    from apps.console.views_ops import metrics as console_metrics  # Prometheus scrapes /metrics

    urlpatterns.append(path("metrics", console_metrics, name="metrics"))

handler400 = "apps.core.views.error_400"
handler403 = "apps.core.views.error_403"
handler404 = "apps.core.views.error_404"
handler500 = "apps.core.views.error_500"
