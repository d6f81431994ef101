"""The "API tokens" page: make a token for a program (shown once), see when each was last used, revoke one."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="What is it for?",
                           help_text="A name to tell your tokens apart: “lab scanner”, “shop till”.")


@login_required
def tokens(request):
    form = TokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        token, new_key = ApiToken.objects.create_for(request.user, form.cleaned_data["name"])
        form = TokenForm()
    return render(request, "api_app/tokens.html", {
        "form": form, "new_key": new_key, "tokens": ApiToken.objects.filter(owner=request.user),
        "api_base": request.build_absolute_uri("/api/v1/"),
    })


@login_required
@require_POST
def revoke(request, token_pk):
    token = get_object_or_404(ApiToken, pk=token_pk, owner=request.user)
    token.revoke()
    messages.info(request, f"The token “{token.name}” was revoked: programs using it are refused from now on.")
    return redirect("api:tokens")
