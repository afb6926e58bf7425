"""Output stride by dilation, as DeepLab does it.

A backbone's stages each downsample by a stride. To keep a finer feature map (output
stride 8 or 16 instead of 32), the stages that would push the total stride past the
target keep stride 1 and dilate their convolutions instead, so the receptive field
grows as before while the resolution does not shrink.
"""

from __future__ import annotations

VALID_OUTPUT_STRIDES = (1, 2, 4, 8, 16, 32)


def stage_strides_and_dilations(
    stage_strides: list[int], output_stride: int, stem_stride: int = 1
) -> list[tuple[int, int, int]]:
    """(stride, first_dilation, dilation) per stage so the total stride never exceeds ``output_stride``.

    A stage that would exceed it keeps stride 1 and multiplies the running dilation by the
    stride it gave up. Its first block still uses the previous dilation (``first_dilation``),
    as torchvision's and timm's dilated ResNets do, so their weights keep their meaning. An ``output_stride`` at or above the network's natural stride changes
    nothing (the small-image ResNets stop at stride 4, so 8/16/32 leave them as they are).
    """
    if output_stride not in VALID_OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {VALID_OUTPUT_STRIDES}, got {output_stride!r}")
    if output_stride < stem_stride:
        raise ValueError(f"output_stride {output_stride} is below the stem's stride {stem_stride}")
    total, dilation, out = stem_stride, 1, []
    for stride in stage_strides:
        previous = dilation
        if total * stride > output_stride:
            dilation *= stride
            stride = 1
        total *= stride
        out.append((stride, previous, dilation))
    return out
