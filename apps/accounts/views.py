"""Login, logout (POST) and customer sign-up for the web front door; no business logic here."""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.accounts.forms import SignupForm
from apps.accounts.services import demo_tenant_get, user_create
from apps.core.errors import ApplicationError


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """A customer signs up into the demo tenant (tenants with their own sign-up come later)."""
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_create(
                tenant=demo_tenant_get(), username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"], email=form.cleaned_data.get("email") or "",
            )
        except ApplicationError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("/chat/")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)
