"""The class text file: what SFR-Net matches images against, one short name and one description per class.

Format (UTF-8; blank lines and lines starting with `#` are ignored)::

    RB.name: crack, break or collapse
    RB.text: A CCTV frame inside a sewer pipe whose wall is cracked ...

`CODE.name` is a short phrase (it builds the class graph); `CODE.text` is the domain description the
image is scored against (at most 77 CLIP tokens, checked when the texts are tokenised). A class is
added by adding its two lines; classes come out in the order they first appear. Torch-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from edgesewer.errors import DataError

_LINE = re.compile(r"^(?P<code>[A-Za-z0-9_\-]+)\.(?P<field>name|text)\s*:\s*(?P<value>.*?)\s*$")
DEFAULT_ASSET = "class_texts.txt"


@dataclass(frozen=True)
class ClassTexts:
    """Class codes with their short names and descriptions, plus where each line came from."""

    codes: tuple[str, ...]
    names: tuple[str, ...]
    texts: tuple[str, ...]
    source: str = "<memory>"
    name_lines: tuple[int, ...] = ()
    text_lines: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.codes)

    def where(self, field: str) -> list[str]:
        """`file, line N (CODE.field)` labels for error messages, one per class."""
        lines = self.name_lines if field == "name" else self.text_lines
        if not lines:
            return [f"{self.source} ({c}.{field})" for c in self.codes]
        return [f"{self.source}, line {n} ({c}.{field})" for c, n in zip(self.codes, lines)]

    def subset(self, codes: Sequence[str]) -> "ClassTexts":
        """The classes in `codes`, in that order; DataError naming any code the file lacks."""
        missing = [c for c in codes if c not in self.codes]
        if missing:
            raise DataError(f"{self.source}: no texts for class(es) {', '.join(missing)}")
        idx = [self.codes.index(c) for c in codes]

        def pick(values: tuple) -> tuple:
            return tuple(values[i] for i in idx) if values else ()
        return ClassTexts(tuple(codes), pick(self.names), pick(self.texts), self.source,
                          pick(self.name_lines), pick(self.text_lines))

    def as_rows(self) -> list[list[str]]:
        """[[code, name, text], ...]: a JSON-friendly form (stored in checkpoints and sidecars)."""
        return [[c, n, t] for c, n, t in zip(self.codes, self.names, self.texts)]

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[str]], source: str = "<checkpoint>") -> "ClassTexts":
        for i, row in enumerate(rows):
            if len(row) != 3 or not all(isinstance(v, str) and v for v in row):
                raise DataError(f"{source}: class text entry {i} must be [code, name, text], got {row!r}")
        codes = tuple(r[0] for r in rows)
        if len(set(codes)) != len(codes):
            raise DataError(f"{source}: duplicate class codes in {', '.join(codes)}")
        return cls(codes, tuple(r[1] for r in rows), tuple(r[2] for r in rows), source)


def default_class_texts_path() -> Path:
    """The shipped file with the 17 Sewer-ML classes (edgesewer/assets/class_texts.txt)."""
    return Path(str(resources.files("edgesewer").joinpath("assets", DEFAULT_ASSET)))


def parse_class_texts(text: str, source: str = "<text>") -> ClassTexts:
    """Parse the file format above; DataError naming the file and line of the first problem."""
    names: dict[str, tuple[str, int]] = {}
    texts: dict[str, tuple[str, int]] = {}
    order: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise DataError(f"{source}, line {number}: expected `CODE.name: short phrase` or "
                            f"`CODE.text: description`, got {line[:60]!r}")
        code, field, value = match["code"], match["field"], match["value"]
        if not value:
            raise DataError(f"{source}, line {number}: {code}.{field} is empty")
        table = names if field == "name" else texts
        if code in table:
            raise DataError(f"{source}, line {number}: {code}.{field} repeats line {table[code][1]}")
        table[code] = (value, number)
        if code not in order:
            order.append(code)
    if not order:
        raise DataError(f"{source}: no classes (expected `CODE.name:` and `CODE.text:` lines)")
    for code in order:
        for field, table in (("name", names), ("text", texts)):
            if code not in table:
                other = texts if field == "name" else names
                raise DataError(f"{source}, line {other[code][1]}: class {code} has no {code}.{field} line")
    return ClassTexts(
        codes=tuple(order),
        names=tuple(names[c][0] for c in order),
        texts=tuple(texts[c][0] for c in order),
        source=source,
        name_lines=tuple(names[c][1] for c in order),
        text_lines=tuple(texts[c][1] for c in order),
    )


def load_class_texts(path: str | Path | None = None) -> ClassTexts:
    """Read a class text file (the shipped Sewer-ML one when `path` is None)."""
    path = Path(path) if path is not None else default_class_texts_path()
    if not path.is_file():
        raise DataError(f"{path}: class text file not found")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read class text file ({exc})") from None
    return parse_class_texts(content, str(path))
