"""What the demo agent reads in a prompt (keywords) and the words it writes back (titles, copy).

Everything here is a plain table or a pure function, so the same prompt always reads the same way.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# The first of these words in the prompt sets the base hue (degrees on the colour wheel).
HUE_WORDS: dict[str, int] = {
    # warm food and craft
    "bakery": 32, "bread": 34, "pastry": 28, "croissant": 36, "coffee": 24, "cafe": 26,
    "chocolate": 18, "cake": 345, "restaurant": 12, "pizza": 8, "kitchen": 22, "tea": 90,
    # water
    "ocean": 200, "sea": 198, "beach": 188, "surf": 192, "marine": 205, "water": 200,
    "sailing": 210, "lake": 205, "river": 195, "island": 182,
    # plants and land
    "forest": 140, "garden": 110, "plant": 118, "plants": 118, "eco": 130, "nature": 122,
    "farm": 88, "green": 135, "climate": 150, "desert": 34, "mountain": 210, "hiking": 130,
    # warm colours and feelings
    "sunset": 14, "fire": 8, "autumn": 24, "orange": 28, "red": 356, "sun": 45, "lemon": 52,
    "yellow": 48, "gold": 44, "wine": 345, "rose": 345, "flower": 330, "florist": 330,
    "wedding": 340, "pink": 330, "love": 350,
    # cool colours
    "lavender": 268, "violet": 275, "purple": 280, "night": 235, "space": 248, "music": 285,
    "jazz": 262, "blue": 215,
    # work and technology
    "tech": 225, "software": 220, "saas": 232, "ai": 252, "data": 212, "cloud": 208,
    "api": 228, "developer": 238, "developers": 238, "startup": 242, "fintech": 210,
    "bank": 214, "finance": 214, "law": 220, "legal": 220,
    # care
    "health": 178, "clinic": 182, "medical": 186, "yoga": 165, "spa": 170, "wellness": 160,
    "meditation": 255, "fitness": 6, "gym": 6,
}  # fmt: skip

DARK_WORDS = frozenset({"dark", "night", "noir", "midnight", "moody", "neon", "nocturnal"})
LIGHT_WORDS = frozenset({"light", "bright", "airy", "sunny", "white"})
CALM_WORDS = frozenset(
    {"calm", "serene", "quiet", "minimal", "minimalist", "gentle", "soft", "zen", "peaceful",
     "relaxing", "cozy", "cosy", "slow", "tranquil", "muted", "understated"}
)  # fmt: skip
BOLD_WORDS = frozenset(
    {"bold", "vibrant", "loud", "playful", "energetic", "punchy", "fun", "vivid", "striking",
     "dynamic", "electric", "neon", "brutalist", "daring"}
)  # fmt: skip
ELEGANT_WORDS = frozenset(
    {"elegant", "luxury", "luxurious", "editorial", "classic", "refined", "premium", "wedding",
     "wine", "boutique", "timeless", "literary", "magazine", "bakery", "pastry", "coffee", "cafe",
     "tea", "book", "books", "bookshop", "library", "restaurant", "law", "legal"}
)  # fmt: skip
ROUNDED_WORDS = frozenset({"playful", "fun", "kids", "children", "friendly", "toy", "toys", "pet"})


@dataclass(frozen=True)
class Copy:
    """The words of one kind of landing page."""

    kind: str
    eyebrow: str
    section_title: str
    call_to_action: str
    features: tuple[tuple[str, str], ...]


GENERIC = Copy(
    "general",
    "Introducing",
    "Why people choose us",
    "Get started",
    (
        ("Thoughtful by design", "Every detail is considered, so the important things stay easy."),
        ("Clear and simple", "No clutter, no jargon: just what you came for, where you expect it."),
        ("Here for you", "Real people answer, and they answer quickly. Say hello any time."),
    ),
)

COPIES: tuple[tuple[frozenset[str], Copy], ...] = (
    (
        frozenset({"bakery", "bread", "cake", "pastry", "croissant", "coffee", "cafe", "food",
                   "restaurant", "kitchen", "chocolate", "tea", "pizza", "menu"}),
        Copy("food", "Fresh this morning", "What makes it good", "See the menu", (
            ("Made fresh daily", "Small batches, real ingredients, baked before the city wakes."),
            ("Come say hello", "A warm room, a seat by the window, a counter worth a detour."),
            ("Order ahead", "Reserve your favourites the night before and skip the morning queue."),
        )),
    ),
    (
        frozenset({"ocean", "sea", "beach", "surf", "marine", "water", "lake", "river", "forest",
                   "garden", "plant", "plants", "eco", "nature", "farm", "climate",
                   "conservation", "wildlife", "hiking", "mountain", "island"}),
        Copy("nature", "Rooted in place", "How we work", "Get involved", (
            ("Close to the source", "We work where it matters, with the people who live there."),
            ("Measured impact", "Every project reports what changed, in numbers anyone can check."),
            ("Join in", "Volunteer for a day, adopt a project, or simply spread the word."),
        )),
    ),
    (
        frozenset({"tech", "software", "saas", "ai", "app", "data", "cloud", "api", "startup",
                   "developer", "developers", "platform", "fintech", "analytics", "tool"}),
        Copy("technology", "Now in public beta", "Built for teams that ship", "Start free", (
            ("Fast by default", "Sensible defaults and quick feedback, from the first minute."),
            ("Secure from day one", "Least privilege, audit trails and encryption built in."),
            ("Grows with you", "Start small and scale up without rewriting what already works."),
        )),
    ),
    (
        frozenset({"portfolio", "studio", "agency", "designer", "photographer", "photography",
                   "artist", "music", "musician", "band", "jazz", "art", "gallery", "film"}),
        Copy("creative", "Selected work", "What we make", "View the work", (
            ("Selected projects", "A short list of the work we are proudest of, and why."),
            ("Process", "Listen first, sketch early, and refine until it feels inevitable."),
            ("Let's talk", "Have something in mind? Tell us about it over coffee or a call."),
        )),
    ),
    (
        frozenset({"yoga", "spa", "health", "clinic", "medical", "wellness", "fitness", "gym",
                   "meditation", "therapy", "dental", "care"}),
        Copy("wellness", "Take a breath", "Care that fits your life", "Book a visit", (
            ("Unhurried care", "Longer appointments, so there is time to listen and to ask."),
            ("For every body", "Sessions for beginners and regulars alike, at your own pace."),
            ("Easy to book", "Pick a time online, change it with one tap, pay when you arrive."),
        )),
    ),
)  # fmt: skip

# Words dropped from the start and end of a prompt when it is turned into a title.
_LEAD = frozenset(
    {"please", "design", "create", "make", "build", "generate", "draft", "me", "us", "i", "we",
     "want", "need", "would", "like", "to", "a", "an", "the", "my", "our", "simple", "small",
     "single", "one", "landing", "page", "website", "site", "web", "homepage", "home", "for",
     "about", "of", "with", "some", "new"}
)  # fmt: skip
_TRAIL = frozenset(
    {"landing", "page", "website", "site", "web", "homepage", "a", "an", "the", "in", "at", "on",
     "for", "of", "and", "with", "to", "by", "from"}
)  # fmt: skip
_STYLE = DARK_WORDS | LIGHT_WORDS | CALM_WORDS | BOLD_WORDS | {
    "modern", "clean", "beautiful", "responsive", "stylish", "sleek", "warm", "elegant", "basic",
}  # fmt: skip
_CLAUSE_END = re.compile(r"[,.;:!?()\[\]{}\"“”]|\s[-–—]\s")  # noqa: RUF001  (en dash on purpose)
_FOR_ABOUT = re.compile(r"\b(?:for|about)\s+", re.IGNORECASE)
FAIL_MARK = "[fail]"
MAX_TITLE_WORDS = 6
MAX_TITLE_CHARS = 60


def one_line(text: str, limit: int | None = None) -> str:
    """Collapse all whitespace (newlines included) to single spaces; shorten to limit with '…'.

    Prompts are user input: echoing one on a single line means no line of it can start with the
    protocol marker and pass for a protocol line.
    """
    flat = " ".join(text.split())
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1].rstrip() + "…"
    return flat


def words_of(prompt: str) -> list[str]:
    """The prompt's words, lower-cased and without accents ('Café' → 'cafe'), in order.

    Letters only: 'eco-friendly' is two words.
    """
    decomposed = unicodedata.normalize("NFKD", prompt.casefold())
    return re.findall(r"[a-z]+", "".join(c for c in decomposed if not unicodedata.combining(c)))


def title_from_prompt(prompt: str) -> str:
    """Turn a prompt into a short page title.

    'A landing page for a cozy bakery in Lisbon, calm and warm' → 'Cozy bakery in Lisbon'.
    """
    for clause in _CLAUSE_END.split(one_line(prompt.replace(FAIL_MARK, " "))):
        # "A bold landing page for a bakery": when only such words come before the first "for"
        # or "about", what follows it names the subject ("toy shop for kids" stays whole).
        match = _FOR_ABOUT.search(clause)
        if match and clause[match.end() :].strip():
            before = words_of(clause[: match.start()])
            if all(word in _LEAD or word in _STYLE for word in before):
                clause = clause[match.end() :]
        words = clause.split()
        while words and words[0].casefold() in _LEAD:
            words.pop(0)
        words = words[:MAX_TITLE_WORDS]
        while words and words[-1].casefold() in _TRAIL:
            words.pop()
        title = " ".join(words)[:MAX_TITLE_CHARS].strip()
        if title:
            return title[0].upper() + title[1:]
    return "Your next project"


def copy_for(words: list[str]) -> Copy:
    """Pick the landing-page copy whose vocabulary the prompt uses first; else the generic copy."""
    for word in words:
        for vocabulary, copy in COPIES:
            if word in vocabulary:
                return copy
    return GENERIC
