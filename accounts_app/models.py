"""Invitations: with SIGNUP_MODE "invite", an account can only be made with a code a staff
member made (in the admin, under "Invitations"). Each code makes one account."""
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


def new_code():
    return secrets.token_urlsafe(12)


class InvitationQuerySet(models.QuerySet):
    def unused(self):
        return self.filter(used_by__isnull=True)

    def redeem(self, code, user):
        """Marks the unused invitation `code` as used by `user`; False if there is none (wrong
        code, or already used, even a moment ago by someone else: one conditional update)."""
        return bool(self.unused().filter(code=code).update(used_by=user, used_at=timezone.now()))


class Invitation(models.Model):
    code = models.CharField(max_length=40, unique=True, default=new_code,
                            help_text="Give this code to the person you invite; it makes one account.")
    note = models.CharField(max_length=200, blank=True, help_text="For you: whom it is for.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    used_by = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="invitation", editable=False)
    used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.code
