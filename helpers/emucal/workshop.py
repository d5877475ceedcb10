"""Workshop tools: a mirror of the book's data, Natural Earth for maps offline, handouts.

The ``emucal mirror`` and ``emucal handout`` commands (:mod:`emucal.cli`)
call these functions; they work from Python too:

- :func:`mirror` lays out files fetched with :func:`emucal.data.fetch` so
  that ``python -m http.server --directory DIR`` serves every registry name
  at ``<url>/<name>``, which is what ``EMUCAL_MIRROR=<url>`` expects, with a
  ``MANIFEST.tsv`` of sizes and hashes;
- :func:`mirror_natural_earth` adds the Natural Earth shapefiles of the
  book's maps, as a folder that ``CARTOPY_DATA_DIR`` can point at and as a zip;
- :func:`write_handouts` copies notebooks without their exercise solutions
  (:func:`strip_solutions`) and outputs, for participants to work in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from . import data
from ._io import atomic_path

__all__ = ["MANIFEST", "NATURAL_EARTH_DIR", "mirror", "mirror_natural_earth", "strip_solutions",
           "write_handouts", "write_manifest"]

MANIFEST = "MANIFEST.tsv"
NATURAL_EARTH_DIR = "natural_earth"
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def _place(source: Path, target: Path, *, link: bool) -> None:
    """Hard-link (or copy) ``source`` to ``target``, atomically replacing what was there.

    A copy replaces a ``target`` that is a hard link of ``source`` (the rename of
    :func:`emucal._io.atomic_path` breaks the link), so ``--copy`` over a linked
    mirror leaves no file shared with the cache.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if link and target.exists() and os.path.samefile(source, target):
        return
    with atomic_path(target) as tmp:
        if link:
            try:
                os.link(source, tmp)
            except OSError:  # another file system, or links not allowed: copy instead
                link = False
        if not link:
            shutil.copyfile(source, tmp)
        # readable by the web server and by everyone (a link shares the cache file's mode)
        os.chmod(tmp, os.stat(tmp).st_mode | 0o444)


def _digests(path: Path) -> tuple[str, str]:
    """SHA-256 and MD5 of a file in one read of 4 MiB chunks (the manifest has both)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def write_manifest(directory: Path, names: Sequence[str]) -> Path:
    """Write ``MANIFEST.tsv`` (name, bytes, sha256, md5, upstream_url) like the shared mirror's."""
    hashes, urls = data.registry(), data.registry_urls()
    lines = ["name\tbytes\tsha256\tmd5\tupstream_url"]
    for name in names:
        path = directory / name
        sha256, md5 = _digests(path)
        if sha256 != hashes[name]:
            raise ValueError(f"{path} ({name}) has sha256 {sha256}, the registry {hashes[name]}: "
                             "another file or a damaged one, and every download of it would fail "
                             f"its hash check. Give the path that emucal.data.fetch({name!r}) "
                             "returns; no manifest is written until then.")
        lines.append(f"{name}\t{path.stat().st_size}\t{hashes[name]}\t{md5}\t{urls[name]}")
    manifest = directory / MANIFEST
    with atomic_path(manifest) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return manifest


def mirror(directory, paths: Mapping[str, Path], *, link: bool = True, progress: bool = True) -> Path:
    """Put fetched files at ``directory/<registry name>`` and write the manifest.

    Parameters
    ----------
    directory
        The mirror's folder (created if needed).
    paths
        Registry name -> local file, e.g. from :func:`emucal.data.fetch`.
    link
        Hard-link the cache's files where the file system allows (no second
        copy of the 3.4 GB archive), else copy them.
    progress
        Show a progress bar.

    Returns
    -------
    Path
        The manifest, ``directory/MANIFEST.tsv``.
    """
    directory = Path(directory)
    unknown = [name for name in paths if name not in data.registry()]
    if unknown:
        raise KeyError(f"{unknown} are not registry names; a mirror serves registry names only "
                       "(sorted(emucal.data.registry())).")
    for name in tqdm(list(paths), disable=not progress, desc="emucal mirror", unit="file"):
        _place(Path(paths[name]), directory / name, link=link)
    return write_manifest(directory, list(paths))


def mirror_natural_earth(directory, *, progress: bool = True) -> list[Path]:
    """Copy the book's Natural Earth shapefiles into ``directory/natural_earth`` and zip it.

    The shapefiles come from where cartopy finds them (``CARTOPY_DATA_DIR``,
    then cartopy's data dir), and cartopy downloads the ones it lacks.
    """
    try:
        import cartopy
        from cartopy.io import shapereader

        from .plotting import NATURAL_EARTH_FEATURES, NATURAL_EARTH_RESOLUTIONS  # the maps' layers
    except ImportError as err:
        raise OSError(f"The Natural Earth mirror needs cartopy ({err}).") from err

    directory = Path(directory)
    root = directory / NATURAL_EARTH_DIR
    copied: list[Path] = []
    wanted = [(r, c, n) for r in NATURAL_EARTH_RESOLUTIONS for c, n in NATURAL_EARTH_FEATURES]
    for resolution, category, name in tqdm(wanted, disable=not progress, desc="natural earth", unit="layer"):
        try:
            shp = Path(shapereader.natural_earth(resolution=resolution, category=category, name=name))
        except OSError as err:  # urllib's URLError is an OSError
            raise ConnectionError(
                f"Natural Earth {resolution} {category}/{name} is in neither CARTOPY_DATA_DIR "
                f"({cartopy.config['pre_existing_data_dir']}) nor cartopy's data dir "
                f"({cartopy.config['data_dir']}), and cartopy could not download it ({err}). "
                "Run this once with internet, or set CARTOPY_DATA_DIR to a folder that has "
                "the shapefiles, or leave out --natural-earth."
            ) from err
        target_dir = root / "shapefiles" / "natural_earth" / category
        for suffix in _SHAPEFILE_PARTS:
            part = shp.with_suffix(suffix)
            if part.is_file():
                _place(part, target_dir / part.name, link=False)
                copied.append(target_dir / part.name)
    with atomic_path(directory / f"{NATURAL_EARTH_DIR}.zip") as tmp:
        made = Path(f"{tmp}.zip")  # make_archive adds .zip to the name it is given
        try:
            shutil.make_archive(str(tmp), "zip", root_dir=directory, base_dir=NATURAL_EARTH_DIR)
            made.replace(tmp)
        finally:
            made.unlink(missing_ok=True)
    return copied


# MyST fences: three or more colons or backticks, a space allowed before the brace
_SOLUTION_START = re.compile(r"^(:{3,}|`{3,})\s*\{solution-start\}")
_SOLUTION_END = re.compile(r"^(:{3,}|`{3,})\s*\{solution-end\}")


def strip_solutions(notebook: dict) -> tuple[dict, int]:
    """Remove the exercise solutions from a notebook (a dict in nbformat 4 layout).

    The book writes solutions with sphinx-exercise's gated directives: a line
    ``:::{solution-start} LABEL`` with its options and a closing ``:::``, then
    any number of cells, then ``:::{solution-end}`` and ``:::`` (any MyST
    fence: more colons, backticks, a space before the brace). Everything
    from the start to the end marker goes, code cells included, and a short
    note takes its place; the exercises themselves stay. Outputs are cleared.

    Returns
    -------
    notebook : dict
        A new notebook.
    removed : int
        The number of solutions removed.
    """
    note = "*(The solution is in the book.)*"
    cells, removed, inside = [], 0, False
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown":
            if not inside:
                cells.append({**cell, "outputs": [], "execution_count": None}
                             if cell["cell_type"] == "code" else cell)
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        kept, lines = [], iter(source.splitlines(keepends=True))
        for line in lines:
            start, end = _SOLUTION_START.match(line), _SOLUTION_END.match(line)
            if not inside and start:
                for option in lines:  # skip its options up to the closing fence
                    if option.strip() == start.group(1):
                        break
                inside, removed = True, removed + 1
                kept.append(note + "\n")
            elif inside and end:
                next(lines, None)  # its closing fence
                inside = False
            elif not inside:
                kept.append(line)
        text = "".join(kept).strip("\n")
        if text:
            cells.append({**cell, "source": text})
    if inside:
        raise ValueError("A solution-start has no solution-end: the notebook is not in the book's format.")
    return {**notebook, "cells": cells}, removed


def write_handouts(directory, notebooks: Iterable, *, overwrite: bool = False) -> dict[Path, int]:
    """Copy notebooks into ``directory`` without their solutions and outputs.

    Returns the written notebooks and how many solutions each lost. Refuses
    (``ValueError``) a notebook that does not exist or cannot be read, a
    handout that would overwrite one of the inputs, two notebooks of the
    same name, and, unless ``overwrite``, a handout that exists already (a
    participant may have worked in it). Each handout is written to a
    temporary file and renamed into place, so a hard link at its name is
    replaced, never written through.
    """
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give the folder to write the handouts into")
    if isinstance(notebooks, (str, os.PathLike)):
        notebooks = [notebooks]
    sources = [Path(n) for n in notebooks]
    missing = [str(n) for n in sources if not n.is_file()]
    if missing:
        raise ValueError(f"no such notebook: {', '.join(missing)}")
    inputs = {n.resolve() for n in sources}
    over = [str(n) for n in sources if (out / n.name).resolve() in inputs]
    if over:
        raise ValueError(f"the handout of {', '.join(over)} would overwrite a notebook given as "
                         f"input (and strip its solutions); choose a folder other than {out}")
    names = [n.name for n in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two notebooks named {', '.join(twice)} would be written to the same "
                         "file; make a handout of each folder separately")
    there = [str(out / n.name) for n in sources if os.path.lexists(out / n.name)]
    if there and not overwrite:
        one = len(there) == 1
        raise ValueError(f"{', '.join(there)} already exist{'s' if one else ''} and may hold a "
                         f"participant's work; pass --overwrite (overwrite=True) to replace "
                         f"{'it' if one else 'them'}, or choose another folder")
    stripped = {}
    for source in sources:  # read them all before writing any
        try:
            stripped[source] = strip_solutions(json.loads(source.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{source} is not a Jupyter notebook that can be read "
                             f"({type(err).__name__}: {err})") from err
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for source, (notebook, removed) in stripped.items():
        target = out / source.name
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written[target] = removed
    return written
