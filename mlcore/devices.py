"""Setting TensorFlow up for the machine a run trains on, and which GPUs a process may use.

`configure` is called once at the start of a training process, before TensorFlow has touched a
device (the training worker starts a fresh process for every run, see docs/architecture.md).
`visible_gpus` asks the driver, not TensorFlow: a worker answers it for the queue page.
"""
from __future__ import annotations

import os
import re
import subprocess
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


def configure(mixed_precision: bool = True, threads: int | None = None) -> Devices:
    """Memory growth on every GPU, so TensorFlow takes memory as it needs it rather than all
    of it at once, and the mixed_float16 policy where every GPU supports it.

    `threads` caps TensorFlow's own thread pools: on a machine of few cores shared with the web
    server, a run that takes every core makes the pages slow (TRAINING_THREADS in the settings)."""
    import keras
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already runs in this process (a test); its pools stay as they are
            pass
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


# A line of `nvidia-smi -L`: "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5c1c...)".
GPU_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: (\S+)\)")


def visible_gpus(listing: str | None = None, cuda_visible_devices: str | None = None) -> list[str]:
    """The GPUs this process may use, as "GPU 0: NVIDIA H100 80GB HBM3", numbered as the driver
    numbers them; [] means it trains on the CPU.

    From `nvidia-smi -L` (`listing`, run here when not given), not TensorFlow, which the web process
    must not load and which would take seconds. CUDA_VISIBLE_DEVICES (the environment's when not
    given), when set, narrows the list down as CUDA does: its entries are GPU numbers or UUIDs, and
    CUDA stops at the first entry that names no GPU ("" or "-1" hides them all)."""
    if listing is None:
        listing = _nvidia_smi_listing()
    if cuda_visible_devices is None:
        cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = [match.groups() for match in map(GPU_LINE.match, listing.splitlines()) if match]
    if cuda_visible_devices is not None:
        chosen = []
        for entry in cuda_visible_devices.split(","):
            entry = entry.strip()
            found = [gpu for gpu in gpus if entry == gpu[0] or (entry.startswith("GPU-") and gpu[2].startswith(entry))]
            if not found:
                break
            chosen.append(found[0])
        gpus = chosen
    return [f"GPU {number}: {name}" for number, name, _ in gpus]


def _nvidia_smi_listing() -> str:
    """What `nvidia-smi -L` prints, or "" on a machine without NVIDIA's driver. A driver in a bad
    state can hang it, hence the time limit."""
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
