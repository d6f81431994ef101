"""`python -m mlcore.export_check KIND FOLDER INPUTS.npy OUTPUTS.npy`: the probabilities an exported
model gives, computed in a fresh process (started by mlcore.formats), so that each format is loaded
by its own runtime as its users would load it, with nothing of the exporting process reused."""
import sys
from pathlib import Path

import numpy as np

from mlcore.formats import load_and_predict


def main(kind: str, folder: str, inputs: str, outputs: str):
    np.save(outputs, load_and_predict(kind, Path(folder), np.load(inputs)))


if __name__ == "__main__":
    main(*sys.argv[1:])
