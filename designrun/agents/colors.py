"""Colour arithmetic for the demo agent: HSL, hex, and WCAG 2.x contrast. Pure functions."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

RGB = tuple[int, int, int]

# WCAG 2.x thresholds (success criterion 1.4.3/1.4.6): normal text AA and AAA, large text AA.
AA = 4.5
AAA = 7.0
AA_LARGE = 3.0


@dataclass(frozen=True)
class Hsl:
    """A colour as hue (degrees), saturation and lightness (both 0..1)."""

    h: float
    s: float
    l: float  # noqa: E741  (the conventional name; never read as the digit one here)

    def rgb(self) -> RGB:
        r, g, b = colorsys.hls_to_rgb((self.h % 360.0) / 360.0, _clamp(self.l), _clamp(self.s))
        return (round(r * 255), round(g * 255), round(b * 255))

    def hex(self) -> str:
        return hex_of(self.rgb())

    def with_lightness(self, lightness: float) -> Hsl:
        return replace(self, l=_clamp(lightness))


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def hex_of(rgb: RGB) -> str:
    """Return ``#rrggbb`` (lower case) for an RGB triple."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def rgb_of_hex(value: str) -> RGB:
    """Return the RGB triple of ``#rrggbb``. Raises ValueError for anything else."""
    digits = value.removeprefix("#")
    if len(digits) != 6:
        raise ValueError(f"not a #rrggbb colour: {value!r}")
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def relative_luminance(rgb: RGB) -> float:
    """WCAG 2.x relative luminance of an sRGB colour, 0 (black) to 1 (white)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: RGB, b: RGB) -> float:
    """WCAG 2.x contrast ratio of two colours, from 1 to 21 (order does not matter)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    high, low = max(la, lb), min(la, lb)
    return (high + 0.05) / (low + 0.05)


def floor2(ratio: float) -> float:
    """Round a ratio down to 2 decimals: WCAG does not round, so a report must never round up."""
    return math.floor(ratio * 100) / 100


def wcag_level(ratio: float) -> str:
    """Name the best WCAG 2.x level a text contrast ratio meets: AAA, AA, AA large, or fail."""
    if ratio >= AAA:
        return "AAA"
    if ratio >= AA:
        return "AA"
    if ratio >= AA_LARGE:
        return "AA large"
    return "fail"


def adjust_for_contrast(
    color: Hsl, backgrounds: Sequence[RGB], target: float, *, darken: bool
) -> Hsl:
    """Return color, darkened or lightened just enough to reach target against every background.

    Changing only the lightness keeps the hue, and is monotonic in luminance, so walking in one
    direction finds the smallest change. When target cannot be reached the walk ends at black or
    white, the best there is. (Against black or white one of them always reaches 4.58:1.)
    """
    direction = -1 if darken else 1
    for step in range(101):
        candidate = color.with_lightness(color.l + direction * step / 100)
        if min(contrast_ratio(candidate.rgb(), bg) for bg in backgrounds) >= target:
            return candidate
        if candidate.l in (0.0, 1.0):
            return candidate
    return color.with_lightness(0.0 if darken else 1.0)
