"""The likely-wrong-labels pages: start a search (LabelReview, a job on the default worker), watch it, then
walk its suspects one at a time and decide on each (keep, move to the suggested class, remove).

The work is in label_review.py; these views read the request and show its words."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from mlcore.words import whole_number

from datasets_app.access import get_dataset_for_user
from datasets_app.labelling import LabelError

from .label_review import DECISIONS, decide, features_in_words, runs_to_choose, summary, undo_decision
from .models import LabelReview, LabelSuspect


# The last decision on a review page, kept in the session so that "Undo" (key Z) can take it back.
UNDO_KEY = "label_review_undo"


def _review_of(request, dataset_pk, review_pk):
    dataset = get_dataset_for_user(request, dataset_pk)  # someone else's dataset: 404
    return dataset, get_object_or_404(LabelReview, pk=review_pk, dataset=dataset)


@login_required
@require_POST
def review_start(request, dataset_pk):
    """POST run = a finished run of this dataset, or empty for the pretrained network."""
    dataset = get_dataset_for_user(request, dataset_pk)
    running = dataset.label_reviews.filter(status__in=LabelReview.ACTIVE).first()
    if running:
        messages.info(request, "A search for likely wrong labels is already on its way for this dataset.")
        return redirect("training:label_review", dataset.pk, running.pk)
    choice, run = request.POST.get("run", "").strip(), None
    if choice:
        run_id = whole_number(choice, 1)
        run = runs_to_choose(dataset).filter(pk=run_id).first() if run_id else None
        if run is None:
            messages.error(request, "That run is not a finished run of this dataset: choose another, or none.")
            return redirect("datasets:detail", dataset.pk)
    if dataset.trainable_images().count() < 4:
        messages.error(request, "Label a few pictures first: there is nothing to compare yet.")
        return redirect("datasets:detail", dataset.pk)
    with transaction.atomic():
        review = LabelReview.objects.create(dataset=dataset, run=run, created_by=request.user,
                                            features_from=features_in_words(run))
        transaction.on_commit(lambda: LabelReview.send(review.id))
    return redirect("training:label_review", dataset.pk, review.pk)


@login_required
def review_page(request, dataset_pk, review_pk):
    """While the job runs: its progress. Once done: the suspect ?suspect=<id> (the first open one without)."""
    dataset, review = _review_of(request, dataset_pk, review_pk)
    context = {"dataset": dataset, "review": review}
    if review.status != LabelReview.Status.DONE:
        return render(request, "training_app/label_review.html", context)
    open_suspects = list(review.open_suspects().values_list("id", flat=True))
    wanted = whole_number(request.GET.get("suspect", ""))
    current = wanted if wanted in open_suspects else (open_suspects[0] if open_suspects else None)
    if current is not None:
        at = open_suspects.index(current)
        suspect = review.suspects.select_related("image", "other_image").get(id=current)
        context |= {"suspect": suspect, "position": at + 1, "open_count": len(open_suspects),
                    "previous": open_suspects[at - 1] if at > 0 else None,
                    "next": open_suspects[at + 1] if at + 1 < len(open_suspects) else None,
                    "current_label": suspect.image.label or ""}
    undo = request.session.get(UNDO_KEY)
    if undo and undo.get("review") == review.id:
        context["undo"] = undo["text"]
    context["summary"] = summary(review)
    context["decided"] = review.suspects.exclude(decision="").order_by("-decided_at")[:20]
    return render(request, "training_app/label_review.html", context)


@login_required
@require_POST
def review_decide(request, dataset_pk, review_pk, suspect_pk):
    """POST decision = keep, move or remove."""
    dataset, review = _review_of(request, dataset_pk, review_pk)
    suspect = get_object_or_404(LabelSuspect, pk=suspect_pk, review=review)
    decision = request.POST.get("decision", "")
    following = review.open_suspects().filter(rank__gt=suspect.rank).values_list("id", flat=True).first()
    try:
        if decision not in DECISIONS:
            raise LabelError("Choose keep, move or remove.")
        text, request.session[UNDO_KEY] = decide(suspect, decision, request.user)
        messages.info(request, text)
    except LabelError as exc:
        messages.error(request, str(exc))
        following = suspect.id if not suspect.decision and suspect.image_id else following
    url = reverse("training:label_review", args=[dataset.pk, review.pk])
    return redirect(f"{url}?suspect={following}" if following else url)


@login_required
@require_POST
def review_undo(request, dataset_pk, review_pk):
    """Take back the last decision made on this review's page (once)."""
    dataset, review = _review_of(request, dataset_pk, review_pk)
    url = reverse("training:label_review", args=[dataset.pk, review.pk])
    try:
        suspect, text = undo_decision(review, request.session.get(UNDO_KEY), request.user)
    except LabelError as exc:
        messages.error(request, str(exc))
        return redirect(url)
    request.session.pop(UNDO_KEY, None)
    messages.info(request, text)
    return redirect(f"{url}?suspect={suspect.id}")


urlpatterns = [
    path("datasets/<int:dataset_pk>/wrong-labels/", review_start, name="label_review_start"),
    path("datasets/<int:dataset_pk>/wrong-labels/<int:review_pk>/", review_page, name="label_review"),
    path("datasets/<int:dataset_pk>/wrong-labels/<int:review_pk>/<int:suspect_pk>/decide/", review_decide,
         name="label_review_decide"),
    path("datasets/<int:dataset_pk>/wrong-labels/<int:review_pk>/undo/", review_undo, name="label_review_undo"),
]
