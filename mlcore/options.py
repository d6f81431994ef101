"""Every setting of a training run, each described once.

A setting's description holds all this project knows about it: its name, the words the form shows
(a label and a plain-words help), its allowed values, how the site builds it in Keras, and how the
exported program (mlcore/export.py) writes it. The form, the run's page, the worker and the code
export all read these tables, so adding an optimizer or a random change is one edit here.

Where the site and the exported program make the same Keras object, the description is one
`KerasCall`: the worker builds it, the export writes it as code, and the two cannot drift apart.

Values are described as JSON-ready dicts ("params": kind, label, default, range or choices, help),
the same shape the layer builder in the browser reads for layer settings (mlcore/builder.py), and
`check` is the one place such a value is checked.

No Django, and Keras only inside functions: the web process reads the words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import aspect
from .budget import TIME_BUDGETS


class SpecError(ValueError):
    """A setting of a run or of its network that this site does not allow, with the reason in plain
    words; `layer` is the 1-based number of the network layer it belongs to, if any."""

    def __init__(self, message: str, layer: int | None = None):
        super().__init__(message)
        self.message, self.layer = message, layer


# ---------------------------------------------------------------------------------------------
# Describing and checking values


def whole_param(label, default, low, high, help="", **extra) -> dict:
    return {"kind": "int", "label": label, "default": default, "min": low, "max": high, "help": help, **extra}


def number_param(label, default, low, high, help="", **extra) -> dict:
    return {"kind": "float", "label": label, "default": default, "min": low, "max": high, "help": help, **extra}


def choice_param(label, default, choices, help="", **extra) -> dict:
    """`choices`: [[value, words], ...], or a table of `Choice`s by value."""
    if isinstance(choices, dict):
        choices = [[value, choice.words] for value, choice in choices.items()]
    return {"kind": "choice", "label": label, "default": default, "choices": choices, "help": help, **extra}


def yes_no_param(label, default, help="", **extra) -> dict:
    return {"kind": "bool", "label": label, "default": default, "help": help, **extra}


def whole(value, low: int, high: int) -> int | None:
    """A value read from JSON as a whole number from `low` to `high` (True, 2.0 and "2" are not);
    None otherwise. (Text that a person typed is read by mlcore.words.whole_number.)"""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def check(value, param: dict, where: str, layer: int | None = None):
    """`value` as `param` allows it (a whole number stays an int, 2.0 included; True is no number);
    SpecError saying what is allowed otherwise."""
    label, kind = param["label"], param["kind"]
    if kind == "choice":
        allowed = [choice for choice, _ in param["choices"]]
        if isinstance(value, bool) or value not in allowed:
            raise SpecError(f"{where}: “{label}” must be one of {', '.join(map(str, allowed))}.", layer)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise SpecError(f"{where}: “{label}” must be true or false.", layer)
        return value
    if kind == "int":
        # A setting stored as JSON may have become 2.0 on its way (a JavaScript number, a float column).
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        number = whole(value, param["min"], param["max"])
        if number is None:
            raise SpecError(f"{where}: “{label}” must be a whole number from {param['min']} to {param['max']}.", layer)
        return number
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not param["min"] <= value <= param["max"]:
        raise SpecError(f"{where}: “{label}” must be a number from {param['min']} to {param['max']}.", layer)
    return float(value)


# ---------------------------------------------------------------------------------------------
# One Keras call, built by the site and written by the export


class Code:
    """A value the exported program writes as `text` (a name such as SEED, or a sum a reader can
    follow, such as "10 / 360"), while the site uses `value` itself."""

    __slots__ = ("text", "value")

    def __init__(self, text: str, value):
        self.text, self.value = text, value


@dataclass(frozen=True)
class KerasCall:
    """A Keras constructor and its arguments: `build()` makes the object for the worker, `code()`
    writes the same call into the exported program. Arguments are numbers, fixed strings, tuples
    and lists of those, or `Code`."""

    function: str  # as the exported program spells it: "layers.RandomZoom", "keras.optimizers.SGD"
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def build(self, **more):
        import keras

        target = keras
        for part in self.function.removeprefix("keras.").split("."):
            target = getattr(target, part)
        return target(*map(_value, self.args), **{name: _value(v) for name, v in self.kwargs.items()}, **more)

    def code(self, indent: str = "") -> str:
        """The call as Python; its arguments on lines of their own when it would not fit in 100 columns."""
        parts = [*map(_text, self.args), *(f"{name}={_text(v)}" for name, v in self.kwargs.items())]
        one_line = f"{self.function}({', '.join(parts)})"
        if len(indent) + len(one_line) <= 100:
            return one_line
        return f"{self.function}(\n" + "".join(f"{indent}    {part},\n" for part in parts) + f"{indent})"


def _value(value):
    if isinstance(value, Code):
        return value.value
    if isinstance(value, (list, tuple)):
        return type(value)(map(_value, value))
    return value


def _text(value) -> str:
    if isinstance(value, Code):
        return value.text
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_text, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(_text, value)) + "]"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} as code")


def quote(text: str) -> str:
    """A string literal in double quotes, as the exported program writes them; repr() escapes
    whatever the text holds, so no text can end the string and become code."""
    return '"' + repr(text)[1:-1] + '"' if "'" not in text and '"' not in text else repr(text)


# ---------------------------------------------------------------------------------------------
# The choices


@dataclass(frozen=True)
class Choice:
    label: str  # its name on the pages: "Adam", "Cosine"
    help: str = ""  # what it does, in plain words

    @property
    def words(self) -> str:
        """The label and its help, as the form and the run's page show them."""
        return f"{self.label}: {self.help}" if self.help else self.label


@dataclass(frozen=True)
class Optimizer(Choice):
    call: Callable[[Code], KerasCall] = None  # (the learning rate or schedule) -> the optimizer


OPTIMIZERS = {
    "adam": Optimizer("Adam", "adapts the step size by itself; the usual choice",
                      lambda rate: KerasCall("keras.optimizers.Adam", kwargs={"learning_rate": rate})),
    "sgd": Optimizer("SGD with momentum", "plain gradient descent; often best with a schedule and more epochs",
                     lambda rate: KerasCall("keras.optimizers.SGD", kwargs={"learning_rate": rate, "momentum": 0.9})),
    "rmsprop": Optimizer("RMSprop", "", lambda rate: KerasCall("keras.optimizers.RMSprop",
                                                                kwargs={"learning_rate": rate})),
}


def make_optimizer(name: str, learning_rate):
    """A Keras optimizer from a preset's (or a run's) name and learning rate (a number or a schedule)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    return OPTIMIZERS[name].call(Code("learning_rate", learning_rate)).build()


def _step_boundaries(total_steps: int) -> list[int]:
    # The step schedule below writes the same sums into the exported program (tests/test_code_export.py
    # runs it and compares the two schedules step by step).
    return [max(1, total_steps // 2), max(2, 3 * total_steps // 4)]


@dataclass(frozen=True)
class Schedule(Choice):
    comment: str = ""  # what the exported program says above it
    # (learning rate, total optimizer steps) -> the schedule; None keeps the learning rate as it is.
    call: Callable[[float, int], KerasCall] | None = None
    # Fits a built schedule to a new number of steps (a time budget that turned out shorter).
    refit: Callable[[object, int], None] | None = None


def _set_boundaries(schedule, total_steps):
    schedule.boundaries = _step_boundaries(total_steps)


def _set_decay_steps(schedule, total_steps):
    schedule.decay_steps = max(1, total_steps)


SCHEDULES = {
    "constant": Schedule(
        "Constant", "the same step size all the way",
        "The step size stays the same all the way (total_steps is only needed by a schedule)."),
    "step": Schedule(
        "Steps", "ten times smaller after half the epochs, and again after three quarters",
        "Step schedule: ten times smaller steps after half the training, and again after three quarters.",
        lambda rate, steps: KerasCall("keras.optimizers.schedules.PiecewiseConstantDecay", (
            Code("[max(1, total_steps // 2), max(2, 3 * total_steps // 4)]", _step_boundaries(steps)),
            Code("[learning_rate, learning_rate / 10, learning_rate / 100]", [rate, rate / 10, rate / 100]))),
        _set_boundaries),
    "cosine": Schedule(
        "Cosine", "starts at the step size and glides smoothly down to almost nothing",
        "Cosine schedule: the step size glides smoothly down to 1% of where it started.",
        lambda rate, steps: KerasCall("keras.optimizers.schedules.CosineDecay", (
            Code("learning_rate", rate), Code("max(1, total_steps)", max(1, steps))), {"alpha": 0.01}),
        _set_decay_steps),
}


def make_schedule(name: str, learning_rate: float, total_steps: int):
    """A learning rate, or a Keras schedule over `total_steps` optimizer steps."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r}")
    call = SCHEDULES[name].call
    return call(learning_rate, total_steps).build() if call else learning_rate


def refit_schedule(name: str, schedule, total_steps: int):
    """Fit a make_schedule() schedule to `total_steps` optimizer steps (a constant has nothing to fit)."""
    refit = SCHEDULES[name].refit
    if refit:
        refit(schedule, max(1, total_steps))


def class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """Keras' class_weight for "auto": n / (classes present × images of the class), the
    "balanced" rule of scikit-learn, so a class with half the images counts twice as much."""
    counts = np.bincount(y, minlength=num_classes)
    present = int((counts > 0).sum())
    return {label: (len(y) / (present * count) if count else 1.0) for label, count in enumerate(counts.tolist())}


@dataclass(frozen=True)
class Balance(Choice):
    weights: Callable[[np.ndarray, int], dict] | None = None  # (labels, classes) -> Keras' class_weight
    code: str = ""  # the same rule as a function of the exported program, class_weights(train_ds)


BALANCES = {
    "none": Balance("No", "every image counts the same"),
    "auto": Balance("Automatic", "images of rare classes count more, so that every class matters equally",
                    class_weights, '''
def class_weights(train_ds):
    """Pictures of rare classes count more, so that every class matters equally:
    weight = pictures / (classes x pictures of the class)."""
    labels = [CLASS_NAMES.index(Path(path).parent.name) for path in train_ds.file_paths]
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    present = np.count_nonzero(counts)
    return {number: (len(labels) / (present * count) if count else 1.0) for number, count in enumerate(counts)}

'''),
}


@dataclass(frozen=True)
class Resize(Choice):
    shape: Callable[[np.ndarray, float], np.ndarray] | None = None  # to the aspect before resizing; None squashes
    code: str = ""  # the image_dataset_from_directory argument line that does the same


RESIZE_MODES = {
    "squash": Resize(
        "Squash", "stretch the whole picture to the square (nothing is cut off; shapes may look wider or taller)",
        None, "        # pictures that are not square are squashed (stretched) to the square, as on the site\n"),
    "crop": Resize(
        "Centre crop", "cut the middle square out of the picture, then resize (shapes keep their proportions; "
                       "the edges are lost)",
        aspect.centre_crop,
        "        crop_to_aspect_ratio=True,  # cut the middle square out of each picture, then resize\n"),
    "pad": Resize(
        "Pad", "fit the whole picture inside the square and fill the rest with black (nothing is cut off or "
               "stretched)",
        aspect.pad,
        "        pad_to_aspect_ratio=True,  # fit the whole picture in the square, fill the rest with black\n"),
}


def loss_call(label_smoothing: float) -> KerasCall:
    """The loss: cross-entropy, on one-hot labels when smoothing them (which needs them), else on class numbers."""
    if label_smoothing:
        return KerasCall("keras.losses.CategoricalCrossentropy",
                         kwargs={"label_smoothing": Code("LABEL_SMOOTHING", label_smoothing)})
    return KerasCall("keras.losses.SparseCategoricalCrossentropy")


# ---------------------------------------------------------------------------------------------
# Random changes to the training pictures (augmentation)


@dataclass(frozen=True)
class RandomChange:
    """Keras preprocessing layers inside the model: they act only while training (a saved model passes
    pictures through untouched) and cost no disk space. Settings are in degrees and percent, which
    people read more easily than Keras' fractions."""

    param: dict  # the form's field; its default is "off"
    call: Callable[[object, Code], KerasCall]  # (value, seed) -> the Keras layer
    words: Callable[[object], str]  # "rotate up to 10°": the run's page, and a comment in the program


FLIPS = [["none", "no flipping"], ["horizontal", "left–right"], ["vertical", "upside down"],
         ["horizontal_and_vertical", "left–right and upside down"]]

# In the order Keras' own examples use. They work on raw 0-255 pixels (value_range), before the model scales them.
AUGMENTATIONS = {
    "flip": RandomChange(
        choice_param("Flip", "none", FLIPS,
                     "Left–right suits most photos; not for digits or letters, which mean something else mirrored."),
        lambda value, seed: KerasCall("layers.RandomFlip", (value,), {"seed": seed}),
        lambda value: f"flip {dict(FLIPS)[value]}"),
    "rotation": RandomChange(
        whole_param("Rotate up to (degrees)", 0, 0, 180, "Turns each picture by a random angle up to this."),
        lambda value, seed: KerasCall("layers.RandomRotation", (Code(f"{value} / 360", value / 360),),
                                      {"fill_mode": "constant", "seed": seed}),
        lambda value: f"rotate up to {value}° either way"),
    "zoom": RandomChange(
        whole_param("Zoom up to (%)", 0, 0, 50, "Zooms in or out at random by up to this much."),
        lambda value, seed: KerasCall("layers.RandomZoom", (value / 100,), {"fill_mode": "constant", "seed": seed}),
        lambda value: f"zoom in or out up to {value}%"),
    "translation": RandomChange(
        whole_param("Shift up to (%)", 0, 0, 50, "Moves the picture sideways and up or down at random."),
        lambda value, seed: KerasCall("layers.RandomTranslation", (value / 100, value / 100),
                                      {"fill_mode": "constant", "seed": seed}),
        lambda value: f"shift up to {value}%"),
    "contrast": RandomChange(
        whole_param("Contrast change up to (%)", 0, 0, 90, "Makes the picture flatter or punchier at random."),
        lambda value, seed: KerasCall("layers.RandomContrast", (value / 100,), {"value_range": (0, 255), "seed": seed}),
        lambda value: f"contrast up to {value}%"),
    "brightness": RandomChange(
        whole_param("Brightness change up to (%)", 0, 0, 90, "Makes the picture darker or lighter at random."),
        lambda value, seed: KerasCall("layers.RandomBrightness", (value / 100,),
                                      {"value_range": (0, 255), "seed": seed}),
        lambda value: f"brightness up to {value}%"),
}


def normalise_augmentation(augmentation) -> dict:
    """Every augmentation setting checked, missing ones off: what to store on a run."""
    if augmentation is None:
        augmentation = {}
    if not isinstance(augmentation, dict):
        raise SpecError("The random changes (augmentation) must be a set of named settings.")
    unknown = set(augmentation) - set(AUGMENTATIONS)
    if unknown:
        raise SpecError(f"The random changes have a setting this site does not know: {min(unknown)[:40]}.")
    return {name: check(augmentation.get(name, change.param["default"]), change.param, "Random changes")
            for name, change in AUGMENTATIONS.items()}


def augmentation_calls(augmentation, seed: Code) -> list[tuple[str, KerasCall]]:
    """(name, layer) for each random change that is on, in AUGMENTATIONS' order; [] when all are off."""
    clean = normalise_augmentation(augmentation)
    return [(name, change.call(clean[name], seed)) for name, change in AUGMENTATIONS.items()
            if clean[name] != change.param["default"]]


def augmentation_is_on(augmentation) -> bool:
    return bool(augmentation_calls(augmentation, Code("SEED", None)))


def augmentation_layers(augmentation, seed: int | None = None) -> list:
    """The Keras layers of the settings that are on, named random_flip, random_rotation, ..."""
    return [call.build(name=f"random_{name}") for name, call in augmentation_calls(augmentation, Code("SEED", seed))]


def augmentation_in_words(augmentation) -> str:
    """"flip left–right, rotate up to 10° either way", or "Off"."""
    clean = normalise_augmentation(augmentation)
    parts = [change.words(clean[name]) for name, change in AUGMENTATIONS.items()
             if clean[name] != change.param["default"]]
    return ", ".join(parts) if parts else "Off"


# ---------------------------------------------------------------------------------------------
# The settings of a run, as the form shows them and the exported program writes them ("comment")

# 320 leaves room above EfficientNet-Lite2's own 260 pixels, which the 15-minute plan for photos uses.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 320

SETTINGS = {
    "image_size": whole_param(
        "Image size (pixels)", None, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE,
        "Every image is resized to this many pixels square.",
        comment="pictures are resized to IMAGE_SIZE x IMAGE_SIZE pixels"),
    "channels": choice_param(
        "Colour", 3, [[1, "Grayscale (1 channel)"], [3, "Colour (3 channels: red, green, blue)"]],
        "Grayscale pictures are quicker to learn from; colour keeps what colour tells apart."),
    "resize_mode": choice_param("Pictures that are not square", "squash", RESIZE_MODES,
                                "How a picture that is not square becomes a square."),
    "epochs": whole_param("Epochs", 10, 1, 500, "How many times the network sees every training image.",
                          comment="passes over the training pictures"),
    "batch_size": whole_param("Batch size", 32, 1, 4096,
                              "Images per training step. Bigger batches are quicker on a GPU; smaller ones often "
                              "learn better from few images.", comment="pictures per training step"),
    "optimizer": choice_param("Learning method (optimizer)", "adam", OPTIMIZERS,
                              "How each step changes the network. Choosing a ready-made network sets the one it "
                              "trains best with."),
    "learning_rate": number_param("Step size (learning rate)", 0.001, 1e-6, 1.0,
                                  "How big each learning step is. 0.001 suits most cases.",
                                  comment="the size of each training step"),
    "lr_schedule": choice_param("Step size over time", "constant", SCHEDULES,
                                "Whether the step size stays the same or shrinks as training goes on."),
    "early_stopping_patience": whole_param(
        "Stop early after", 0, 0, 100,
        "Epochs without a lower validation loss (how wrong it is on the validation images) before training "
        "stops by itself and goes back to its best epoch, the one with the lowest validation loss. "
        "0 trains every epoch.",
        comment="stop after this many epochs without a better validation loss"),
    "class_weighting": choice_param("Balance the classes", "none", BALANCES,
                                    "Whether classes with few images should count as much as big ones."),
    "label_smoothing": number_param(
        "Label smoothing", 0.0, 0.0, 0.5,
        "Makes the network a little less sure of itself (0.1 is usual); 0 turns it off.",
        comment="aim a little below 100% sure, which makes the model less overconfident"),
    "seed": whole_param("Random seed", 1337, 0, 2**31 - 1,
                        "The same seed and settings give the same shuffling and starting network.",
                        comment="the same seed gives the same random choices each time"),
    "fine_tune_epochs": whole_param(
        "Fine-tuning epochs", 0, 0, 200,
        "Only for transfer learning with layers to fine-tune: extra epochs at the lower step size below."),
    "fine_tune_learning_rate": number_param("Fine-tuning step size", 0.00001, 1e-8, 0.1,
                                            comment="much smaller steps, not to wreck what it learned"),
    "time_budget_s": choice_param(
        "About how long can this take?", 0, [list(budget) for budget in TIME_BUDGETS],
        "Training stops in time: after the first epoch the worker knows how many more fit, and trains that many "
        "(at most the epochs above), with the step size shrinking to fit. Testing and saving take the last "
        "twentieth."),
    "use_all_gpus": yes_no_param(
        "Use every GPU of the worker", False,
        "Train on all the GPUs of the machine that trains, sharing each batch between them. Leave it off unless "
        "the worker has several GPUs."),
}


def setting(settings: dict, name: str):
    """The run's value of setting `name`, checked (its default when absent); SpecError otherwise."""
    param = SETTINGS[name]
    value = settings.get(name)
    return check(param["default"] if value is None else value, param, "The run's settings")


def default(name: str):
    """What setting `name` is when nobody chose it."""
    return SETTINGS[name]["default"]


def choices(name: str) -> list[tuple]:
    """A choice setting's (value, words) pairs, for a model field's or a form field's choices."""
    return [tuple(pair) for pair in SETTINGS[name]["choices"]]
