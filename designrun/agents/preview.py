"""The demo agent's ``preview.png``: palette swatches, contrast checks and a type-scale specimen.

Drawn with Pillow's built-in font (``ImageFont.load_default(size=…)``, Pillow ≥ 10.1), so nothing
is downloaded. The PNG carries no text chunks (no timestamp, no software name): the same design
system gives the same bytes.
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from designrun.agents import content
from designrun.agents.colors import contrast_ratio, rgb_of_hex
from designrun.agents.design_system import DesignSystem

WIDTH, HEIGHT = 1200, 800
MARGIN = 48
GAP = 16
CARD_LEFT = 760  # the type specimen takes the left, a sample card the right
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=32)
def font(size: int) -> Font:
    """Pillow's default font at size pixels (a bitmap font where FreeType is missing)."""
    return ImageFont.load_default(size=max(6, size))


def fit(text: str, face: Font, width: float) -> str:
    """text, shortened with '…' until it is at most width pixels wide."""
    if face.getlength(text) <= width:
        return text
    while text and face.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _on(ds: DesignSystem, fill: str) -> str:
    """The palette's text or background colour, whichever reads better on fill."""
    rgb = rgb_of_hex(fill)
    return max(
        (ds.colors["text"], ds.colors["background"]),
        key=lambda c: contrast_ratio(rgb_of_hex(c), rgb),
    )


def render_preview(ds: DesignSystem) -> bytes:
    """Return the PNG bytes of the preview (WIDTH by HEIGHT, RGB)."""
    c = ds.colors
    image = Image.new("RGB", (WIDTH, HEIGHT), c["background"])
    draw = ImageDraw.Draw(image)
    inner = WIDTH - 2 * MARGIN

    draw.rectangle((0, 0, WIDTH, 10), fill=c["primary"])
    draw.rectangle((WIDTH * 3 // 4, 0, WIDTH, 10), fill=c["accent"])
    draw.text((MARGIN, 36), fit(ds.title, font(44), inner), font=font(44), fill=c["text"])
    t = ds.traits
    subtitle = (
        f"{t.theme} theme · {t.mood} mood · hue {t.hue}° ({t.hue_source}) · "
        f"{ds.harmony} accent · seed {ds.seed}"
    )
    draw.text((MARGIN, 96), fit(subtitle, font(18), inner), font=font(18), fill=c["muted"])

    _swatches(draw, ds, top=150)
    _contrast(draw, ds, top=378)
    _type_scale(draw, ds, top=498)
    _card(draw, ds, top=524)
    return _png(image)


def _label(draw: ImageDraw.ImageDraw, ds: DesignSystem, top: int, text: str) -> None:
    draw.text((MARGIN, top), text.upper(), font=font(14), fill=ds.colors["muted"])


def _swatches(draw: ImageDraw.ImageDraw, ds: DesignSystem, top: int) -> None:
    _label(draw, ds, top, "Palette")
    count = len(ds.colors)
    width = (WIDTH - 2 * MARGIN - (count - 1) * GAP) // count
    radius = min(ds.radius_px, 16)
    for index, (name, value) in enumerate(ds.colors.items()):
        x = MARGIN + index * (width + GAP)
        box = (x, top + 26, x + width, top + 166)
        draw.rounded_rectangle(box, radius=radius, fill=value, outline=ds.colors["border"])
        draw.text((x + 12, top + 136), value, font=font(15), fill=_on(ds, value))
        draw.text((x, top + 176), fit(name, font(16), width), font=font(16), fill=ds.colors["text"])


def _contrast(draw: ImageDraw.ImageDraw, ds: DesignSystem, top: int) -> None:
    _label(draw, ds, top, "Contrast (WCAG 2.x)")
    face = font(15)
    x, y = MARGIN, top + 26
    for check in ds.contrast:
        text = f"{check.usage}  {check.ratio}:1  {check.level}"
        width = int(face.getlength(text)) + 28
        if x + width > WIDTH - MARGIN:
            x, y = MARGIN, y + 44
        box = (x, y, x + width, y + 34)
        fill = ds.colors[check.background]
        draw.rounded_rectangle(box, radius=17, fill=fill, outline=ds.colors["border"])
        draw.text((x + 14, y + 9), text, font=face, fill=ds.colors[check.foreground])
        x += width + 12


def _type_scale(draw: ImageDraw.ImageDraw, ds: DesignSystem, top: int) -> None:
    _label(draw, ds, top, f"Type scale · {ds.ratio_name} {ds.ratio} · base {ds.base_px}px")
    largest = max(s.px for s in ds.type_steps)
    # Scale the specimen down only if the largest step would not fit above the baseline.
    factor = min(1.0, 150 / largest)
    baseline = top + 40 + round(largest * factor * 0.8)
    x = MARGIN
    small = font(13)
    for step in ds.type_steps:
        face = font(round(step.px * factor))
        draw.text((x, baseline), "Aa", font=face, fill=ds.colors["text"], anchor="ls")
        draw.text((x, baseline + 10), step.name, font=small, fill=ds.colors["muted"])
        draw.text((x, baseline + 26), f"{step.px:g}px", font=small, fill=ds.colors["muted"])
        x += max(int(face.getlength("Aa")), 40) + 24
    sample = f"{ds.title}: sphinx of black quartz, judge my vow. 0123456789"
    body = font(ds.base_px)
    draw.text(
        (MARGIN, baseline + 60),
        fit(sample, body, CARD_LEFT - GAP - MARGIN),
        font=body,
        fill=ds.colors["text"],
    )


def wrap(text: str, face: Font, width: float, lines: int) -> list[str]:
    """Greedy word wrap into at most lines lines; the last one is shortened with '…'."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and face.getlength(f"{line} {words[0]}") <= width:
            line = f"{line} {words.pop(0)}"
        out.append(fit(line, face, width))
    if words and out:
        out[-1] = fit(out[-1] + " " + " ".join(words), face, width)
    return out


def _card(draw: ImageDraw.ImageDraw, ds: DesignSystem, top: int) -> None:
    """A card with a heading, muted text and two buttons: the palette at work."""
    c = ds.colors
    copy = content.copy_for(content.words_of(ds.prompt))
    left, right, bottom = CARD_LEFT, WIDTH - MARGIN, HEIGHT - MARGIN
    radius = min(ds.radius_px * 2, 24)
    box = (left, top, right, bottom)
    draw.rounded_rectangle(box, radius=radius, fill=c["surface"], outline=c["border"])
    inner = right - left - 56
    x, y = left + 28, top + 26
    draw.text((x, y), copy.eyebrow.upper(), font=font(13), fill=c["muted"])
    heading = font(min(30, round(ds.type_steps[4].px)))
    draw.text((x, y + 24), fit(copy.features[0][0], heading, inner), font=heading, fill=c["text"])
    body = font(16)
    for index, line in enumerate(wrap(copy.features[0][1], body, inner, 2)):
        draw.text((x, y + 70 + index * 24), line, font=body, fill=c["muted"])
    label = font(16)
    button_width = int(label.getlength(copy.call_to_action)) + 40
    button = (x, bottom - 68, x + button_width, bottom - 26)
    draw.rounded_rectangle(button, radius=min(ds.radius_px, 21), fill=c["primary"])
    middle = bottom - 47
    draw.text((x + 20, middle), copy.call_to_action, font=label, fill=c["onPrimary"], anchor="lm")
    link_x = x + button_width + 20
    draw.text((link_x, middle), "Learn more", font=label, fill=c["primary"], anchor="lm")
    underline_y = bottom - 37
    link_end = link_x + label.getlength("Learn more")
    draw.line((link_x, underline_y, link_end, underline_y), fill=c["primary"], width=1)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
