"""Sign-up, as SIGNUP_MODE says; logging in and out are Django's own views (dlsite/urls.py)."""
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render
from django.urls import path

from .forms import InvitedUserCreationForm


def signup(request):
    """Sign-up as SIGNUP_MODE says: open to anyone, with an invitation code, or closed."""
    mode = settings.SIGNUP_MODE
    if mode == "closed":
        return render(request, "registration/signup.html", {"closed": True})
    form_class = InvitedUserCreationForm if mode == "invite" else UserCreationForm
    form = form_class(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        if user is not None:  # None: the invitation was used by someone else meanwhile
            # Two backends are set (django-axes and Django's), so say which one checked the user.
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("datasets:list")
    return render(request, "registration/signup.html", {"form": form, "invite": mode == "invite"})


urlpatterns = [
    path("signup/", signup, name="signup"),
]
