"""The engine against the MATLAB generator released with KADIS-700k (``matlab_code_imdistort``).

Its level table and the operations checked here are transcribed from ``imdist_generator.m``,
``imnoisequantize.m`` and ``imcolorshift.m``; where the engine departs on purpose (ARNIQA's table
for three types), the departure is the documented one and nothing else.
"""
from __future__ import annotations

import torch

from iqabench.distortions import DISTORTION_TYPES, LEVEL_PARAMETERS, distort

# imdist_generator.m, cases 1..25 in KADID's type order.
MATLAB_LEVELS = (
    (0.1, 0.5, 1, 2, 5), (1, 2, 4, 6, 8), (1, 2, 4, 6, 10), (1, 3, 6, 8, 12), (1, 3, 6, 8, 12),
    (64, 48, 32, 16, 8), (0.4, 0.2, 0.1, 0, -0.4), (1, 2, 3, 6, 9), (16, 32, 45, 120, 400), (43, 36, 24, 7, 4),
    (0.001, 0.002, 0.003, 0.005, 0.01), (0.0001, 0.0005, 0.001, 0.002, 0.003), (0.001, 0.005, 0.01, 0.02, 0.03),
    (0.001, 0.005, 0.01, 0.02, 0.05), (0.01, 0.03, 0.05, 0.1, 0.15), (0.1, 0.2, 0.4, 0.7, 1.1),
    (0.05, 0.1, 0.2, 0.4, 0.8), (0.15, 0.08, 0, -0.08, -0.15), (0.05, 0.1, 0.2, 0.5, 1), (20, 40, 60, 80, 100),
    (0.01, 0.05, 0.1, 0.2, 0.5), (20, 16, 13, 10, 7), (2, 4, 6, 8, 10), (1, 2, 3, 6, 12), (0.3, 0.15, 0, -0.4, -0.6),
)


def test_the_level_table_is_matlab_s_except_arniqa_s_three_documented_types():
    differ = {name for name, levels in zip(DISTORTION_TYPES, MATLAB_LEVELS)
              if tuple(LEVEL_PARAMETERS[name]) != tuple(float(v) for v in levels)}
    assert differ == {"jpeg2000", "mean_shift", "contrast_change"}
    matlab = dict(zip(DISTORTION_TYPES, MATLAB_LEVELS))
    assert LEVEL_PARAMETERS["jpeg2000"][:4] == matlab["jpeg2000"][:4] and LEVEL_PARAMETERS["jpeg2000"][4] == 170
    for name in ("mean_shift", "contrast_change"):  # the same amounts, ordered by magnitude as ARNIQA does
        assert sorted(LEVEL_PARAMETERS[name]) == sorted(matlab[name])


def test_quantization_makes_one_class_more_than_thresholds_as_imnoisequantize():
    ramp = torch.linspace(0, 1, 4096, dtype=torch.float64).view(1, 1, 64, 64).expand(5, 3, 64, 64).contiguous()
    out = distort(ramp, "quantization", torch.arange(1, 6))
    counts = [len(torch.unique(image)) for image in out]
    assert counts == [int(n) + 1 for n in LEVEL_PARAMETERS["quantization"]] == [21, 17, 14, 11, 8]
    for image, n in zip(out, LEVEL_PARAMETERS["quantization"]):
        # value = [0 t_2 .. t_n 1] with t_j = j / (n + 1): a gap of two steps above 0, one step after.
        values = torch.unique(image)
        step = 1 / (int(n) + 1)
        assert values[0] == 0 and values[-1] == 1
        torch.testing.assert_close(values[1:], torch.arange(2, int(n) + 2, dtype=torch.float64) * step)


def test_color_shift_leaves_weak_edges_unshifted_as_imcolorshift_truncates():
    # A flat band, a faint texture and one strong edge. After the blur and the stretch the texture's edge weight is
    # a few % of the edge's: truncate(e, 0.1, 1) then ps2 make it 0, so its green channel is the input's exactly;
    # without the truncation it would be shifted a little.
    size = 128
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                                indexing="ij")
    grey = 0.3 + 0.003 * (torch.sin(rows * 0.8) + torch.sin(cols * 0.8))
    grey[:40] = 0.3
    grey[:, 112:] = 0.9
    image = grey.expand(1, 3, size, size).contiguous()
    out = distort(image, "color_shift", 5, torch.Generator().manual_seed(0))
    texture = torch.zeros(size, size, dtype=torch.bool)
    texture[60:, :80] = True
    assert torch.equal(out[0, 1][texture], image[0, 1][texture])
    assert not torch.equal(out[0, 1], image[0, 1])  # near the edge it is shifted
    assert torch.equal(out[0, ::2], image[0, ::2])  # red and blue untouched
