from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.db import transaction

from .models import Invitation

WRONG_CODE = "This invitation code is not valid, or it has been used already. Ask the person who invited you."


class InvitedUserCreationForm(UserCreationForm):
    """Sign-up with an invitation code (SIGNUP_MODE "invite"); the code is used up by the new account."""

    invitation = forms.CharField(label="Invitation code", max_length=40,
                                 help_text="The code you were given with your invitation.")

    def clean_invitation(self):
        code = self.cleaned_data["invitation"].strip()
        if not Invitation.objects.unused().filter(code=code).exists():
            raise forms.ValidationError(WRONG_CODE)
        return code

    @transaction.atomic
    def save(self, commit=True):
        user = super().save(commit=True)
        # Two people with one code at once: only one conditional update succeeds.
        if not Invitation.objects.redeem(self.cleaned_data["invitation"], user):
            transaction.set_rollback(True)
            self.add_error("invitation", WRONG_CODE)
            return None
        return user
