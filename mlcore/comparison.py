"""Comparing training runs of one dataset, with no Django: their settings side by side with the rows
that differ marked, each class's F1 side by side, and the test pictures one run got right and another
wrong. training_app/compare.py fetches the runs and hands their figures to these."""
from __future__ import annotations

from dataclasses import dataclass, field


def settings_side_by_side(rows_per_run: list[list[tuple[str, str]]], missing: str = "–") -> list[dict]:
    """One row per setting named by any run, in the order the runs name them, with each run's value
    (`missing` where a run has no such row, e.g. no fine-tuning) and whether the values differ."""
    names: list[str] = []
    for rows in rows_per_run:
        names += [name for name, _ in rows if name not in names]
    table = []
    for name in names:
        values = [dict(rows).get(name, missing) for rows in rows_per_run]
        table.append({"name": name, "values": values, "differ": len(set(values)) > 1})
    return table


def per_class_side_by_side(per_class_per_run: list[list[dict] | None]) -> list[dict]:
    """Each class's F1 in each run, classes by name (runs on different versions may not have the same
    classes): one row per class, in the order the runs list them, a value None where a run has no
    figure for it. `best` marks the runs with the highest F1 of the row when they are not all equal."""
    names: list[str] = []
    for rows in per_class_per_run:
        names += [row["name"] for row in rows or [] if row["name"] not in names]
    table = []
    for name in names:
        values = []
        for rows in per_class_per_run:
            found = next((row for row in rows or [] if row["name"] == name), None)
            values.append(None if found is None else found.get("f1"))
        table.append({"name": name, "values": values, "best": best_of(values)})
    return table


def best_of(values: list[float | None]) -> list[bool]:
    """Which of `values` are the highest, where there is a difference to show (all equal: none)."""
    known = [value for value in values if value is not None]
    if len(set(known)) < 2:
        return [False] * len(values)
    top = max(known)
    return [value == top for value in values]


@dataclass
class PictureResults:
    """What one run said of its test pictures, as far as it was kept.

    `tested`: image id -> the class the picture had in the run's dataset version. `wrong`: image id ->
    the class the model said, for the mistakes kept, most confident first. `complete`: every mistake
    is in `wrong`, so a tested picture not in it was answered right; a run that kept only its most
    confident mistakes is not complete, and its other pictures may be right or wrong. `missing`: why a
    run has no per-picture results at all ("" when it has them).
    """

    tested: dict[int, str] = field(default_factory=dict)
    wrong: dict[int, str] = field(default_factory=dict)
    complete: bool = False
    missing: str = ""

    def answer(self, image_id: int) -> bool | None:
        """True when it answered the picture right, False when wrong, None when that is not known."""
        if image_id in self.wrong:
            return False
        if self.complete and image_id in self.tested:
            return True
        return None


@dataclass
class PictureDifference:
    shared: int  # test pictures both runs were tested on
    first_only: list[int]  # image ids the first run got right and the second wrong
    second_only: list[int]  # image ids the second run got right and the first wrong
    unknown: int  # pictures one run got wrong where the other's answer was not kept


def picture_differences(first: PictureResults, second: PictureResults) -> PictureDifference:
    """The test pictures both runs were tested on (on different dataset versions, only those) that one
    got right and the other wrong, in the order of the mistakes (most confident first)."""
    shared = first.tested.keys() & second.tested.keys()
    first_only, second_only, unknown = [], [], 0
    for image_id in second.wrong:
        if image_id in shared and image_id not in first.wrong:
            if first.answer(image_id):
                first_only.append(image_id)
            else:
                unknown += 1
    for image_id in first.wrong:
        if image_id in shared and image_id not in second.wrong:
            if second.answer(image_id):
                second_only.append(image_id)
            else:
                unknown += 1
    return PictureDifference(len(shared), first_only, second_only, unknown)
