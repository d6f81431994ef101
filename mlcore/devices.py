"""Setting TensorFlow up for the machine a run trains on.

Called once at the start of a training process, before TensorFlow has touched a device
(the training worker starts a fresh process for every run, see docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass

MIXED_PRECISION_MIN_CAPABILITY = (7, 0)  # Volta and later have the tensor cores float16 needs to be faster


@dataclass(frozen=True)
class Devices:
    gpus: list[str]  # their names, e.g. "NVIDIA H100 80GB HBM3"
    mixed_precision: bool

    def describe(self) -> str:
        if not self.gpus:
            return "CPU"
        names = {name: self.gpus.count(name) for name in self.gpus}
        text = ", ".join(f"{count} × {name}" if count > 1 else name for name, count in names.items())
        return text + (" (mixed precision)" if self.mixed_precision else "")


def configure(mixed_precision: bool = True) -> Devices:
    """Memory growth on every GPU, so TensorFlow takes memory as it needs it rather than all
    of it at once, and the mixed_float16 policy where every GPU supports it."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    names, capable = [], bool(gpus)
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # TensorFlow has already started on it; growth cannot change now
            pass
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
        capable = capable and tuple(details.get("compute_capability", (0, 0))) >= MIXED_PRECISION_MIN_CAPABILITY
    use_mixed = mixed_precision and capable
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    return Devices(names, use_mixed)
