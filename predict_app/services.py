"""Loaded models, kept warm in the web process between requests."""
import functools
import threading
from pathlib import Path

from mlcore.serving import ModelInfo, Predictor

_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(model_path: str, modified: float) -> Predictor:
    # `modified` is part of the key, so a replaced file is loaded again.
    path = Path(model_path)
    return Predictor(path, ModelInfo.from_json(path.with_suffix(".json").read_text()))


def predictor_for(run) -> Predictor:
    path = run.model_path
    with _lock:  # one thread loads a model; the others wait for it instead of loading it too
        return _load(str(path), path.stat().st_mtime)
