"""API tokens: what a program sends instead of a password. Only a hash of each is stored, so a copy
of the database gives no one the tokens; the person sees a token once, when it is made."""
import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

PREFIX = "icl_"  # makes a leaked token recognisable (and searchable) as one of this site's


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)

    def create_for(self, owner, name: str) -> tuple["ApiToken", str]:
        """A new token and its key, which is shown to its owner this once and never stored."""
        key = PREFIX + secrets.token_urlsafe(32)
        token = self.create(owner=owner, name=name, shown=key[:len(PREFIX) + 6], key_hash=digest(key))
        return token, key

    def for_key(self, key: str) -> "ApiToken | None":
        return self.select_related("owner").filter(key_hash=digest(key)).first()


class ApiToken(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)  # what the person calls it: "lab scanner", "shop till"
    shown = models.CharField(max_length=16)  # the key's first characters, to tell tokens apart
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.shown}…)"

    def revoke(self):
        ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())

    def note_use(self):
        """Record when it was last used, at most once a minute (not a write per request)."""
        now = timezone.now()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
