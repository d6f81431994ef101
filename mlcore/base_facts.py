"""What the layer builder needs to know of each pretrained base, without building it.

Building a pretrained base in Keras to read its output shape and parameter counts cost the web
process about 180 MB a check, kept until restart. These facts do not depend on the input size
except the output's sides: every base halves the picture five times, rounding up (its strided
layers pad like "same"), so a side of n pixels becomes ceil(n / 32), with 1280 feature maps.

`FINE_TUNABLE` lists, for each layer of the base in order, the parameters fine-tuning trains when
that layer is among the unfrozen top ones (0 for batch normalisation, which builder.unfreeze_top
keeps frozen, and for layers without weights). tests/test_builder_shapes.py checks every number
against Keras (builder.measure_base); `python -m mlcore.builder` prints them afresh after an upgrade.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BaseFacts:
    params: int  # count_params() of the base, all weights, trainable or not
    output_channels: int
    downscale: int  # each side of the output is ceil(side / downscale)
    fine_tunable: tuple[int, ...]  # per layer, in order (see the module's docstring)

    @property
    def layers(self) -> int:
        return len(self.fine_tunable)

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (math.ceil(height / self.downscale), math.ceil(width / self.downscale), self.output_channels)

    def fine_tuned_params(self, top_layers: int) -> int:
        """Parameters trained when the top `top_layers` layers are unfrozen (builder.unfreeze_top)."""
        return sum(self.fine_tunable[len(self.fine_tunable) - top_layers:]) if top_layers > 0 else 0


# Measured with Keras 3.15.1 (python -m mlcore.builder).
FACTS = {
    "efficientnet_lite0": BaseFacts(3413024, 1280, 32, (
        0, 864, 0, 0, 288, 0, 0, 512, 0, 1536, 0, 0, 864, 0, 0, 2304, 0, 3456, 0, 0, 1296, 0, 0, 3456, 0, 0,
        3456, 0, 0, 3600, 0, 0, 5760, 0, 9600, 0, 0, 6000, 0, 0, 9600, 0, 0, 9600, 0, 0, 2160, 0, 0, 19200, 0,
        38400, 0, 0, 4320, 0, 0, 38400, 0, 0, 38400, 0, 0, 4320, 0, 0, 38400, 0, 0, 38400, 0, 0, 12000, 0, 0,
        53760, 0, 75264, 0, 0, 16800, 0, 0, 75264, 0, 0, 75264, 0, 0, 16800, 0, 0, 75264, 0, 0, 75264, 0, 0,
        16800, 0, 0, 129024, 0, 221184, 0, 0, 28800, 0, 0, 221184, 0, 0, 221184, 0, 0, 28800, 0, 0, 221184, 0,
        0, 221184, 0, 0, 28800, 0, 0, 221184, 0, 0, 221184, 0, 0, 10368, 0, 0, 368640, 0, 409600, 0, 0,
    )),
    "efficientnet_lite1": BaseFacts(4189344, 1280, 32, (
        0, 864, 0, 0, 288, 0, 0, 512, 0, 1536, 0, 0, 864, 0, 0, 2304, 0, 3456, 0, 0, 1296, 0, 0, 3456, 0, 0,
        3456, 0, 0, 1296, 0, 0, 3456, 0, 0, 3456, 0, 0, 3600, 0, 0, 5760, 0, 9600, 0, 0, 6000, 0, 0, 9600, 0, 0,
        9600, 0, 0, 6000, 0, 0, 9600, 0, 0, 9600, 0, 0, 2160, 0, 0, 19200, 0, 38400, 0, 0, 4320, 0, 0, 38400, 0,
        0, 38400, 0, 0, 4320, 0, 0, 38400, 0, 0, 38400, 0, 0, 4320, 0, 0, 38400, 0, 0, 38400, 0, 0, 12000, 0, 0,
        53760, 0, 75264, 0, 0, 16800, 0, 0, 75264, 0, 0, 75264, 0, 0, 16800, 0, 0, 75264, 0, 0, 75264, 0, 0,
        16800, 0, 0, 75264, 0, 0, 75264, 0, 0, 16800, 0, 0, 129024, 0, 221184, 0, 0, 28800, 0, 0, 221184, 0, 0,
        221184, 0, 0, 28800, 0, 0, 221184, 0, 0, 221184, 0, 0, 28800, 0, 0, 221184, 0, 0, 221184, 0, 0, 28800,
        0, 0, 221184, 0, 0, 221184, 0, 0, 10368, 0, 0, 368640, 0, 409600, 0, 0,
    )),
    "efficientnet_lite2": BaseFacts(4869168, 1280, 32, (
        0, 864, 0, 0, 288, 0, 0, 512, 0, 1536, 0, 0, 864, 0, 0, 2304, 0, 3456, 0, 0, 1296, 0, 0, 3456, 0, 0,
        3456, 0, 0, 1296, 0, 0, 3456, 0, 0, 3456, 0, 0, 3600, 0, 0, 6912, 0, 13824, 0, 0, 7200, 0, 0, 13824, 0,
        0, 13824, 0, 0, 7200, 0, 0, 13824, 0, 0, 13824, 0, 0, 2592, 0, 0, 25344, 0, 46464, 0, 0, 4752, 0, 0,
        46464, 0, 0, 46464, 0, 0, 4752, 0, 0, 46464, 0, 0, 46464, 0, 0, 4752, 0, 0, 46464, 0, 0, 46464, 0, 0,
        13200, 0, 0, 63360, 0, 86400, 0, 0, 18000, 0, 0, 86400, 0, 0, 86400, 0, 0, 18000, 0, 0, 86400, 0, 0,
        86400, 0, 0, 18000, 0, 0, 86400, 0, 0, 86400, 0, 0, 18000, 0, 0, 149760, 0, 259584, 0, 0, 31200, 0, 0,
        259584, 0, 0, 259584, 0, 0, 31200, 0, 0, 259584, 0, 0, 259584, 0, 0, 31200, 0, 0, 259584, 0, 0, 259584,
        0, 0, 31200, 0, 0, 259584, 0, 0, 259584, 0, 0, 11232, 0, 0, 439296, 0, 450560, 0, 0,
    )),
    "mobilenetv2": BaseFacts(2257984, 1280, 32, (
        0, 864, 0, 0, 288, 0, 0, 512, 0, 1536, 0, 0, 0, 864, 0, 0, 2304, 0, 3456, 0, 0, 1296, 0, 0, 3456, 0,
        0, 3456, 0, 0, 0, 1296, 0, 0, 4608, 0, 6144, 0, 0, 1728, 0, 0, 6144, 0, 0, 6144, 0, 0, 1728, 0, 0,
        6144, 0, 0, 6144, 0, 0, 0, 1728, 0, 0, 12288, 0, 24576, 0, 0, 3456, 0, 0, 24576, 0, 0, 24576, 0, 0,
        3456, 0, 0, 24576, 0, 0, 24576, 0, 0, 3456, 0, 0, 24576, 0, 0, 24576, 0, 0, 3456, 0, 0, 36864, 0,
        55296, 0, 0, 5184, 0, 0, 55296, 0, 0, 55296, 0, 0, 5184, 0, 0, 55296, 0, 0, 55296, 0, 0, 0, 5184, 0,
        0, 92160, 0, 153600, 0, 0, 8640, 0, 0, 153600, 0, 0, 153600, 0, 0, 8640, 0, 0, 153600, 0, 0, 153600,
        0, 0, 8640, 0, 0, 307200, 0, 409600, 0, 0,
    )),
    "efficientnetb0": BaseFacts(4049571, 1280, 32, (
        0, 0, 0, 0, 864, 0, 0, 288, 0, 0, 0, 0, 264, 288, 0, 512, 0, 1536, 0, 0, 0, 864, 0, 0, 0, 0, 388, 480,
        0, 2304, 0, 3456, 0, 0, 1296, 0, 0, 0, 0, 870, 1008, 0, 3456, 0, 0, 0, 3456, 0, 0, 0, 3600, 0, 0, 0,
        0, 870, 1008, 0, 5760, 0, 9600, 0, 0, 6000, 0, 0, 0, 0, 2410, 2640, 0, 9600, 0, 0, 0, 9600, 0, 0, 0,
        2160, 0, 0, 0, 0, 2410, 2640, 0, 19200, 0, 38400, 0, 0, 4320, 0, 0, 0, 0, 9620, 10080, 0, 38400, 0, 0,
        0, 38400, 0, 0, 4320, 0, 0, 0, 0, 9620, 10080, 0, 38400, 0, 0, 0, 38400, 0, 0, 12000, 0, 0, 0, 0,
        9620, 10080, 0, 53760, 0, 75264, 0, 0, 16800, 0, 0, 0, 0, 18844, 19488, 0, 75264, 0, 0, 0, 75264, 0,
        0, 16800, 0, 0, 0, 0, 18844, 19488, 0, 75264, 0, 0, 0, 75264, 0, 0, 0, 16800, 0, 0, 0, 0, 18844,
        19488, 0, 129024, 0, 221184, 0, 0, 28800, 0, 0, 0, 0, 55344, 56448, 0, 221184, 0, 0, 0, 221184, 0, 0,
        28800, 0, 0, 0, 0, 55344, 56448, 0, 221184, 0, 0, 0, 221184, 0, 0, 28800, 0, 0, 0, 0, 55344, 56448, 0,
        221184, 0, 0, 0, 221184, 0, 0, 10368, 0, 0, 0, 0, 55344, 56448, 0, 368640, 0, 409600, 0, 0,
    )),
}

