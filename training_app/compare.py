"""The "Compare runs" page (/runs/compare/?runs=1,2,3): which runs an address names, and what the page
shows of them. The comparing itself is in mlcore/comparison.py; this reads the runs' rows and files."""
from __future__ import annotations

from datasets_app.models import Image
from datasets_app.versions import manifest_rows
from mlcore.comparison import (
    PictureResults,
    best_of,
    per_class_side_by_side,
    picture_differences,
    settings_side_by_side,
)
from mlcore.words import whole_number

from .presenters import settings_in_words

MAX_RUNS = 8  # as many as the curves can tell apart by colour, and a table can show side by side
# The colours of the runs' curves and of their columns' markers, in the order the runs were picked.
COLOURS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"]


class CompareError(Exception):
    """A reason the page cannot compare what the address asks for, in words; `status` is the answer's."""

    def __init__(self, text, status=400):
        super().__init__(text)
        self.text, self.status = text, status


def run_ids(values: list[str]) -> list[int]:
    """The run numbers of ?runs=1,2,3 (or ?runs=1&runs=2, as the runs table's form sends them), each
    once, in the order given."""
    ids = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            number = whole_number(part)
            if number is None:
                raise CompareError(f"“{part.strip()[:20]}” is not a run number. Pick the runs to compare "
                                   "in the table of a dataset's runs.")
            if number not in ids:
                ids.append(number)
    if len(ids) < 2:
        raise CompareError("Pick at least two runs to compare: tick them in the table of a dataset's runs, "
                           "then press “Compare”.")
    if len(ids) > MAX_RUNS:
        raise CompareError(f"Pick at most {MAX_RUNS} runs to compare at once.")
    return ids


def runs_to_compare(runs_visible, ids):
    """The runs named, in the order named: all of the person's own and of one dataset."""
    found = {run.id: run for run in runs_visible.filter(id__in=ids).select_related("dataset", "version")}
    absent = [i for i in ids if i not in found]
    if absent:  # someone else's run reads the same as one that does not exist
        names = ", ".join(str(i) for i in absent)
        raise CompareError(f"You have no run {names}: it may have been deleted.", status=404)
    runs = [found[i] for i in ids]
    if len({run.dataset_id for run in runs}) > 1:
        raise CompareError("These runs are on different datasets. Only runs of one dataset can be compared: "
                           "they are tested on the same kind of pictures.")
    return runs


def comparison(runs):
    """Everything the page draws, for runs of one dataset."""
    colours = {run.id: COLOURS[i % len(COLOURS)] for i, run in enumerate(runs)}
    settings_rows = [[("Dataset version", _version_words(run))] + settings_in_words(run) for run in runs]
    accuracies = [run.test_accuracy for run in runs]
    return {
        "runs": [{"run": run, "colour": colours[run.id]} for run in runs],
        "curves": [{"id": run.id, "name": f"Run {run.id}", "colour": colours[run.id],
                    "metrics": list(run.epoch_metrics.values("epoch", "loss", "accuracy", "val_loss", "val_accuracy"))}
                   for run in runs],
        "settings": settings_side_by_side(settings_rows),
        "accuracy": [{"percent": run.test_accuracy_percent, "count": run.test_count, "best": best}
                     for run, best in zip(runs, best_of(accuracies))],
        "f1": [{**row, "values": [(None if value is None else round(100 * value, 1), best)
                                  for value, best in zip(row["values"], row["best"])]}
               for row in per_class_side_by_side([run.per_class for run in runs])],
        "untested": [run for run in runs if run.test_accuracy is None],
        "pictures": picture_pairs(runs),
    }


def _version_words(run):
    return f"Version {run.version.number}" if run.version else "Not recorded (an older run)"


def picture_results(run, manifests) -> PictureResults:
    """What `run` said of its test pictures: its answer to each (PictureAnswer rows), or for a run from
    before those were kept, the test pictures of its dataset version (`manifests` keeps each version's, read
    once) and its list of mistakes, which is complete unless it had more than the most confident few it
    keeps (mlcore/evaluation.py)."""
    if run.test_accuracy is None:
        return PictureResults(missing="it has no test result")
    answers = list(run.test_answers.values_list("image_id", "true_class", "predicted_class"))
    if answers:  # every test picture's answer, kept since runs keep them (PictureAnswer): complete
        names = run.class_names

        def name(position):
            return names[position] if 0 <= position < len(names) else "?"
        return PictureResults(tested={image: name(true) for image, true, _ in answers},
                              wrong={image: name(said) for image, true, said in answers if said != true}, complete=True)
    if run.version is None or run.wrong is None:
        return PictureResults(missing="it finished before runs kept which test pictures they got wrong")
    if run.version_id not in manifests:
        try:
            manifests[run.version_id] = {row["image_id"]: row["label"] for row in manifest_rows(run.version)
                                         if row["split"] == "test"}
        except (FileNotFoundError, OSError, ValueError):
            manifests[run.version_id] = None
    tested = manifests[run.version_id]
    if tested is None:
        return PictureResults(missing="the list of its dataset version's pictures is no longer kept")
    wrong = {int(i): run.class_names[p] if 0 <= p < len(run.class_names) else "?" for i, p, _ in run.wrong}
    mistakes = _mistakes(run)
    # Every mistake listed, and every test picture of the version tested (a picture whose file was
    # removed before the run was left out of it): then a picture not in the list was answered right.
    complete = mistakes is not None and len(wrong) >= mistakes and len(tested) == run.test_count
    return PictureResults(tested=tested, wrong=wrong, complete=complete)


def _mistakes(run):
    if run.confusion:
        return sum(map(sum, run.confusion)) - sum(row[i] for i, row in enumerate(run.confusion) if i < len(row))
    if run.test_count:
        return round((1 - run.test_accuracy) * run.test_count)
    return None


def picture_pairs(runs):
    """Each run after the first against the first: the test pictures one got right and the other wrong,
    as the page shows them, with what is missing said in words."""
    manifests: dict = {}
    results = {run.id: picture_results(run, manifests) for run in runs}
    first = runs[0]
    pairs, shown_ids = [], set()
    for other in runs[1:]:
        a, b = results[first.id], results[other.id]
        pair = {"first": first, "other": other, "missing": [], "limited": [], "difference": None}
        for run, result in ((first, a), (other, b)):
            if result.missing:
                pair["missing"].append(f"Run {run.id} cannot be compared picture by picture: {result.missing}.")
            elif not result.complete:
                pair["limited"].append(
                    f"Run {run.id} kept only its {len(result.wrong)} most confident mistakes, so its answers to "
                    "its other test pictures are not known: pictures it may have got wrong are left out here.")
        if not pair["missing"]:
            difference = picture_differences(a, b)
            pair["difference"] = difference
            pair["same_version"] = first.version_id == other.version_id
            pair["first_right"] = _items(difference.first_only, a, b)
            pair["other_right"] = _items(difference.second_only, b, a)
            shown_ids.update(difference.first_only + difference.second_only)
        pairs.append(pair)
    images = {image.id: image for image in Image.objects.filter(dataset=first.dataset, id__in=shown_ids)}
    for pair in pairs:
        for key in ("first_right", "other_right"):
            # A picture removed from the dataset since is left out: there is nothing to show.
            pair[key] = [{**item, "image": images[item["id"]]} for item in pair.get(key, []) if item["id"] in images]
    return pairs


def _items(ids, right, wrong):
    """The pictures `right` answered right and `wrong` answered wrong: their class (in each run's version,
    which says both when the label changed between them) and the wrong answer."""
    items = []
    for image_id in ids:
        label, other_label = right.tested.get(image_id), wrong.tested.get(image_id)
        items.append({"id": image_id, "label": label, "other_label": other_label if other_label != label else None,
                      "said": wrong.wrong[image_id]})
    return items
