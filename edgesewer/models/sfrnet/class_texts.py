"""The class text file: what SFR-Net matches images against, one short name and one description per class.

Format (UTF-8; blank lines and lines starting with `#` are ignored)::

    RB.name: crack, break or collapse
    RB.text: A CCTV frame inside a sewer pipe whose wall is cracked ...

`CODE.name` is a short phrase (it builds the class graph); `CODE.text` is the domain description the
image is scored against (at most 77 CLIP tokens, checked when the texts are tokenised). A class is
added by adding its two lines; classes come out in the order they first appear. Torch-free.

The SFR-Net authors' released format is read too (`load_authors_texts`): `<set>_de.txt` holds one
description per line and `<set>_ep.txt` one short phrase per line, both in the order of the class
lists `seen.txt` then `unseen.txt` (one code per line). `load_class_texts` switches to it for a path
ending in `_de.txt` or `_ep.txt`, so the authors' texts work wherever a class text file is taken.
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
AUTHORS_DE, AUTHORS_EP = "_de.txt", "_ep.txt"  # the SFR-Net authors' per-line files
CLASS_LISTS = ("seen.txt", "unseen.txt")  # their class order: seen classes, then unseen ones


@dataclass(frozen=True)
class ClassTexts:
    """Class codes with their short names and descriptions, plus where each line came from."""

    codes: tuple[str, ...]
    names: tuple[str, ...]
    texts: tuple[str, ...]
    source: str = "<memory>"
    name_lines: tuple[int, ...] = ()
    text_lines: tuple[int, ...] = ()
    name_source: str | None = None  # the file of the short names when it is not `source` (authors' format)

    def __len__(self) -> int:
        return len(self.codes)

    def where(self, field: str) -> list[str]:
        """`file, line N (CODE.field)` labels for error messages, one per class."""
        lines = self.name_lines if field == "name" else self.text_lines
        source = self.name_source if field == "name" and self.name_source else self.source
        if not lines:
            return [f"{source} ({c}.{field})" for c in self.codes]
        return [f"{source}, line {n} ({c}.{field})" for c, n in zip(self.codes, lines)]

    def subset(self, codes: Sequence[str]) -> "ClassTexts":
        """The classes in `codes`, in that order; DataError naming any code the file lacks."""
        missing = [c for c in codes if c not in self.codes]
        if missing:
            raise DataError(f"{self.source}: no texts for class(es) {', '.join(missing)}")
        idx = [self.codes.index(c) for c in codes]

        def pick(values: tuple) -> tuple:
            return tuple(values[i] for i in idx) if values else ()
        return ClassTexts(tuple(codes), pick(self.names), pick(self.texts), self.source,
                          pick(self.name_lines), pick(self.text_lines), self.name_source)

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


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what} ({exc})") from None


def is_authors_format(path: str | Path) -> bool:
    """True for the SFR-Net authors' per-line files (`<set>_de.txt` / `<set>_ep.txt`)."""
    return Path(path).name.lower().endswith((AUTHORS_DE, AUTHORS_EP))


def load_class_texts(path: str | Path | None = None) -> ClassTexts:
    """Read a class text file (the shipped Sewer-ML one when `path` is None).

    A path ending in `_de.txt` or `_ep.txt` is read in the SFR-Net authors' format (see
    `load_authors_texts`: the twin file and the class lists are found beside it).
    """
    path = Path(path) if path is not None else default_class_texts_path()
    if is_authors_format(path):
        return load_authors_texts(path)
    return parse_class_texts(_read_text(path, "class text file"), str(path))


# ------------------------------------------------------------------------------------------ authors' format


def _nonblank_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of every non-blank line."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _twins(path: Path) -> tuple[Path, Path, str]:
    """(descriptions file, short-phrase file, set name) from either of the two."""
    stem = path.name[: -len(AUTHORS_DE)]  # `_de.txt` and `_ep.txt` have the same length
    return path.with_name(stem + AUTHORS_DE), path.with_name(stem + AUTHORS_EP), stem


def find_class_lists(de_path: Path, set_name: str) -> list[Path] | None:
    """`seen.txt` + `unseen.txt` beside the texts, or at `../classes/<set>/` (the authors' repository layout)."""
    for folder in (de_path.parent, de_path.parent / set_name, de_path.parent.parent / "classes" / set_name):
        found = [folder / n for n in CLASS_LISTS]
        if found[0].is_file():
            return [p for p in found if p.is_file()]
    return None


def read_class_list(path: Path) -> list[str]:
    """Class codes, one per line (blank lines ignored)."""
    codes = [line for _, line in _nonblank_lines(_read_text(path, "class list"))]
    if not codes:
        raise DataError(f"{path}: class list is empty (expected one class code per line)")
    return codes


def load_authors_texts(texts: str | Path, phrases: str | Path | None = None,
                       classes: Sequence[str | Path] | str | Path | None = None) -> ClassTexts:
    """Class texts in the SFR-Net authors' released format.

    Args:
        texts: `<set>_de.txt`, one description per line (its `_ep.txt` twin may be given instead).
        phrases: `<set>_ep.txt`, one short phrase per line; default: the twin beside `texts`.
        classes: the class order: class-list files (`seen.txt`, `unseen.txt`), a folder holding
            them, or the codes themselves. Default: `seen.txt` + `unseen.txt` beside the texts, in
            `<set>/` there, or in `../classes/<set>/` (the authors' layout); failing those, for the
            `sewerml` set, SFR-Net's Sewer-ML split (12 seen then 5 unseen), which is what the
            authors' class lists hold.

    Raises:
        DataError naming the file when a file is missing, a line count differs from the class
        count, or a code repeats.
    """
    texts = Path(texts)
    if is_authors_format(texts):
        de_path, ep_path, set_name = _twins(texts)
        if texts.name.lower().endswith(AUTHORS_DE):
            de_path = texts
    elif phrases is not None:
        de_path, ep_path, set_name = texts, Path(phrases), texts.stem
    else:
        raise DataError(f"{texts}: not a `<set>_de.txt` file; pass the short-phrase file too")
    if phrases is not None:
        ep_path = Path(phrases)
    descriptions = _nonblank_lines(_read_text(de_path, "description file"))
    short = _nonblank_lines(_read_text(ep_path, "short-phrase file"))

    order_source: str
    if classes is None:
        lists = find_class_lists(de_path, set_name)
        if lists is not None:
            codes = [c for p in lists for c in read_class_list(p)]
            order_source = " + ".join(str(p) for p in lists)
        elif set_name.lower() == "sewerml":
            from edgesewer.taxonomy import ZS_SEEN, ZS_UNSEEN

            codes, order_source = [*ZS_SEEN, *ZS_UNSEEN], "SFR-Net's Sewer-ML seen + unseen order"
        else:
            raise DataError(f"{de_path}: no class lists ({' and '.join(CLASS_LISTS)}) beside it or in "
                            f"../classes/{set_name}/; name them (classes: [seen.txt, unseen.txt])")
    else:
        items = [classes] if isinstance(classes, (str, Path)) else list(classes)
        paths = [Path(i) for i in items]
        if len(paths) == 1 and paths[0].is_dir():
            paths = [paths[0] / n for n in CLASS_LISTS if (paths[0] / n).is_file()]
            if not paths:
                raise DataError(f"{items[0]}: no {' or '.join(CLASS_LISTS)} in this folder")
        if all(p.is_file() for p in paths):
            codes = [c for p in paths for c in read_class_list(p)]
            order_source = " + ".join(str(p) for p in paths)
        elif all(isinstance(i, str) and "/" not in i and not i.endswith(".txt") for i in items):
            codes, order_source = [str(i) for i in items], "the given codes"
        else:
            missing = next(p for p in paths if not p.is_file())
            raise DataError(f"{missing}: class list not found")

    if len(set(codes)) != len(codes):
        dup = sorted({c for c in codes if codes.count(c) > 1})
        raise DataError(f"{order_source}: class code(s) {', '.join(dup)} listed twice")
    for path, lines, what in ((de_path, descriptions, "descriptions"), (ep_path, short, "short phrases")):
        if len(lines) != len(codes):
            raise DataError(f"{path}: {len(lines)} {what} for {len(codes)} classes ({order_source}); "
                            "expected one line per class, in that order")
    return ClassTexts(
        codes=tuple(codes),
        names=tuple(line for _, line in short),
        texts=tuple(line for _, line in descriptions),
        source=str(de_path),
        name_lines=tuple(n for n, _ in short),
        text_lines=tuple(n for n, _ in descriptions),
        name_source=str(ep_path),
    )
