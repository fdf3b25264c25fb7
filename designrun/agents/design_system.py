"""Derive a design system (palette, type scale, spacing, fonts) from a prompt, deterministically.

The prompt is hashed into a seed; every choice is a pure function of the seed, a label naming the
choice, and the keywords found in the prompt (content.py). No ``random``: its algorithms may change
between Python versions, and the same prompt must give the same bytes everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from designrun.agents import content
from designrun.agents.colors import (
    AA,
    AA_LARGE,
    AAA,
    Hsl,
    adjust_for_contrast,
    contrast_ratio,
    floor2,
    rgb_of_hex,
    wcag_level,
)

T = TypeVar("T")

SCHEMA_VERSION = 1
ROOT_PX = 16  # browsers' default root font size: rem values are relative to it
MIN_TEXT_PX = 12  # steps below base stop here: a steep ratio would otherwise give 7px text

# Musical intervals, the usual names for modular type-scale ratios.
RATIOS: dict[str, float] = {
    "major second": 1.125,
    "minor third": 1.2,
    "major third": 1.25,
    "perfect fourth": 1.333,
    "augmented fourth": 1.414,
    "perfect fifth": 1.5,
}
RATIOS_BY_MOOD: dict[str, tuple[str, ...]] = {
    "calm": ("major second", "minor third", "major third"),
    "balanced": ("minor third", "major third", "perfect fourth"),
    "bold": ("perfect fourth", "augmented fourth", "perfect fifth"),
}
TYPE_STEPS = (("xs", -2), ("sm", -1), ("base", 0), ("lg", 1), ("xl", 2), ("2xl", 3), ("3xl", 4),
              ("4xl", 5))  # fmt: skip
SPACE_STEPS = (("3xs", 1), ("2xs", 2), ("xs", 3), ("sm", 4), ("md", 6), ("lg", 8), ("xl", 12),
               ("2xl", 16), ("3xl", 24))  # fmt: skip

# System font stacks (after modernfontstacks.com): nothing is downloaded, every OS has a match.
FONT_STACKS: dict[str, str] = {
    "system-ui": "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', sans-serif",
    "neo-grotesque": "Inter, Roboto, 'Helvetica Neue', 'Arial Nova', 'Nimbus Sans', Arial, "
    "sans-serif",
    "humanist": "Seravek, 'Gill Sans Nova', Ubuntu, Calibri, 'DejaVu Sans', source-sans-pro, "
    "sans-serif",
    "old-style": "'Iowan Old Style', 'Palatino Linotype', 'URW Palladio L', P052, serif",
    "transitional": "Charter, 'Bitstream Charter', 'Sitka Text', Cambria, serif",
    "didone": "Didot, 'Bodoni MT', 'Noto Serif Display', 'URW Palladio L', P052, Sylfaen, serif",
    "rounded": "ui-rounded, 'Hiragino Maru Gothic ProN', Quicksand, Comfortaa, Manjari, "
    "'Arial Rounded MT', 'Arial Rounded MT Bold', Calibri, source-sans-pro, sans-serif",
    "monospace": "ui-monospace, 'Cascadia Code', 'Source Code Pro', Menlo, Consolas, "
    "'DejaVu Sans Mono', monospace",
}

# Accent hue offsets from the primary hue, by colour-harmony name.
HARMONIES: dict[str, int] = {
    "analogous": 35,
    "split complementary": 150,
    "complementary": 180,
    "triadic": 120,
}
HARMONIES_BY_MOOD: dict[str, tuple[str, ...]] = {
    "calm": ("analogous", "analogous", "split complementary"),
    "balanced": ("analogous", "split complementary", "triadic"),
    "bold": ("complementary", "triadic", "split complementary"),
}
SATURATION_BY_MOOD: dict[str, tuple[float, float]] = {
    "calm": (0.30, 0.48),
    "balanced": (0.50, 0.70),
    "bold": (0.75, 0.95),
}

COLOR_ROLES: dict[str, str] = {
    "background": "page background",
    "surface": "cards and panels",
    "text": "body text and headings",
    "muted": "secondary text",
    "primary": "links, buttons and brand",
    "onPrimary": "text on primary buttons",
    "accent": "highlights, large text and focus rings",
    "border": "hairlines and card edges",
}

# (foreground, background, what the pair is used for, the WCAG minimum that use needs)
CONTRAST_PAIRS: tuple[tuple[str, str, str, float], ...] = (
    ("text", "background", "body text", AA),
    ("text", "surface", "text on cards", AA),
    ("muted", "background", "secondary text", AA),
    ("muted", "surface", "secondary text on cards", AA),
    ("primary", "background", "links", AA),
    ("onPrimary", "primary", "button labels", AA),
    ("accent", "background", "large text and focus rings", AA_LARGE),
)


def derive_seed(prompt: str) -> str:
    """Return the 16-hex-digit seed of a prompt (whitespace and case do not count)."""
    normal = " ".join(prompt.split()).casefold()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()[:16]


def unit(seed: str, label: str) -> float:
    """A number in [0, 1) fixed by the seed and the label (one label per decision)."""
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / 2**48


def pick(seed: str, label: str, options: Sequence[T]) -> T:
    """One of options, fixed by the seed and the label."""
    return options[int(unit(seed, label) * len(options))]


def between(seed: str, label: str, low: float, high: float) -> float:
    return low + (high - low) * unit(seed, label)


@dataclass(frozen=True)
class Traits:
    """What the agent read in the prompt: the inputs of every later choice."""

    seed: str
    keywords: tuple[str, ...]
    theme: str  # "light" or "dark"
    mood: str  # "calm", "balanced" or "bold"
    hue: int
    hue_source: str
    heading_font: str
    body_font: str


@dataclass(frozen=True)
class ContrastCheck:
    foreground: str
    background: str
    usage: str
    ratio: float  # rounded down to 2 decimals
    minimum: float

    @property
    def level(self) -> str:
        return wcag_level(self.ratio)

    @property
    def passes(self) -> bool:
        return self.ratio >= self.minimum


@dataclass(frozen=True)
class TypeStep:
    name: str
    step: int
    px: float
    line_height: float

    @property
    def rem(self) -> float:
        return round(self.px / ROOT_PX, 4)


@dataclass(frozen=True)
class DesignSystem:
    title: str
    prompt: str
    traits: Traits
    harmony: str
    colors: dict[str, str]  # name → #rrggbb, in COLOR_ROLES order
    contrast: tuple[ContrastCheck, ...]
    base_px: int
    ratio_name: str
    type_steps: tuple[TypeStep, ...]
    fonts: dict[str, str]  # role (heading, body, mono) → FONT_STACKS name
    spacing_unit: int
    spacing: tuple[tuple[str, int], ...]  # name → px
    radius_px: int

    @property
    def seed(self) -> str:
        return self.traits.seed

    @property
    def ratio(self) -> float:
        return RATIOS[self.ratio_name]

    def check(self, foreground: str, background: str) -> ContrastCheck:
        """The contrast check of a pair. Raises KeyError for a pair that is not checked."""
        for item in self.contrast:
            if (item.foreground, item.background) == (foreground, background):
                return item
        raise KeyError((foreground, background))

    def to_json(self) -> dict[str, Any]:
        """The design-system.json document (camelCase, like the rest of designrun's JSON)."""
        t = self.traits
        return {
            "schemaVersion": SCHEMA_VERSION,
            "generator": "designrun.agents.demo",
            "name": self.title,
            "prompt": self.prompt,
            "seed": t.seed,
            "traits": {
                "theme": t.theme,
                "mood": t.mood,
                "keywords": list(t.keywords),
                "hue": t.hue,
                "hueSource": t.hue_source,
                "harmony": self.harmony,
            },
            "palette": {
                "colors": {
                    name: {"hex": value, "role": COLOR_ROLES[name]}
                    for name, value in self.colors.items()
                },
                "contrast": [
                    {
                        "foreground": c.foreground,
                        "background": c.background,
                        "usage": c.usage,
                        "ratio": c.ratio,
                        "minimum": c.minimum,
                        "level": c.level,
                        "passes": c.passes,
                    }
                    for c in self.contrast
                ],
            },
            "typeScale": {
                "base": self.base_px,
                "ratio": self.ratio,
                "ratioName": self.ratio_name,
                "unit": "px",
                "steps": [
                    {
                        "name": s.name,
                        "step": s.step,
                        "px": s.px,
                        "rem": s.rem,
                        "lineHeight": s.line_height,
                    }
                    for s in self.type_steps
                ],
            },
            "fonts": {
                role: {"name": name, "stack": FONT_STACKS[name]}
                for role, name in self.fonts.items()
            },
            "spacing": {
                "unit": self.spacing_unit,
                "steps": [
                    {"name": name, "px": px, "rem": round(px / ROOT_PX, 4)}
                    for name, px in self.spacing
                ],
            },
            "radius": {"sm": self.radius_px // 2, "md": self.radius_px, "lg": self.radius_px * 2},
        }


def read_traits(prompt: str, config: dict[str, Any]) -> Traits:
    """Read the prompt's keywords and seed (config may set ``seed`` and ``theme``)."""
    words = content.words_of(prompt)
    # A configured seed replaces the prompt's (hashed too, so any JSON scalar will do).
    seed = derive_seed(str(config["seed"]) if config.get("seed") is not None else prompt)
    found = set(words)
    keywords: list[str] = []
    for word in words:
        known = (
            word in content.HUE_WORDS
            or word in content.DARK_WORDS | content.LIGHT_WORDS | content.CALM_WORDS
            or word in content.BOLD_WORDS | content.ELEGANT_WORDS | content.ROUNDED_WORDS
        )
        if known and word not in keywords:
            keywords.append(word)

    theme = config.get("theme")
    if theme not in ("light", "dark"):
        dark = bool(found & content.DARK_WORDS) and not found & content.LIGHT_WORDS
        theme = "dark" if dark else "light"

    calm, bold = len(found & content.CALM_WORDS), len(found & content.BOLD_WORDS)
    mood = "calm" if calm > bold else "bold" if bold > calm else "balanced"

    hue_word = next((w for w in words if w in content.HUE_WORDS), None)
    if hue_word is None:
        hue, hue_source = int(unit(seed, "hue") * 360), "seed"
    else:
        # A little jitter, so two bakeries are related but not identical.
        jitter = round(between(seed, "hue-jitter", -10, 10))
        hue, hue_source = (content.HUE_WORDS[hue_word] + jitter) % 360, f"keyword '{hue_word}'"

    if found & content.ROUNDED_WORDS:
        heading = "rounded"
    elif found & content.ELEGANT_WORDS:
        heading = pick(seed, "heading-serif", ("old-style", "transitional", "didone"))
    elif found & {"tech", "software", "saas", "ai", "data", "cloud", "api", "startup"}:
        heading = "neo-grotesque"
    else:
        heading = pick(seed, "heading", ("neo-grotesque", "humanist", "transitional", "system-ui"))
    body_options = ("system-ui", "humanist") if heading != "humanist" else ("system-ui",)
    body = "humanist" if heading == "rounded" else pick(seed, "body", body_options)
    return Traits(seed, tuple(keywords), theme, mood, hue, hue_source, heading, body)


def build_palette(traits: Traits, harmony: str) -> dict[str, Hsl]:
    """The eight named colours, with every text colour adjusted to its contrast minimum.

    Body text aims at AAA (7:1) and gets at least AA; links and buttons share the primary colour,
    so it is adjusted against the page, the cards and the button label at once.
    """
    seed, h = traits.seed, traits.hue
    low, high = SATURATION_BY_MOOD[traits.mood]
    sat = between(seed, "saturation", low, high)
    accent_hue = h + HARMONIES[harmony] * (1 if unit(seed, "accent-side") < 0.5 else -1)
    dark = traits.theme == "dark"

    if dark:
        background = Hsl(h, 0.30, 0.08)
        surface = Hsl(h, 0.25, 0.13)
        on_primary = background
        text_start, muted_start = Hsl(h, 0.20, 0.88), Hsl(h, 0.12, 0.66)
        primary_start = Hsl(h, sat, between(seed, "primary-l", 0.58, 0.66))
        accent_start = Hsl(accent_hue, min(1.0, sat + 0.1), 0.6)
        border = Hsl(h, 0.18, 0.24)
    else:
        background = Hsl(h, 0.35, between(seed, "background-l", 0.965, 0.985))
        surface = Hsl(h, 0.30, 1.0)
        on_primary = Hsl(h, 0.0, 1.0)
        text_start, muted_start = Hsl(h, 0.25, 0.18), Hsl(h, 0.12, 0.42)
        primary_start = Hsl(h, sat, between(seed, "primary-l", 0.40, 0.50))
        accent_start = Hsl(accent_hue, min(1.0, sat + 0.1), 0.52)
        border = Hsl(h, 0.20, 0.87)

    pages = [background.rgb(), surface.rgb()]
    darken = not dark
    text = adjust_for_contrast(text_start, pages, AAA, darken=darken)
    muted = adjust_for_contrast(muted_start, pages, AA, darken=darken)
    primary = adjust_for_contrast(primary_start, [*pages, on_primary.rgb()], AA, darken=darken)
    accent = adjust_for_contrast(accent_start, [background.rgb()], AA_LARGE, darken=darken)
    return {
        "background": background,
        "surface": surface,
        "text": text,
        "muted": muted,
        "primary": primary,
        "onPrimary": on_primary,
        "accent": accent,
        "border": border,
    }


def build_design_system(prompt: str, config: dict[str, Any] | None = None) -> DesignSystem:
    """Derive the whole design system of a prompt. Same prompt and config, same result."""
    traits = read_traits(prompt, config or {})
    seed, mood = traits.seed, traits.mood
    harmony = pick(seed, "harmony", HARMONIES_BY_MOOD[mood])
    colors = {name: hsl.hex() for name, hsl in build_palette(traits, harmony).items()}
    contrast = tuple(
        ContrastCheck(
            fg,
            bg,
            usage,
            floor2(contrast_ratio(rgb_of_hex(colors[fg]), rgb_of_hex(colors[bg]))),
            minimum,
        )
        for fg, bg, usage, minimum in CONTRAST_PAIRS
    )

    ratio_name = pick(seed, "ratio", RATIOS_BY_MOOD[mood])
    base_px = 18 if mood == "calm" else 16 if mood == "bold" else pick(seed, "base", (16, 17, 18))
    steps = tuple(
        TypeStep(
            name,
            step,
            round(max(base_px * RATIOS[ratio_name] ** step, min(MIN_TEXT_PX, base_px)), 2),
            1.6 if step <= 0 else 1.4 if step <= 2 else 1.2 if step <= 4 else 1.1,
        )
        for name, step in TYPE_STEPS
    )

    if mood == "calm":
        spacing_unit = 6
    elif mood == "bold":
        spacing_unit = 4
    else:
        spacing_unit = pick(seed, "spacing", (4, 5))
    if traits.heading_font == "rounded":
        radius = 16
    elif traits.heading_font in ("old-style", "didone"):
        radius = 2
    else:
        radius = pick(seed, "radius", (4, 6, 8, 12))

    return DesignSystem(
        title=content.title_from_prompt(prompt),
        prompt=prompt,
        traits=traits,
        harmony=harmony,
        colors=colors,
        contrast=contrast,
        base_px=base_px,
        ratio_name=ratio_name,
        type_steps=steps,
        fonts={"heading": traits.heading_font, "body": traits.body_font, "mono": "monospace"},
        spacing_unit=spacing_unit,
        spacing=tuple((name, spacing_unit * factor) for name, factor in SPACE_STEPS),
        radius_px=radius,
    )
