from django.contrib import admin

from .models import Invitation


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["code", "note", "created_by", "created_at", "used_by", "used_at"]
    list_filter = [("used_by", admin.EmptyFieldListFilter)]
    search_fields = ["code", "note", "used_by__username"]
    readonly_fields = ["created_by", "created_at", "used_by", "used_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
