"""The demo agent's ``report.md``: what it made, from which prompt, and why.

Prompt text is HTML-escaped: a viewer that renders Markdown may also render raw HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from designrun.agents import content
from designrun.agents.design_system import COLOR_ROLES, FONT_STACKS, DesignSystem


def _text(value: str) -> str:
    return escape(value, quote=False)


def render_report(ds: DesignSystem, files: Sequence[tuple[str, str]]) -> str:
    """Return report.md for the design system; files lists (path, what it is) in writing order."""
    t = ds.traits
    keywords = ", ".join(f"`{k}`" for k in t.keywords) or "none I know"
    quoted = [" ".join(line.split()) for line in ds.prompt.splitlines()]
    lines = [
        f"# {_text(ds.title)}: design report",
        "",
        "Made offline by the designrun demo agent. Every choice below follows from the prompt's",
        f"hash (seed `{ds.seed}`) and its keywords, so the same prompt gives the same files.",
        "",
        "## The prompt",
        "",
        *(f"> {_text(line)}" if line else ">" for line in quoted),
        "",
        "## What I made",
        "",
        *(f"- `{path}`: {what}" for path, what in files),
        "",
        "## Why it looks like this",
        "",
        f"- Keywords I recognised: {keywords}.",
        f"- Hue {t.hue}° from {t.hue_source}; a {ds.harmony} accent "
        f"({'calm moods stay close' if t.mood == 'calm' else 'chosen by the seed'}).",
        f"- Mood **{t.mood}**: it sets the saturation, the type-scale ratio, the base size and the "
        "spacing unit.",
        f"- Theme **{t.theme}**"
        + (" (asked for by the prompt)." if t.theme == "dark" else " (the default)."),
        f"- Copy for a **{content.copy_for(content.words_of(ds.prompt)).kind}** page.",
        "",
        "## Palette",
        "",
        "| Name | Hex | Role |",
        "| --- | --- | --- |",
        *(f"| {name} | `{value}` | {COLOR_ROLES[name]} |" for name, value in ds.colors.items()),
        "",
        "### Contrast checks (WCAG 2.x, ratios rounded down)",
        "",
        "| Foreground | Background | Used for | Ratio | Level | Needs | OK |",
        "| --- | --- | --- | ---: | --- | ---: | --- |",
        *(
            f"| {c.foreground} | {c.background} | {c.usage} | {c.ratio}:1 | {c.level} | "
            f"{c.minimum}:1 | {'yes' if c.passes else '**no**'} |"
            for c in ds.contrast
        ),
        "",
        "Text colours were darkened (light theme) or lightened (dark theme) only as far as needed:",
        "body text aims at AAA (7:1), other text at AA (4.5:1), the accent at 3:1 because it is",
        "used only for large text and focus rings.",
        "",
        "## Type",
        "",
        f"A **{ds.ratio_name}** scale (ratio {ds.ratio}) from a {ds.base_px}px base:",
        "",
        "| Step | Name | px | rem | Line height |",
        "| ---: | --- | ---: | ---: | ---: |",
        *(
            f"| {s.step} | {s.name} | {s.px:g} | {s.rem:g} | {s.line_height:g} |"
            for s in ds.type_steps
        ),
        "",
        *(f"- {role}: {name} (`{FONT_STACKS[name]}`)" for role, name in ds.fonts.items()),
        "",
        "## Spacing",
        "",
        f"A {ds.spacing_unit}px unit: "
        + ", ".join(f"{name} {px}px" for name, px in ds.spacing)
        + f". Corner radius {ds.radius_px}px.",
        "",
        "## Next",
        "",
        "This agent is a stand-in. Set `LOCAL_RUNNER_COMMAND` to run a real design agent (a",
        "coding-agent CLI, for example) in its place; it reports through the same line protocol.",
        "",
    ]
    return "\n".join(lines)
