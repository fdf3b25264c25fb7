"""Deriving a design system from a prompt (in process: pure functions, no files)."""

from __future__ import annotations

import json

import pytest

from designrun.agents.colors import (
    Hsl,
    adjust_for_contrast,
    contrast_ratio,
    floor2,
    rgb_of_hex,
    wcag_level,
)
from designrun.agents.content import title_from_prompt
from designrun.agents.design_system import build_design_system, derive_seed

PROMPTS = [
    "A landing page for a cozy neighbourhood bakery in Lisbon, calm and warm",
    "Bold dark landing page for an AI developer tool called Nimbus",
    "ocean conservation nonprofit",
    "a calm yoga studio in Kyoto",
    "Playful toy shop for kids, bright and fun",
    "Elegant wedding photographer portfolio",
    "midnight jazz club, moody and neon",
    "x",
    "Landing page",
    "Fintech SaaS for small banks: secure, bold, vibrant",
    "Forest cabin rentals, dark and quiet",
    "Sunset surf school on a lemon yellow beach",
    "Ein Café in Berlin für Bäckerei-Liebhaber",
    "網站 設計",
    "lavender spa, soft and minimal",
    "A brutalist gallery for an artist, dark, bold, loud",
]


def test_wcag_contrast_matches_known_values() -> None:
    black, white = (0, 0, 0), (255, 255, 255)
    assert contrast_ratio(black, white) == pytest.approx(21.0)
    assert contrast_ratio(white, white) == pytest.approx(1.0)
    # The classic edge: #767676 is the lightest grey that passes AA on white, #777777 fails.
    assert contrast_ratio(rgb_of_hex("#767676"), white) >= 4.5
    assert contrast_ratio(rgb_of_hex("#777777"), white) < 4.5
    assert floor2(4.499) == 4.49
    assert [wcag_level(r) for r in (7.0, 4.5, 3.0, 2.99)] == ["AAA", "AA", "AA large", "fail"]


def test_adjust_for_contrast_reaches_the_target_with_the_smallest_change() -> None:
    white = (255, 255, 255)
    start = Hsl(30, 0.6, 0.6)
    adjusted = adjust_for_contrast(start, [white], 4.5, darken=True)
    assert contrast_ratio(adjusted.rgb(), white) >= 4.5
    one_step_lighter = adjusted.with_lightness(adjusted.l + 0.01)
    assert contrast_ratio(one_step_lighter.rgb(), white) < 4.5
    assert adjusted.h == start.h and adjusted.s == start.s


@pytest.mark.parametrize("prompt", PROMPTS)
def test_every_contrast_pair_meets_its_minimum(prompt: str) -> None:
    ds = build_design_system(prompt)
    for check in ds.contrast:
        actual = contrast_ratio(rgb_of_hex(ds.colors[check.foreground]),
                                rgb_of_hex(ds.colors[check.background]))  # fmt: skip
        assert check.ratio <= actual, check  # reported ratios are never rounded up
        assert check.passes, (prompt, check)
    assert ds.check("text", "background").ratio >= 4.5


@pytest.mark.parametrize("prompt", PROMPTS)
def test_design_system_is_json_and_the_same_every_time(prompt: str) -> None:
    first = json.dumps(build_design_system(prompt).to_json())
    assert first == json.dumps(build_design_system(prompt).to_json())


def test_different_prompts_give_different_seeds_and_palettes() -> None:
    palettes = {tuple(build_design_system(p).colors.values()) for p in PROMPTS}
    assert len(palettes) == len(PROMPTS)


def test_keywords_are_read_without_accents() -> None:
    ds = build_design_system("Un CAFÉ à Paris")
    assert "cafe" in ds.traits.keywords
    assert ds.traits.hue_source == "keyword 'cafe'"


def test_seed_ignores_case_and_whitespace_only() -> None:
    assert derive_seed("Ocean  Lab\n") == derive_seed("ocean lab")
    assert derive_seed("ocean lab") != derive_seed("ocean labs")


@pytest.mark.parametrize(("word", "hue"), [("ocean", 200), ("bakery", 32), ("forest", 140)])
def test_keywords_bias_the_hue(word: str, hue: int) -> None:
    ds = build_design_system(f"A website for a small {word} project")
    assert abs(ds.traits.hue - hue) <= 10, ds.traits
    assert ds.traits.hue_source == f"keyword '{word}'"


def test_dark_and_mood_keywords_set_theme_ratio_and_spacing() -> None:
    dark_bold = build_design_system("bold dark site for a gym")
    assert (dark_bold.traits.theme, dark_bold.traits.mood) == ("dark", "bold")
    assert dark_bold.ratio >= 1.333 and dark_bold.spacing_unit == 4

    calm = build_design_system("a calm and serene tea house")
    assert (calm.traits.theme, calm.traits.mood) == ("light", "calm")
    assert calm.ratio <= 1.25 and calm.base_px == 18 and calm.spacing_unit == 6


def test_config_may_set_theme_and_seed() -> None:
    light = build_design_system("dark cafe")
    assert light.traits.theme == "dark"
    assert build_design_system("dark cafe", {"theme": "light"}).traits.theme == "light"
    reseeded = build_design_system("dark cafe", {"seed": 7})
    assert reseeded.seed != light.seed
    assert reseeded.seed == build_design_system("something else", {"seed": "7"}).seed


def test_small_type_steps_stay_legible() -> None:
    ds = build_design_system("bold vibrant loud punchy startup")
    assert ds.ratio >= 1.333
    assert min(step.px for step in ds.type_steps) >= 12


@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        ("A landing page for a cozy bakery in Lisbon, calm and warm", "Cozy bakery in Lisbon"),
        ("Design a website about the ocean. Make it calm", "Ocean"),
        ("ocean conservation nonprofit, bold", "Ocean conservation nonprofit"),
        ("landing page", "Your next project"),
        ("[fail] a site for a bakery", "Bakery"),
        ("Nimbus: an AI tool for designers and developers and everyone else", "Nimbus"),
        ("Playful toy shop for kids, bright and fun", "Playful toy shop for kids"),
        ("Bold dark landing page for an AI tool called Nimbus", "AI tool called Nimbus"),
        ("Ein Café für Bäckerei-Liebhaber ☕ in Berlin", "Ein Café für Bäckerei-Liebhaber ☕"),
    ],
)
def test_title_from_prompt(prompt: str, title: str) -> None:
    assert title_from_prompt(prompt) == title
