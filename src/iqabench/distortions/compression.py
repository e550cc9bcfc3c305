"""Codec distortions with real encoders, so the artefacts are the codecs' own.

* JPEG: libjpeg through ``torchvision.io.encode_jpeg``/``decode_jpeg`` at the
  published quality (always on the CPU, so the bytes do not depend on whether
  nvJPEG is present). MATLAB's ``imwrite`` also uses IJG libjpeg; the chroma
  subsampling is libjpeg's default 4:2:0.
* JPEG 2000: OpenJPEG through Pillow, ``quality_mode='rates'`` with the
  level's compression ratio (ARNIQA's table: 170 at level 5, MATLAB's 400), irreversible 9/7 wavelet (what MATLAB's lossy
  ``imwrite(..., 'CompressionRatio', r)`` uses), with the irreversible
  colour transform (RGB -> YCbCr) before coding, as JPEG 2000 encoders apply
  to RGB by default (Kakadu, which MATLAB uses, and OpenJPEG's own
  ``opj_compress``; Pillow leaves it off unless ``mct=1``). It also encodes
  faster: 44 ms against 61 ms for a 384 x 512 image. The number of resolutions is
  OpenJPEG's default 6, reduced for images too small for it (OpenJPEG needs
  each side >= 2**(resolutions - 1)).

Both codecs take 8-bit input: images are rounded to 8 bit first, as MATLAB's
``im2uint8`` does. A Python loop over the batch is unavoidable here.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..images import quantize


def _to_uint8_cpu(x: Tensor) -> Tensor:
    """N x 3 x H x W uint8 on the CPU, as images are stored (:func:`iqabench.images.quantize`)."""
    # The engine hands functions images already checked or clamped to [0, 1]: no clamp here.
    return quantize(x).cpu()


def _to_uint8_hwc_cpu(x: Tensor) -> Tensor:
    """:func:`_to_uint8_cpu` as N x H x W x 3, the interleaved layout libjpeg reads, so the
    encoder does not transpose again. NumPy interleaves channel by channel in 0.19 ms for
    3 x 384 x 512 on one thread; torch's uint8 transpose (the encoder's) takes 0.65 ms."""
    planar = _to_uint8_cpu(x).numpy()
    n, channels, h, w = planar.shape
    interleaved = np.empty((n, h, w, channels), dtype=np.uint8)
    for channel in range(channels):
        interleaved[..., channel] = planar[:, channel]
    return torch.from_numpy(interleaved)


def _from_uint8(decoded: list, like: Tensor, out: Tensor | None = None) -> Tensor:
    """Stack 8-bit images (CHW tensors or HWC arrays) as float in [0, 1], converting
    each straight into its slot (of ``out`` when given and on the CPU): one pass per
    image instead of stack, cast and divide."""
    on_cpu = out is not None and out.device.type == "cpu" and out.dtype == torch.float32
    target = out if on_cpu else torch.empty(like.shape, dtype=torch.float32)
    for slot, image in zip(target, decoded):
        image = image if isinstance(image, Tensor) else torch.from_numpy(image).permute(2, 0, 1)
        torch.div(image, 255, out=slot)
    if out is None:
        return target.to(device=like.device, dtype=like.dtype)
    return out if on_cpu else out.copy_(target)


def jpeg(x: Tensor, params: list[float], generator: torch.Generator, out: Tensor | None = None) -> Tensor:
    # Imported here: torchvision's import costs seconds, and every stage that only validates params.yaml
    # (whose photo names live beside the engine) would pay it.
    from torchvision.io import decode_jpeg, encode_jpeg

    # CHW views of interleaved memory: torchvision's encoder permutes them back to HWC without a copy.
    pixels = [image.permute(2, 0, 1) for image in _to_uint8_hwc_cpu(x)]
    qualities = [int(quality) for quality in params]
    if len(set(qualities)) == 1:  # the usual case: one call for the whole batch
        encoded = encode_jpeg(pixels, quality=qualities[0])
    else:
        encoded = [encode_jpeg(image, quality=quality) for image, quality in zip(pixels, qualities)]
    return _from_uint8(decode_jpeg(encoded), x, out)


def jpeg2000(x: Tensor, params: list[float], generator: torch.Generator) -> Tensor:
    pixels = _to_uint8_cpu(x).permute(0, 2, 3, 1).numpy()
    height, width = pixels.shape[1:3]
    resolutions = max(1, min(6, int(math.floor(math.log2(min(height, width)))) + 1))
    outputs = []
    for image, ratio in zip(pixels, params):
        buffer = io.BytesIO()
        Image.fromarray(image, "RGB").save(
            buffer, format="JPEG2000", quality_mode="rates", quality_layers=[float(ratio)],
            irreversible=True, num_resolutions=resolutions, mct=1)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            outputs.append(np.array(decoded.convert("RGB")))  # writable, so torch.from_numpy takes it
    return _from_uint8(outputs, x)
