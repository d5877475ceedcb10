"""The ``emucal`` command line: fetch the book's data, lay out a workshop mirror, write handouts,
explore an ensemble.

Five commands, all thin wrappers around :mod:`emucal.data`,
:mod:`emucal.camels`, :mod:`emucal.workshop` and :mod:`emucal.explorer` (the
same download path, cache and hash checks as the notebooks):

``emucal fetch``
    Download every file the notebooks read (the CAMELS-US attributes and the
    19-basin teaching sample) into the cache. With ``--basins``, fetch named
    basins of the full CAMELS-US set instead (the 3.4 GB archive is fetched
    once and only those basins' files are extracted).
``emucal mirror DIR``
    Lay out ``DIR`` so that ``python -m http.server --directory DIR`` serves
    every registry name at ``<url>/<name>``, which is what
    ``EMUCAL_MIRROR=<url>`` expects; optionally with the full archive and the
    Natural Earth shapefiles of the book's maps.
``emucal basins``
    List valid basin ids: the teaching sample, or all 671 with ``--all``.
``emucal handout DIR NOTEBOOK...``
    Copy notebooks into ``DIR`` without their exercise solutions and outputs,
    for participants to work in during a workshop; handouts already in
    ``DIR`` are kept unless ``--overwrite`` is given.
``emucal explore ENSEMBLE.nc``
    Serve the explorer of a perturbed-parameter ensemble
    (:func:`emucal.explorer.ensemble_app`) as a web page with Voila, on
    127.0.0.1 unless ``--ip`` says otherwise; with ``--export DIR``, write
    the Sobol' indices (CSV) and the figures (PNG) instead.

The same commands run as ``python -m emucal``.

Exit status: 0 on success, 1 when a download, hash check or file operation
failed, 2 for a usage error (a bad option, an unknown basin id).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import socket
import sys
import textwrap
from pathlib import Path
from typing import Iterator, Sequence

from . import data, workshop

__all__ = ["build_parser", "main"]

_NATURAL_EARTH_DIR = workshop.NATURAL_EARTH_DIR

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """A mistake in what the user asked for (exit status 2)."""


# ----------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _data_dir(cache: str | None) -> Iterator[None]:
    """Set ``EMUCAL_DATA_DIR`` for the duration of one command, then restore it."""
    if cache is None:
        yield
        return
    old = os.environ.get("EMUCAL_DATA_DIR")
    os.environ["EMUCAL_DATA_DIR"] = str(Path(cache).expanduser().resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("EMUCAL_DATA_DIR", None)
        else:
            os.environ["EMUCAL_DATA_DIR"] = old


def _progress(items, quiet: bool, **kwargs):
    """Wrap ``items`` in a tqdm bar on stderr (off with --quiet or when not a terminal)."""
    from tqdm import tqdm

    return tqdm(items, disable=True if quiet else None, file=sys.stderr, **kwargs)


def _byte_bar(quiet: bool) -> bool:
    """Whether the full archive's download gets pooch's byte progress bar."""
    return not quiet and sys.stderr.isatty()


def _port(text: str) -> int:
    """An ``argparse`` type: a TCP port number, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a number from 1 to 65535, "
                                         "for example 8000")
    return port


def _sample_names() -> list[str]:
    """Registry names the notebooks need: everything except the full archive."""
    return sorted(name for name in data.registry() if name != data.FULL_ZIP)


def _human(size: float) -> str:
    """Format a byte count for people (decimal units)."""
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


def _summarise(names: Sequence[str]) -> list[str]:
    """One line per top-level folder of the registry names: how many files."""
    groups: dict[str, int] = {}
    for name in names:
        top = name.split("/", 1)[0] + ("/" if "/" in name else "")
        groups[top] = groups.get(top, 0) + 1
    width = max(len(g) for g in groups)
    return [f"  {g:<{width}}  {n} file{'s' if n != 1 else ''}" for g, n in groups.items()]


def _local_ip() -> str | None:
    """This machine's address on its default route, or None (nothing is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: picks a route, sends no packet
            address = sock.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("0.") else address


def _fetch_all(names: Sequence[str], quiet: bool) -> dict[str, Path]:
    """Fetch registry names through :func:`emucal.data.fetch`, with one progress bar."""
    paths = {}
    small = [n for n in names if n != data.FULL_ZIP]
    for name in _progress(small, quiet, desc="emucal fetch", unit="file"):
        paths[name] = data.fetch(name, progressbar=False)
    if data.FULL_ZIP in names:
        if not quiet:
            print(f"Fetching {data.FULL_ZIP} (3.4 GB, once) ...", file=sys.stderr)
        paths[data.FULL_ZIP] = data.fetch(data.FULL_ZIP, progressbar=_byte_bar(quiet))
    return paths


def _fetch_attributes(quiet: bool) -> None:
    """Fetch the seven attribute files into the cache and make camels read them from there."""
    from . import camels

    _fetch_all([f"camels_attributes_v2.0/camels_{key}.txt" for key in camels.ATTRIBUTE_FILES], quiet)
    camels.attributes(reload=True)


# ----------------------------------------------------------------------- commands
def _cmd_fetch(args: argparse.Namespace) -> int:
    """``emucal fetch``: the attributes and the teaching sample, or ``--basins`` of the full set."""
    if args.basins:
        return _fetch_full_basins(args)
    if args.forcing is not None:  # the teaching sample has NLDAS forcing only
        raise _UsageError(f"--forcing {args.forcing} picks the forcing extracted with --basins; pass "
                          f"the basins too, for example: emucal fetch --basins 01013500 "
                          f"--forcing {args.forcing} (list the ids with 'emucal basins --all').")
    names = _sample_names()
    paths = _fetch_all(names, args.quiet)
    cache = data.cache_dir()
    size = sum(p.stat().st_size for p in paths.values())
    print(f"Fetched {len(names)} files ({_human(size)}, hashes checked) into {cache}:")
    print("\n".join(_summarise(names)))
    _print_cache_hint(args)
    return EXIT_OK


def _fetch_full_basins(args: argparse.Namespace) -> int:
    """``emucal fetch --basins``: check the ids, fetch the archive, extract only their files.

    The ids are checked against the attributes before the 3.4 GB archive is
    fetched; the extraction is :func:`emucal.camels.load_basins`'s own
    (``source="full"``), so the files land where it looks for them.
    """
    from . import camels

    _fetch_attributes(args.quiet)  # the ids are checked against them
    try:
        basins = camels.check_basins(args.basins)
    except KeyError as err:
        raise _UsageError(f"{err.args[0]} From the command line: emucal basins --all") from err
    basins = list(dict.fromkeys(basins))  # once each, in the order given
    forcing = args.forcing or "nldas"
    _fetch_all([data.FULL_ZIP], args.quiet)  # the archive first, so that --quiet holds for it
    paths = camels.extract_basins(basins, forcing)
    target = data.cache_dir() / "camels_full"
    print(f"Extracted {len(basins)} basin{'s' if len(basins) != 1 else ''} ({forcing} forcing "
          f"and USGS streamflow) from {data.cache_dir() / data.FULL_ZIP} into {target}:")
    for basin, (forcing_path, flow_path) in paths.items():
        print(f"  {basin}  forcing    {forcing_path}")
        print(f"  {'':8}  streamflow {flow_path}")
    ids = ", ".join(repr(b) for b in basins)
    print(f"Load them with emucal.camels.load_basins([{ids}], source='full', "
          f"forcing='{forcing}').")
    _print_cache_hint(args)
    return EXIT_OK


def _print_cache_hint(args: argparse.Namespace) -> None:
    """After ``--cache DIR``, say how the notebooks find that cache."""
    if args.cache is not None:
        print(f"The notebooks read this cache when EMUCAL_DATA_DIR={shlex.quote(str(data.cache_dir()))}.")


def _cmd_mirror(args: argparse.Namespace) -> int:
    """``emucal mirror DIR``: fetch through the cache, link or copy to ``DIR/<name>``, explain."""
    directory = Path(args.directory).expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise _UsageError(f"{directory} exists and is not a folder.")
    names = _sample_names() + ([data.FULL_ZIP] if args.full else [])
    paths = _fetch_all(names, args.quiet)
    workshop.mirror(directory, paths, link=not args.copy, progress=not args.quiet)
    size = sum((directory / n).stat().st_size for n in names)
    print(f"Mirror ready: {len(names)} files ({_human(size)}, hashes checked) in {directory}:")
    print("\n".join(_summarise(names)))
    if not args.full:
        print(f"  (without {data.FULL_ZIP}: add --full for load_basins(source='full'), 3.4 GB)")

    if args.natural_earth:
        shapefiles = workshop.mirror_natural_earth(directory, progress=not args.quiet)
        print(f"Natural Earth: {len(shapefiles)} files in {directory / _NATURAL_EARTH_DIR} "
              f"(a CARTOPY_DATA_DIR) and {directory / (_NATURAL_EARTH_DIR + '.zip')}")

    ip = _local_ip() or "<ip>"
    url = f"http://{ip}:{args.port}"
    print()
    print("Instructor, serve it (leave this running):")
    print(f"  python -m http.server {args.port} --directory {shlex.quote(str(directory))}")
    print("Participants, before starting Jupyter (use an address of the server they can reach):")
    print(f"  export EMUCAL_MIRROR={url}")
    print(f"  (or in a notebook, before anything downloads: %env EMUCAL_MIRROR={url})")
    if args.natural_earth:
        print("Participants, for maps without internet:")
        print(f"  curl -O {url}/{_NATURAL_EARTH_DIR}.zip && python -m zipfile -e "
              f"{_NATURAL_EARTH_DIR}.zip ~")
        print(f"  export CARTOPY_DATA_DIR=~/{_NATURAL_EARTH_DIR}")
    return EXIT_OK


def _cmd_basins(args: argparse.Namespace) -> int:
    """``emucal basins``: the sample's ids (from the registry), or all ids with ``--all``."""
    from . import camels

    if not args.all:
        ids = camels.sample_basins()
        print("\n".join(ids))
        print(f"{len(ids)} basins in the teaching sample; 'emucal basins --all' lists all of CAMELS-US.",
              file=sys.stderr)
        return EXIT_OK
    _fetch_attributes(args.quiet)
    table = camels.attributes()
    for basin, row in table[["huc_02", "gauge_name"]].iterrows():
        print(f"{basin}\t{row['huc_02']}\t{row['gauge_name']}")
    print(f"{len(table)} CAMELS-US basins (basin, huc_02, gauge_name).", file=sys.stderr)
    return EXIT_OK


def _cmd_handout(args: argparse.Namespace) -> int:
    """``emucal handout``: copies of the notebooks without solutions."""
    try:
        written = workshop.write_handouts(args.directory, args.notebooks, overwrite=args.overwrite)
    except ValueError as err:
        raise _UsageError(str(err)) from err
    for target, removed in written.items():
        print(f"{target}: {removed} solution{'s' if removed != 1 else ''} removed")
    return EXIT_OK


def _open_ensemble(args: argparse.Namespace):
    """The ensemble file, checked as the app checks it, and the chosen output and slice."""
    import xarray as xr

    from .explorer import _check_input, _select_from_text

    path = Path(args.ensemble).expanduser()
    if not path.is_file():
        raise _UsageError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}; an "
                          "ensemble is one netCDF file (ds.to_netcdf(...) of the format in "
                          "emucal.sensitivity).")
    try:
        ds = xr.open_dataset(path)
    except (ValueError, OSError) as err:
        raise _UsageError(f"{path} is not a netCDF file that xarray can read ({err}).") from err
    try:
        select = _select_from_text(ds, args.select)
    except ValueError as err:
        raise _UsageError(str(err)) from err
    try:
        _check_input(ds, args.output, select)
    except ValueError as err:
        raise _UsageError(f"{path}: {err}") from err
    return path, ds, select


def _cmd_explore(args: argparse.Namespace) -> int:
    """``emucal explore``: serve the ensemble explorer with Voila, or export its tables and figures."""
    import json
    import shutil
    import subprocess
    import tempfile

    path, ds, select = _open_ensemble(args)
    if args.export is not None:
        from .explorer import ensemble_app

        app = ensemble_app(ds.load(), output=args.output, select=select)
        if app.response is None:
            raise _UsageError(f"{app.output} cannot be emulated: {app.problem}")
        for written in app.export(args.export):
            print(written)
        return EXIT_OK
    voila = shutil.which("voila") or str(Path(sys.executable).with_name("voila"))
    if not Path(voila).exists():
        raise _UsageError("emucal explore needs Voila: pip install 'emucal[book]' (or use "
                          "--export DIR).")
    import nbformat  # installed with Voila

    code = ("import json, os\n\nimport xarray as xr\n\nfrom emucal import explorer\n\n"
            "ensemble = xr.load_dataset(os.environ['EMUCAL_ENSEMBLE'])\n"
            "select = explorer._select_from_text(ensemble, json.loads(os.environ['EMUCAL_SELECT']))\n"
            "explorer.ensemble_app(ensemble, output=os.environ['EMUCAL_OUTPUT'] or None, select=select)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    env = {**os.environ, "EMUCAL_ENSEMBLE": str(path.resolve()), "EMUCAL_OUTPUT": args.output or "",
           "EMUCAL_SELECT": json.dumps(args.select)}  # as typed: dates and numbers match there
    with tempfile.TemporaryDirectory(prefix="emucal-explore-") as folder:
        page = Path(folder) / f"{path.stem}.ipynb"
        nbformat.write(notebook, page)
        print(f"Exploring {path} at http://{args.ip}:{args.port}/ (Ctrl-C stops it)", flush=True)
        command = [voila, str(page), f"--port={args.port}", f"--Voila.ip={args.ip}",
                   "--VoilaConfiguration.show_tracebacks=True",
                   *(["--no-browser"] if args.no_browser else [])]
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return EXIT_OK


# ----------------------------------------------------------------------- parser
_ENVIRONMENT = """\
environment:
  EMUCAL_DATA_DIR  the cache folder (default: the per-user cache, ~/.cache/emucal on Linux)
  EMUCAL_MIRROR    base URL of a mirror made by 'emucal mirror'; every file is then
                   fetched from <mirror>/<name>, with the same hash checks

exit status: 0 success, 1 a download, hash check or file operation failed,
             2 a usage error (bad option, unknown basin id)
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=79)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``emucal`` command.

    Returns
    -------
    argparse.ArgumentParser
        The parser, with the ``fetch``, ``mirror``, ``basins``, ``handout`` and
        ``explore`` sub-commands.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="emucal",
        description=_wrap("Fetch the data of the emulator-calibration book (CAMELS-US) and "
                    "prepare a download mirror for workshops."),
        epilog=_ENVIRONMENT + "\nRun 'emucal COMMAND --help' for the options of a command.",
        formatter_class=formatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"emucal {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", metavar="DIR",
                        help="cache folder to download into (default: $EMUCAL_DATA_DIR, or the "
                             "per-user cache)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    fetch = commands.add_parser(
        "fetch", parents=[common], formatter_class=formatter,
        help="download the book's data into the cache",
        description=_wrap("Download every file the notebooks read (the CAMELS-US attributes and the "
                    "19-basin teaching sample, about 13 MB) into the cache, checking each "
                    "file's SHA-256 hash. With --basins, fetch named basins of the full "
                    "CAMELS-US set instead: the 3.4 GB archive is downloaded once and only "
                    "those basins' files are extracted."),
        epilog="examples:\n"
               "  emucal fetch\n"
               "  emucal fetch --cache ./camels-cache\n"
               "  emucal fetch --basins 01013500 01022500 --forcing daymet\n\n" + _ENVIRONMENT,
    )
    fetch.add_argument("--basins", nargs="+", metavar="ID",
                       help="8-digit USGS gauge ids of the full CAMELS-US set (671 basins; "
                            "list them with 'emucal basins --all')")
    fetch.add_argument("--forcing", choices=("nldas", "daymet", "maurer"),
                       help="forcing data set to extract with --basins (default: nldas)")
    fetch.set_defaults(run=_cmd_fetch)

    mirror = commands.add_parser(
        "mirror", parents=[common], formatter_class=formatter,
        help="lay out a folder that 'python -m http.server' serves as EMUCAL_MIRROR",
        description=_wrap("Fetch every file the notebooks read (through the cache, hashes checked) "
                    "and hard-link or copy it into DIR at its registry name, so that "
                    "'python -m http.server --directory DIR' serves it where "
                    "EMUCAL_MIRROR=http://HOST:PORT makes every notebook look. Also writes "
                    "DIR/MANIFEST.tsv (name, bytes, sha256, md5, upstream URL). Prints the "
                    "commands for the instructor and the participants at the end."),
        epilog="examples:\n"
               "  emucal mirror ./workshop-mirror\n"
               "  emucal mirror ./workshop-mirror --full --natural-earth\n"
               "  python -m http.server 8000 --directory ./workshop-mirror\n\n" + _ENVIRONMENT,
    )
    mirror.add_argument("directory", metavar="DIR", help="mirror folder (created if needed)")
    mirror.add_argument("--full", action="store_true",
                        help=f"also include {data.FULL_ZIP} (3.4 GB), needed for "
                             "load_basins(source='full'); off by default")
    mirror.add_argument("--natural-earth", action="store_true",
                        help="also copy the Natural Earth shapefiles of the book's maps (110m and "
                             "50m coastline, land, ocean, lakes, land borders; about 8 MB) into "
                             "DIR/natural_earth, a folder to use as CARTOPY_DATA_DIR, and zip it "
                             "as DIR/natural_earth.zip; they are taken from CARTOPY_DATA_DIR or "
                             "cartopy's data dir (cartopy downloads missing ones)")
    mirror.add_argument("--copy", action="store_true",
                        help="copy files from the cache instead of hard-linking them")
    mirror.add_argument("--port", type=_port, default=8000,
                        help="port used in the printed http.server command (default: 8000)")
    mirror.set_defaults(run=_cmd_mirror)

    basins = commands.add_parser(
        "basins", parents=[common], formatter_class=formatter,
        help="list valid basin ids",
        description=_wrap("Print the gauge ids of the teaching sample (no download), or with --all "
                    "every CAMELS-US basin with its HUC-02 region and name (fetches the "
                    "attribute files)."),
        epilog=_ENVIRONMENT,
    )
    basins.add_argument("--all", action="store_true",
                        help="all 671 CAMELS-US basins (ids for 'emucal fetch --basins')")
    basins.set_defaults(run=_cmd_basins)

    handout = commands.add_parser(
        "handout", parents=[common], formatter_class=formatter,
        help="copies of notebooks without the exercise solutions",
        description=_wrap("Write copies of the book's notebooks into DIR with every exercise "
                    "solution (prose and code cells) removed and outputs cleared, for "
                    "participants to work in during a workshop. The rendered book keeps "
                    "its solutions in collapsed dropdowns."),
        epilog="example:\n  emucal handout handouts/ book/*.ipynb",
    )
    handout.add_argument("directory", metavar="DIR", help="output folder (created if needed)")
    handout.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="notebooks to copy")
    handout.add_argument("--overwrite", action="store_true",
                         help="replace handouts already in DIR (by default they are kept, as "
                              "participants may have worked in them)")
    handout.set_defaults(run=_cmd_handout)

    explore = commands.add_parser(
        "explore", formatter_class=formatter,
        help="explore a perturbed-parameter ensemble in a web page",
        description=_wrap("Serve the explorer of a perturbed-parameter ensemble (an emucal "
                    "ensemble netCDF file: params(member, param) with lower/upper, and outputs "
                    "over member) as a web page with Voila: Sobol' indices with intervals, "
                    "response curves and maps from a GP emulator whose cross-validated skill "
                    "is shown. With --export, write the indices (CSV) and figures (PNG) "
                    "into a folder instead."),
        epilog="examples:\n  emucal explore my_ppe.nc\n"
               "  emucal explore ensemble.nc --output norm_kge --select basin=01013500 "
               "--select period=calibration\n  emucal explore my_ppe.nc --export figures/",
    )
    explore.add_argument("ensemble", metavar="ENSEMBLE", help="the ensemble's netCDF file")
    explore.add_argument("--output", default=None,
                         help="the output shown first (default: the first that can be emulated)")
    explore.add_argument("--select", action="append", default=[], metavar="DIM=VALUE",
                         help="the value of one of the output's other dimensions (repeatable)")
    explore.add_argument("--port", type=_port, default=8866, help="port of the page (default: 8866)")
    explore.add_argument("--ip", default="127.0.0.1",
                         help="address to serve on (default: 127.0.0.1, this machine only)")
    explore.add_argument("--no-browser", action="store_true", help="do not open a browser")
    explore.add_argument("--export", type=Path, default=None, metavar="DIR",
                         help="write the indices and figures to DIR and exit (no server)")
    explore.set_defaults(run=_cmd_explore, cache=None)
    return parser


def _fail(message: str, code: int) -> int:
    """Print ``emucal: error: message`` on stderr and return ``code``."""
    print(f"emucal: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``emucal`` command line.

    Parameters
    ----------
    argv
        The arguments without the program name, for example
        ``["fetch", "--cache", "/tmp/c"]``. Default: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success (``--help`` included), 1 when a
        download, hash check or file operation failed, 2 for a usage error
        (a bad option, an unknown basin id), 130 when interrupted.

    Notes
    -----
    Errors are reported on stderr as one message, without a traceback. The
    function returns instead of exiting, so tests and scripts can call it;
    the ``emucal`` console script and ``python -m emucal`` pass the status to
    :func:`sys.exit`. ``--cache`` sets ``EMUCAL_DATA_DIR`` only while the
    command runs.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    try:
        with _data_dir(args.cache):
            return args.run(args)
    except _UsageError as err:
        return _fail(str(err), EXIT_USAGE)
    except KeyError as err:  # a registry name or archive member that does not exist
        return _fail(str(err.args[0]) if err.args else repr(err), EXIT_USAGE)
    except BrokenPipeError:  # output piped into a command that stopped reading (| head)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except ConnectionError as err:
        mirror = data.mirror_url()
        hint = (f"EMUCAL_MIRROR is set to {mirror}: check that its server is running and "
                "reachable." if mirror else
                "No network? Set EMUCAL_MIRROR=http://HOST:PORT to a workshop mirror (made with "
                "'emucal mirror DIR' and served with 'python -m http.server PORT --directory DIR').")
        return _fail(f"{err}\n{hint}", EXIT_FAILED)
    except (ValueError, OSError) as err:  # hash mismatch, disk full, permissions
        return _fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted; files already fetched stay in the cache.", 130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
