"""Bilingual text: everything a subject reads exists in Chinese and English."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")


@dataclass(frozen=True, slots=True)
class LocalText:
    """A text in Chinese and English; neither may be empty."""

    zh: str
    en: str

    def __post_init__(self) -> None:
        if not self.zh.strip() or not self.en.strip():
            raise ValueError("LocalText needs both a Chinese and an English text")

    def in_(self, lang: Lang) -> str:
        return self.zh if lang == "zh" else self.en

    def format(self, **values: object) -> LocalText:
        return LocalText(self.zh.format(**values), self.en.format(**values))
