"""Receiving a folder that the browser sends in parts, for a new dataset, for images added to one, and
for pictures to classify: the steps, the limits and their messages, and when a folder whose sending
stopped is given up. Each kind of row says what differs in a FolderReceiver subclass
(datasets_app/folder_upload.py, predict_app/many.py); the browser's side is static/js/upload.js.

A folder arrives in parts (Django takes at most DATA_UPLOAD_MAX_NUMBER_FILES files per request, and
keeps only a file's base name, so each file's path inside the folder travels in a parallel field):

  start   announces the folder (name, file count, part count, bytes, a fingerprint of its file list)
          and answers the row, with the parts the server already has when the same folder is sent
          again after a page reload or a lost connection (the apps' start views);
  part    stores part <index> once; sending it again is harmless;
  state   which parts have arrived, asked before retrying after a network error;
  finish  once every part is there, queues the row for its worker.

Refusals are JSON with a plain-words `message` and a 4xx status.
"""
from __future__ import annotations

import math
import os
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, TooManyFilesSent
from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from dlsite import storage
from mlcore.archive import ArchiveLimits, ArchiveRejected, plan_files
from mlcore.words import count, file_size

# The browser sends about 20 MB per part; a single large photo may travel alone. This bounds what
# one request can write to the disk.
MAX_BATCH_BYTES = 128 * 1024**2
MAX_PATH_LENGTH = 1000  # the longest file name an image row keeps


def archive_limits() -> ArchiveLimits:
    """The limits on what one upload holds, a zip's or a folder's (mlcore/archive.py checks them)."""
    return ArchiveLimits(max_entries=settings.MAX_ZIP_ENTRIES, max_total_bytes=settings.MAX_ZIP_UNPACKED_BYTES)


# ---------------------------------------------------------------------------------------------
# Too many files in one request


def too_many_files_message():
    return f"Send at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files at a time."


def refusing_too_many_files(too_many_files_response):
    """Answer a request with more than DATA_UPLOAD_MAX_NUMBER_FILES files with a message that says so.

    Django refuses such a request while reading its body, and CsrfViewMiddleware reads
    the body first, so the person would only see "Bad Request (400)". This reads the
    body before the CSRF check, then checks CSRF exactly as the middleware would.
    """
    def decorator(view):
        protected = csrf_protect(view)

        @csrf_exempt  # not exempt: checked by `protected`, once the body has been read
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                request.FILES
            except TooManyFilesSent:
                return too_many_files_response(request, *args, **kwargs)
            return protected(request, *args, **kwargs)
        return wrapper
    return decorator


# ---------------------------------------------------------------------------------------------
# What the browser sends


class FolderStartForm(forms.Form):
    """What the browser announces before it sends a folder in parts."""

    folder_name = forms.CharField(max_length=255)
    file_count = forms.IntegerField(min_value=1)
    batch_count = forms.IntegerField(min_value=1)
    total_bytes = forms.IntegerField(min_value=0)
    # The browser's hash of the sorted file list; optional, so an older page still works.
    fingerprint = forms.CharField(max_length=64, required=False)

    def clean_file_count(self):
        files = self.cleaned_data["file_count"]
        if files > settings.MAX_ZIP_ENTRIES:
            raise forms.ValidationError(f"This folder has {files:,} files; the limit is {settings.MAX_ZIP_ENTRIES:,}.")
        return files

    def clean_total_bytes(self):
        size = self.cleaned_data["total_bytes"]
        if size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"These files hold {file_size(size)}; the limit is {file_size(settings.MAX_UPLOAD_BYTES)}. "
                "Send the folder in parts, adding each to the dataset.", code="too_large"
            )
        return size

    def clean(self):
        cleaned = super().clean()
        files, batches = cleaned.get("file_count"), cleaned.get("batch_count")
        fewest_batches = math.ceil((files or 0) / settings.DATA_UPLOAD_MAX_NUMBER_FILES)
        if files and batches and not fewest_batches <= batches <= files:
            raise forms.ValidationError(f"{files} files cannot be sent in {batches} parts.")
        return cleaned

    def is_too_large(self):
        return self.has_error("total_bytes", "too_large")

    def message(self):
        """Every error in one plain sentence or two, for the page to show."""
        return " ".join(message for messages in self.errors.values() for message in messages)


class FolderBatchForm(forms.Form):
    """One part of a folder: the files, and each file's path inside the folder in `paths`, in the same order.

    The paths carry the labels, and they come from the browser, so they are checked
    with the same rules as the names in a zip.
    """

    def __init__(self, row, index, data, files):
        super().__init__(data, files)
        self.row, self.index = row, index

    def clean(self):
        files, paths = self.files.getlist("files"), self.data.getlist("paths")
        if self.index >= self.row.expected_batches:
            raise forms.ValidationError(
                f"This folder was announced in {self.row.expected_batches} parts; part {self.index + 1} is not one of them.")
        # More than DATA_UPLOAD_MAX_NUMBER_FILES files never get here: Django refuses them
        # while reading the request (refusing_too_many_files).
        if not files:
            raise forms.ValidationError("This part holds no files.")
        if len(paths) != len(files):
            raise forms.ValidationError(
                f"This part has {len(files)} files but {len(paths)} file paths; each file needs its path.")
        size = sum(f.size for f in files)
        if size > MAX_BATCH_BYTES:
            raise forms.ValidationError(f"This part holds {file_size(size)}; one part may hold at most "
                                        f"{file_size(MAX_BATCH_BYTES)}.", code="too_large")
        try:
            plan_files([(path, f.size) for path, f in zip(paths, files)], archive_limits())
        except ArchiveRejected as exc:  # a path that climbs out, is absolute, or has a backslash or null character
            raise forms.ValidationError(str(exc)) from None
        for path in paths:
            if not path or len(path) > MAX_PATH_LENGTH or "" in path.split("/"):
                raise forms.ValidationError(f"The file path “{path[:200]}” is empty, too long or has an empty folder name.")
        self.batch = list(zip(paths, files))
        return {}

    def message(self):
        return " ".join(self.non_field_errors())

    def is_too_large(self):
        return self.has_error(NON_FIELD_ERRORS, "too_large")


# ---------------------------------------------------------------------------------------------
# The answers


class Refused(Exception):
    """What was sent cannot be taken; the message says why in plain words, `extra` goes into the answer."""

    def __init__(self, message, status=400, **extra):
        super().__init__(message)
        self.status, self.extra = status, extra


def refuse(message, status=400, **extra) -> JsonResponse:
    return JsonResponse({"message": message, **extra}, status=status)


def refuse_form(form) -> JsonResponse:
    return refuse(form.message(), 413 if form.is_too_large() else 400)


def _too_many_files_in_part(request, *args, **kwargs):
    return refuse(too_many_files_message())


def folder_answer(row, state_url, finish_url, resumed=False, status=200, **extra) -> JsonResponse:
    """The answer to a start: where to send the parts, and those the server has already."""
    return JsonResponse({
        "upload": row.id,
        "resumed": resumed,
        "expected_batches": row.expected_batches,
        "received_batches": row.received_batches,
        "state_url": state_url,
        "batch_url_prefix": state_url,  # part <i> is at <prefix><i>/
        "finish_url": finish_url,
        **extra,
    }, status=status)


def missing_batches(row) -> list[int]:
    return sorted(set(range(row.expected_batches)) - set(row.received_batches))


# ---------------------------------------------------------------------------------------------
# Receiving


class FolderReceiver:
    """How one kind of row takes a folder sent in parts. The row's model has `status` (with RECEIVING,
    QUEUED and FAILED), `expected_batches`, `received_batches`, `created_at`, `finished_at` and `error`.
    A subclass sets `model` and says how a part is stored, where the parts wait, and its words."""

    model = None
    things = "files"  # what the folder holds, in the messages
    abandoned_advice = "Pick the folder again to send it."
    keeps_abandoned_parts = True  # False: the clean-up removes the parts of a folder it gives up
    # True: the row has `expected_bytes` and `received_bytes`, and a part past the announced bytes is refused.
    counts_bytes = False

    def store(self, row, index: int, files: list[tuple[str, object]]) -> bool:
        """Store part `index`, (relative path, uploaded file) each, while the row is locked; False
        when it was stored already."""
        raise NotImplementedError

    def prefix(self, row) -> str:
        """The storage folder (dlsite/storage.py) where the row's parts wait, e.g. "uploads/folders/7".
        Every part that arrives adds files to it, so its newest file says when the last part arrived."""
        raise NotImplementedError

    def last_arrival(self, row) -> float:
        """When the row's last part arrived (a time.time()), 0 when none has: its newest kept file."""
        return max((kept.modified.timestamp() for kept in storage.listing(self.prefix(row))), default=0.0)

    def sent_already(self, row) -> str:
        """Why a part or a finish of a row no longer receiving is refused."""
        raise NotImplementedError

    def when_ready(self, row) -> dict:
        """Fields to set, besides the status, once every part is there."""
        return {}

    # The steps

    def receive(self, row, index: int, files: list[tuple[str, object]]):
        """Store part `index` of a folder being sent, once, and record it: (stored now?, the row).

        The row lock makes two requests for the same part (a retry racing a slow first try)
        take turns, so the part is written, counted and recorded once.
        """
        size = sum(uploaded.size for _, uploaded in files)
        with transaction.atomic():
            row = self.model.objects.select_for_update().get(pk=row.pk)
            if row.status != self.model.Status.RECEIVING:
                raise Refused(self.sent_already(row), status=409)
            if index in row.received_batches:
                return False, row
            fields = ["received_batches"]
            if self.counts_bytes:
                if row.received_bytes + size > row.expected_bytes:
                    raise Refused("This folder is sending more bytes than it announced; the part was refused. "
                                  "Pick the folder again to start over.", status=413)
                row.received_bytes += size
                fields.append("received_bytes")
            stored = self.store(row, index, files)
            row.received_batches = sorted([*row.received_batches, index])
            row.save(update_fields=fields)
        return stored, row

    def finish(self, row):
        """Mark a folder ready to be read once every part is there: (the row, whether this call made it
        so, and the caller is to queue it). Finishing twice queues it once."""
        with transaction.atomic():
            row = self.model.objects.select_for_update().get(pk=row.pk)
            if row.status != self.model.Status.RECEIVING:
                return row, False
            missing = missing_batches(row)
            if missing:
                raise Refused(f"{len(missing)} of the {row.expected_batches} parts of this folder have not arrived "
                              "yet. Press Resume, or pick the same folder again, to send them.", status=409,
                              missing_batches=missing)
            # queued_at: the reaper of lost messages counts from here, not from when the sending began
            fields = {"status": self.model.Status.QUEUED, "queued_at": timezone.now(), **self.when_ready(row)}
            for name, value in fields.items():
                setattr(row, name, value)
            row.save(update_fields=list(fields))
        return row, True

    # Folders whose sending stopped

    def abandoned(self, now: float) -> list:
        """The rows still receiving that got nothing for UPLOAD_ABANDON_S (now: a time.time())."""
        cutoff = now - settings.UPLOAD_ABANDON_S
        return [row for row in self.model.objects.filter(status=self.model.Status.RECEIVING)
                if row.created_at.timestamp() < cutoff and self.last_arrival(row) < cutoff]

    def abandon(self, row) -> bool:
        """Fail a row found abandoned, unless a part arrived or it was finished meanwhile."""
        Status = self.model.Status
        return bool(self.model.objects.filter(id=row.id, status=Status.RECEIVING).update(
            status=Status.FAILED, finished_at=timezone.now(), error=self.abandoned_message()))

    def abandoned_message(self) -> str:
        seconds = settings.UPLOAD_ABANDON_S
        span = (count(seconds // 86400, "day") if seconds % 86400 == 0
                else count(seconds // 3600, "hour") if seconds % 3600 == 0
                else count(seconds // 60, "minute"))
        return f"Abandoned: no {self.things} arrived for {span}. {self.abandoned_advice}"

    # The views

    def views(self, find, queue, finished_url):
        """The state, part and finish views, for the app's urls. find(request, **url kwargs): the row,
        for this person only (404 for others); queue(row): sends a ready row to its worker once the
        transaction commits; finished_url(row): the page the browser goes to once it has finished."""

        @login_required
        @require_GET
        def state(request, **kwargs):
            row = find(request, **kwargs)
            return JsonResponse({"status": row.status, "expected_batches": row.expected_batches,
                                 "received_batches": row.received_batches})

        @refusing_too_many_files(_too_many_files_in_part)
        @login_required
        @require_POST
        def part(request, index, **kwargs):
            row = find(request, **kwargs)
            form = FolderBatchForm(row, index, request.POST, request.FILES)
            if not form.is_valid():
                return refuse_form(form)
            try:
                stored, row = self.receive(row, index, form.batch)
            except Refused as refused:
                return refuse(str(refused), refused.status, **refused.extra)
            return JsonResponse({"stored": stored, "received_batches": row.received_batches})

        @login_required
        @require_POST
        def finish(request, **kwargs):
            try:
                row, ready_now = self.finish(find(request, **kwargs))
            except Refused as refused:
                return refuse(str(refused), refused.status, **refused.extra)
            if ready_now:  # finishing twice (the answer to the first was lost) queues it once
                queue(row)
            return JsonResponse({"status": row.status, "url": finished_url(row)})

        return state, part, finish
