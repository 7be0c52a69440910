"""Small helpers for building shape captions from parameters.

Captions are the text side of the (shape, text) pairs the CLIP and prior models train on,
so each category writes several phrasings that name the category and its salient
attributes in words a user would type ("a tall chair with four thin legs").
"""

from __future__ import annotations

from collections.abc import Iterable


def article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front."""
    word = phrase.strip()
    first = word.split(" ", 1)[0].strip(",")
    if first.isupper() and len(first) > 1:
        # acronyms are read letter by letter: "an SUV", "a UV lamp"
        vowel_sound = first[0] in "AEFHILMNORSX"
    else:
        vowel_sound = word[:1].lower() in "aeiou"
    return ("an " if vowel_sound else "a ") + word


def join_and(items: Iterable[str]) -> str:
    """"x", "x and y", "x, y and z"."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def tidy(captions: Iterable[str]) -> list[str]:
    """Captions with spaces collapsed, no empty or repeated entries, order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for c in captions:
        c = " ".join(c.replace(" ,", ",").split()).strip(" ,")
        if c and c.lower() not in seen:
            seen.add(c.lower())
            out.append(c)
    return out


def count_word(n: int) -> str:
    """2 -> "two" (up to twelve), else digits."""
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
             "eleven", "twelve")
    return words[n] if 0 <= n < len(words) else str(n)
