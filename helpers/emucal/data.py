"""Download and cache the data the book uses, with hash checks.

Every file the book reads is listed in a *registry* (``data_registry/camels.txt``
in the repository, shipped inside the package as ``emucal/registry/camels.txt``):
one line per file with its name, its SHA-256 hash and the upstream URL. The
:func:`fetch` function downloads a file once into a local cache with
`pooch <https://www.fatiando.org/pooch>`_, checks its hash, and returns the
local path. Later calls, including ones made offline, return the cached copy.

Two environment variables change where data comes from and goes to:

``EMUCAL_DATA_DIR``
    The cache folder. Default: the per-user cache that pooch chooses
    (``~/.cache/emucal`` on Linux).
``EMUCAL_MIRROR``
    Base URL of a mirror (for example a workshop server started with
    ``python -m http.server``). Every registry name is then fetched from
    ``<mirror>/<name>`` instead of its upstream URL, with the same hash checks.

Examples
--------
>>> from emucal import data
>>> path = data.fetch("camels_attributes_v2.0/camels_topo.txt")  # doctest: +SKIP
>>> sorted(data.registry())[:2]  # doctest: +SKIP
['basin_timeseries_v1p2_metForcing_obsFlow.zip', 'camels_attributes_v2.0/camels_clim.txt']
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
import time
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import pooch
import requests

__all__ = ["FULL_ZIP", "cache_dir", "extract_members", "fetch", "mirror_url", "registry",
           "registry_urls"]

#: Registry name of the full CAMELS-US time-series archive (3.4 GB).
FULL_ZIP = "basin_timeseries_v1p2_metForcing_obsFlow.zip"
#: Downloads tried again after a failure or a hash mismatch (pooch's ``retry_if_failed``).
RETRIES = 1
#: Temporary files (pooch's ``tmp*``) of a download that stopped are removed after this many seconds.
STALE_SECONDS = 600

pooch.get_logger().setLevel("WARNING")  # not one line per file of the ~40 in the sample


@lru_cache(maxsize=1)
def _read_registry() -> tuple[dict[str, str], dict[str, str]]:
    """``({name: sha256}, {name: upstream url})`` from the registry file, read by pooch."""
    here = Path(__file__).resolve().parent  # an installed wheel, else the repository
    paths = [here / "registry" / "camels.txt", here.parents[1] / "data_registry" / "camels.txt"]
    found = [path for path in paths if path.is_file()]
    if not found:
        raise FileNotFoundError(f"The emucal data registry is in none of {[str(p) for p in paths]}; "
                                "reinstall emucal (pip install -e .).")
    store = pooch.create(path="", base_url="")
    store.load_registry(found[0])
    return store.registry, store.urls


def registry() -> dict[str, str]:
    """Return the registry as ``{name: sha256}``: the only names :func:`fetch` accepts."""
    return dict(_read_registry()[0])


def registry_urls() -> dict[str, str]:
    """Return the upstream URL of every registry name, ``{name: url}``."""
    return dict(_read_registry()[1])


def _pooch(mirror: str | None = None) -> pooch.Pooch:
    """The cache as pooch sees it: ``EMUCAL_DATA_DIR`` (pooch's ``env``), names resolved to
    ``<mirror>/<name>`` when a mirror is given, else to each name's upstream URL."""
    hashes, urls = _read_registry()
    return pooch.create(path=pooch.os_cache("emucal"), env="EMUCAL_DATA_DIR", base_url=mirror or "",
                        registry=dict(hashes), urls={} if mirror else dict(urls),
                        retry_if_failed=RETRIES)


def cache_dir() -> Path:
    """Return the cache folder: ``$EMUCAL_DATA_DIR`` or pooch's per-user cache."""
    return _pooch().abspath


def mirror_url() -> str | None:
    """Return the mirror base URL from ``$EMUCAL_MIRROR`` (no trailing slash), or None.

    Raises
    ------
    ValueError
        If the variable is set to something that is not an ``http://`` or
        ``https://`` URL.
    """
    given = os.environ.get("EMUCAL_MIRROR", "")
    mirror = given.strip().rstrip("/")
    if mirror and not (urlsplit(mirror).scheme in ("http", "https") and urlsplit(mirror).netloc):
        raise ValueError(
            f"EMUCAL_MIRROR={given!r} is not a URL: give the scheme and host, for example "
            "EMUCAL_MIRROR=http://192.168.1.10:8000 (or unset it to download from upstream).")
    return mirror or None


def fetch(name: str, *, progressbar: bool | None = None) -> Path:
    """Download a registry file once, check its hash, and return its local path.

    Parameters
    ----------
    name
        A name from :func:`registry`, for example
        ``"camels_attributes_v2.0/camels_topo.txt"``.
    progressbar
        Show a download progress bar. Default: only for the full archive.

    Returns
    -------
    pathlib.Path
        The file in the cache (see :func:`cache_dir`).

    Raises
    ------
    KeyError
        If ``name`` is not in the registry.
    ValueError
        If the downloaded file's hash differs from the registry's in every one
        of ``1 + RETRIES`` downloads; the message names the file, the URL, both
        hashes and what to do.
    ConnectionError
        If the file is not cached and cannot be downloaded; the message names
        the URL that failed and how to use a mirror instead.

    Notes
    -----
    pooch writes each download to a temporary file and moves it into the cache
    only after the hash matched, so an interrupted or corrupted download never
    leaves a file that a later call would take as cached; a cached file whose
    hash no longer matches is downloaded again. Temporary files that a killed
    download left are removed after :data:`STALE_SECONDS`.
    """
    if name not in registry():
        close = [n for n in registry() if Path(n).name == Path(name).name]
        raise KeyError(f"{name!r} is not in the emucal data registry."
                       + (f" Did you mean {close[0]!r}?" if close else "")
                       + " List the valid names with sorted(emucal.data.registry()).")
    mirror = mirror_url()
    store = _pooch(mirror)
    url, target = store.get_url(name), store.abspath / name
    if store.abspath.exists() and not store.abspath.is_dir():
        raise NotADirectoryError(f"The cache {store.abspath} is a file, not a folder: point "
                                 "EMUCAL_DATA_DIR at a folder (it is created if needed).")
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder where the cache keeps the file {name!r}: "
                                "move or remove that folder, and fetch again.")
    now = time.time()
    for stale in target.parent.glob("tmp*") if target.parent.is_dir() else []:
        try:
            if stale.is_file() and now - stale.stat().st_mtime > STALE_SECONDS:
                stale.unlink()
        except OSError:  # taken by another process meanwhile
            pass
    # made here, so that inside the try pooch's only ValueError is a hash that does not match
    downloader = pooch.HTTPDownloader(progressbar=name == FULL_ZIP if progressbar is None
                                      else progressbar)
    # pooch checks that the file's folder exists and then makes it: a second process (two
    # benchmarks, dask workers) making it in between fails with FileExistsError
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError as err:
        raise PermissionError(f"Cannot create {target.parent} for the cache ({err.strerror}): point "
                              "EMUCAL_DATA_DIR at a folder you can write to.") from err
    try:
        return Path(store.fetch(name, downloader=downloader))
    except requests.exceptions.RequestException as err:
        cached = (f"The copy in the cache, {target}, does not match the registry's hash (corrupt "
                  "or from another version), so it was not used" if target.is_file() else
                  f"It is not in the cache {store.abspath} either")
        raise ConnectionError(
            f"Could not download {name!r} from {url} ({type(err).__name__}: {err}). {cached}. "
            "Check the network, or point EMUCAL_MIRROR at a mirror that serves the registry names "
            "(for example EMUCAL_MIRROR=http://127.0.0.1:8000 after 'python -m http.server 8000' "
            "in a folder made by 'emucal mirror')."
        ) from err
    except ValueError as err:
        todo = ("The mirror holds another file: rebuild it with 'emucal mirror', or unset "
                "EMUCAL_MIRROR to download from upstream." if mirror else
                "The upstream file has changed: check it, and report it to the emucal authors.")
        raise ValueError(
            f"{name!r} downloaded from {url} does not match the registry's SHA-256 "
            f"{store.registry[name]} in {1 + RETRIES} downloads (pooch: {err}); nothing was "
            f"cached. {todo}"
        ) from err


def _crc32(path: Path) -> int:
    """CRC-32 of a file, as a zip archive records it for each member."""
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def extract_members(
    archive: str | os.PathLike,
    patterns: list[str],
    extract_dir: str | os.PathLike,
) -> dict[str, Path]:
    """Extract only the members of a zip archive that match the given patterns.

    The full CAMELS archive is 3.4 GB; a user who wants five basins needs a few
    megabytes of it. Each pattern is a shell-style wildcard matched against
    the member paths inside the archive (``*`` also matches ``/``), for example
    ``"*usgs_streamflow/*/01013500_streamflow_qc.txt"``, so the archive's
    top-level folder name does not matter. The first member that matches is
    extracted, keeping its path under ``extract_dir``; members already
    extracted (same size and CRC-32 as in the archive) are not extracted
    again, and a copy edited or damaged since is extracted again. Each
    member is written to a temporary file of its own and renamed into place
    when complete, so a process never sees a half-written member, even when
    several extract the same one at once. Members whose path would leave
    ``extract_dir`` (absolute, or with ``..``) are refused.

    Parameters
    ----------
    archive
        Path to the zip file.
    patterns
        One wildcard pattern per wanted member.
    extract_dir
        Folder to extract into.

    Returns
    -------
    dict
        ``{pattern: extracted path}`` in the order asked.

    Raises
    ------
    KeyError
        If a pattern matches no member of the archive.
    ValueError
        If a matching member's path is absolute or climbs out with ``..``, or
        its data is damaged (bad CRC or compressed stream); the message names
        the archive and the member. Also if ``archive`` is no zip or
        ``extract_dir`` is a file (``FileNotFoundError`` if ``archive`` is missing).
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not Path(archive).is_file():
        raise FileNotFoundError(f"No zip archive at {archive}; give the path of the zip file.")
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive} is not a zip archive (damaged, or another file); fetch it again.")
    extract_dir = Path(extract_dir)
    if extract_dir.exists() and not extract_dir.is_dir():
        raise ValueError(f"extract_dir {extract_dir} is a file; give a folder to extract into.")
    root = extract_dir.resolve()
    found: dict[str, Path] = {}
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        for pattern in patterns:
            matches = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not matches:
                raise KeyError(
                    f"No member of {Path(archive).name} matches {pattern!r}. "
                    "Check the basin id against emucal.camels.attributes().index."
                )
            member = matches[0]
            parts = member.replace("\\", "/").split("/")
            target = extract_dir / member
            if (member.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", member)
                    or not target.resolve().is_relative_to(root)):
                raise ValueError(f"The member {member!r} of {Path(archive).name} would be written "
                                 f"outside {extract_dir}; the archive is not a CAMELS archive "
                                 "that can be trusted.")
            size = zf.getinfo(member).file_size
            if not (target.is_file() and target.stat().st_size == size
                    and _crc32(target) == zf.getinfo(member).CRC):
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                                dir=target.parent)
                try:
                    with zf.open(member) as src, os.fdopen(fd, "wb") as dst:
                        while chunk := src.read(1 << 20):  # zipfile checks the CRC at the end
                            dst.write(chunk)
                    if os.path.getsize(tmp_name) != size:
                        raise OSError(f"{member}: wrote {os.path.getsize(tmp_name)} of {size} bytes")
                    os.chmod(tmp_name, 0o644)
                    os.replace(tmp_name, target)
                except (zipfile.BadZipFile, zlib.error) as err:
                    raise ValueError(
                        f"The member {member!r} of the archive {archive} is damaged ({err}); "
                        f"nothing was extracted for it. Delete {archive} and download it again "
                        "(for the CAMELS archive: emucal fetch --basins ID...).") from err
                finally:
                    if os.path.exists(tmp_name):
                        os.unlink(tmp_name)
            found[pattern] = target
    return found
