"""The catalog texts (`configs/texts.yaml`): what people read for each tag, tag value, persona, feature and
screen, in every language. One reader for the dashboard and anything else that shows words; a missing
entry falls back to the key itself, so a new tag shows up (by its key) before anyone writes its label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import CatalogError
from models.personas import QUALIFIERS

# qualifier words, longest first (`big_spenders` before a hypothetical `big`)
QUALIFIER_WORDS = sorted((w for pair in QUALIFIERS.values() for w in pair), key=len, reverse=True)

LANGUAGES = ("en", "zh")


def _words(node: Any, where: str) -> dict[str, str]:
    if not isinstance(node, dict) or not all(isinstance(v, str) for v in node.values()):
        raise CatalogError(f"{where}: expected a mapping of language -> text, got {node!r}")
    unknown = set(node) - set(LANGUAGES)
    if unknown:
        raise CatalogError(f"{where}: unknown language(s) {sorted(unknown)}; expected {list(LANGUAGES)}")
    return dict(node)


@dataclass(frozen=True)
class Texts:
    """Labels by language. Every lookup takes `lang` and returns text, never raises."""

    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    descriptions: dict[str, dict[str, str]] = field(default_factory=dict)  # tag -> what its rule says
    values: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # tag -> value -> words
    flags: dict[str, dict[str, str]] = field(default_factory=dict)
    personas: dict[str, dict[str, str]] = field(default_factory=dict)
    actions: dict[str, dict[str, str]] = field(default_factory=dict)
    features: dict[str, dict[str, str]] = field(default_factory=dict)
    ui: dict[str, dict[str, str]] = field(default_factory=dict)

    @staticmethod
    def _pick(words: dict[str, str] | None, lang: str, fallback: str) -> str:
        if not words:
            return fallback
        return words.get(lang) or words.get("en") or fallback

    def tag(self, key: str, lang: str) -> str:
        return self._pick(self.tags.get(key), lang, key)

    def description(self, key: str, lang: str, fallback: str) -> str:
        """What a tag's rule says, in words (the catalog's own description when none is written)."""
        return self._pick(self.descriptions.get(key), lang, fallback)

    def value(self, tag: str, value: str | None, lang: str, *, value_type: str = "") -> str:
        """A tag value in words: its own label, the shared flag words, a persona's name, else as is."""
        if value is None:
            return self.ui_text("not_set", lang)
        own = self.values.get(tag, {}).get(value)
        if own:
            return self._pick(own, lang, value)
        if value_type == "flag" or (value in self.flags and not value_type):
            return self._pick(self.flags.get(value), lang, value)
        if value_type in ("", "category") and self._split_persona(value)[0] in self.personas:
            return self.persona(value, lang)  # a persona, qualified or not (`potential_frequent`)
        return value

    def _split_persona(self, name: str) -> tuple[str, list[str]]:
        """A persona name and the qualifiers appended to tell two segments apart
        (`high_value_new_lapsing` -> `high_value_new`, [`lapsing`]; `potential_2` -> `potential`, [`2`])."""
        if name in self.personas:
            return name, []
        for base in sorted(self.personas, key=len, reverse=True):
            if name.startswith(base + "_"):
                rest, words = name[len(base) + 1 :], []
                while rest:
                    word = next((w for w in QUALIFIER_WORDS if rest == w or rest.startswith(w + "_")), None)
                    word = word or rest.split("_", 1)[0]
                    words.append(word)
                    rest = rest[len(word) + 1 :]
                return base, words
        return name, []

    def persona(self, name: str | None, lang: str) -> str:
        if not name:
            return self.ui_text("not_set", lang)
        base, words = self._split_persona(name)
        if base not in self.personas:
            return name
        label = self._pick(self.personas[base], lang, base)
        if words and all(w.isdigit() for w in words):  # `potential_2`: a second segment, numbered
            return f"{label} {' '.join(words)}"
        shown = [self._pick(self.ui.get(f"qualifier_{w}"), lang, w.replace("_", " ")) for w in words]
        return f"{label} ({', '.join(shown)})" if shown else label

    def action(self, name: str | None, lang: str) -> str:
        if not name:
            return ""
        base, _ = self._split_persona(name)
        return self._pick(self.actions.get(base), lang, "")

    def feature(self, name: str, lang: str) -> str:
        return self._pick(self.features.get(name), lang, name)

    def ui_text(self, key: str, lang: str, **values: Any) -> str:
        text = self._pick(self.ui.get(key), lang, key)
        return text.format(**values) if values else text


def parse_texts(raw: Any, *, source: str = "texts") -> Texts:
    """Check and index a texts document (the YAML's mapping)."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: expected a mapping at the top level")
    tags: dict[str, dict[str, str]] = {}
    descriptions: dict[str, dict[str, str]] = {}
    values: dict[str, dict[str, dict[str, str]]] = {}
    for key, entry in (raw.get("tags") or {}).items():
        if not isinstance(entry, dict) or "label" not in entry:
            raise CatalogError(f"{source}: tags.{key} needs a label")
        tags[key] = _words(entry["label"], f"{source}: tags.{key}.label")
        if "description" in entry:
            descriptions[key] = _words(entry["description"], f"{source}: tags.{key}.description")
        values[key] = {
            str(v): _words(w, f"{source}: tags.{key}.values.{v}")
            for v, w in (entry.get("values") or {}).items()
        }
    personas, actions = {}, {}
    for name, entry in (raw.get("personas") or {}).items():
        if not isinstance(entry, dict) or "label" not in entry:
            raise CatalogError(f"{source}: personas.{name} needs a label")
        personas[name] = _words(entry["label"], f"{source}: personas.{name}.label")
        if "action" in entry:
            actions[name] = _words(entry["action"], f"{source}: personas.{name}.action")

    def section(name: str) -> dict[str, dict[str, str]]:
        return {str(k): _words(v, f"{source}: {name}.{k}") for k, v in (raw.get(name) or {}).items()}

    return Texts(
        tags=tags,
        descriptions=descriptions,
        values=values,
        flags=section("flags"),
        personas=personas,
        actions=actions,
        features=section("features"),
        ui=section("ui"),
    )


def read_texts(path: str | Path) -> Texts:
    """Read `configs/texts.yaml` (or another texts file)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read the texts file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    return parse_texts(raw, source=str(path))
