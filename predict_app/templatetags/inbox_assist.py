"""The inbox's card of a model's suggestions ({% inbox_assist_card dataset %}): the inbox is datasets_app's
page, the suggestions are predict_app's (assist.py), and a lower layer does not import a higher one
(docs/architecture.md, "Layers"), so the card comes in through the template."""
from django import template

from ..assist_views import inbox_assist

register = template.Library()


@register.inclusion_tag("datasets_app/_inbox_assist.html", takes_context=True)
def inbox_assist_card(context, dataset):
    return {"assist": inbox_assist(context["request"], dataset), "dataset": dataset,
            "csrf_token": context.get("csrf_token"), "request": context["request"]}
