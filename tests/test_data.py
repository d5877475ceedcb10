"""emucal.data: registry, cache, mirror, hash checks and error messages."""

from __future__ import annotations

import hashlib
import socket
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pooch
import pytest

from emucal import data

NAME = "camels_attributes_v2.0/camels_topo.txt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def pooch_waits(monkeypatch):
    """The seconds pooch waits before each retry, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(pooch.core, "time", SimpleNamespace(sleep=waits.append))
    return waits


def test_registry_file_lists_every_mirrored_name_with_its_hash():
    from conftest import SHARED_MIRROR

    reg = data.registry()
    urls = data.registry_urls()
    assert data.FULL_ZIP in reg
    assert all(len(h) == 64 for h in reg.values())
    assert all(u.startswith("https://") for u in urls.values())
    assert "55b9349fad19ec31a57c5333557986947c4324f3" in urls[
        "camels_sample/usgs_streamflow/01/01013500_streamflow_qc.txt"]
    manifest = SHARED_MIRROR / "MANIFEST.tsv"
    if manifest.is_file():
        rows = [line.split("\t") for line in manifest.read_text().splitlines()[1:] if line]
        assert {r[0]: r[2] for r in rows} == reg
        assert {r[0]: r[4] for r in rows} == urls


def test_fetch_downloads_once_through_mirror_and_checks_hash(synthetic):
    path = data.fetch(NAME)
    assert path.is_file() and path.is_relative_to(synthetic.cache)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == synthetic.hashes[NAME]
    assert synthetic.server.requests_seen == [f"/{NAME}"]
    # second call: served from the cache, no new request
    assert data.fetch(NAME) == path
    assert synthetic.server.requests_seen == [f"/{NAME}"]


def test_another_process_making_the_folder_meanwhile_is_no_error(synthetic, monkeypatch):
    """Two processes fetching into a new cache at once: the other makes the folder first."""
    makedirs = pooch.core.os.makedirs

    def other_process_first(path, *args, **kwargs):
        Path(path).mkdir(parents=True, exist_ok=True)  # the other process, between check and make
        return makedirs(path, *args, **kwargs)

    monkeypatch.setattr(pooch.core.os, "makedirs", other_process_first)
    path = data.fetch(NAME)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == synthetic.hashes[NAME]


def test_a_cache_folder_that_cannot_be_made_names_the_variable(synthetic, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(PermissionError, match="point EMUCAL_DATA_DIR at a folder you can write to"):
        data.fetch(NAME)


def test_fetch_works_offline_once_cached(synthetic, monkeypatch):
    path = data.fetch(NAME)
    monkeypatch.setenv("EMUCAL_MIRROR", f"http://127.0.0.1:{_free_port()}")  # nothing listens
    assert data.fetch(NAME) == path


def test_a_cache_that_is_a_file_or_a_folder_in_a_files_place_is_named(synthetic, monkeypatch,
                                                                       tmp_path):
    cache = tmp_path / "cache.txt"
    cache.write_text("not a folder")
    monkeypatch.setenv("EMUCAL_DATA_DIR", str(cache))
    with pytest.raises(NotADirectoryError, match="is a file, not a folder: point EMUCAL_DATA_DIR"):
        data.fetch(NAME)
    monkeypatch.setenv("EMUCAL_DATA_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache" / NAME).mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match="is a folder where the cache keeps the file"):
        data.fetch(NAME)


def test_unknown_name_says_how_to_list_valid_ones(synthetic):
    with pytest.raises(KeyError, match=r"registry\(\)") as err:
        data.fetch("camels_topo.txt")
    assert "camels_attributes_v2.0/camels_topo.txt" in str(err.value)  # the suggestion


def test_hash_mismatch_redownloads_once_then_names_both_hashes(synthetic, pooch_waits):
    served = synthetic.mirror / NAME
    served.write_text(served.read_text() + "\n# tampered")
    found = hashlib.sha256(served.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as err:
        data.fetch(NAME)
    message = str(err.value)
    assert NAME in message and synthetic.hashes[NAME] in message and found in message
    assert f"{synthetic.url}/{NAME}" in message and "rebuild it with 'emucal mirror'" in message
    assert synthetic.server.requests_seen == [f"/{NAME}"] * (1 + data.RETRIES) == [f"/{NAME}"] * 2
    assert pooch_waits == [1]  # pooch's retry_if_failed: one wait, one more download
    # nothing that a later call could take as cached
    assert not any(p.is_file() for p in synthetic.cache.rglob("camels_topo*"))


def test_without_a_mirror_each_name_comes_from_its_own_url(synthetic, monkeypatch):
    urls = {name: f"{synthetic.url}/{name}" for name in synthetic.hashes}
    monkeypatch.setattr(data, "_read_registry", lambda: (synthetic.hashes, urls))
    monkeypatch.delenv("EMUCAL_MIRROR")
    assert data.fetch(NAME).read_bytes() == (synthetic.mirror / NAME).read_bytes()
    other = "camels_attributes_v2.0/camels_clim.txt"
    urls[other] = f"{synthetic.url}/{NAME}"  # a name whose upstream now serves another file
    with pytest.raises(ValueError, match="upstream file has changed"):
        data.fetch(other)
    assert synthetic.server.requests_seen == [f"/{NAME}"] * 3


def test_corrupted_cache_is_downloaded_again(synthetic):
    path = data.fetch(NAME)
    path.write_text("half a file")
    assert data.fetch(NAME) == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == synthetic.hashes[NAME]
    assert len(synthetic.server.requests_seen) == 2


def test_no_network_and_no_cache_names_url_and_mirror(synthetic, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("EMUCAL_MIRROR", url)
    with pytest.raises(ConnectionError) as err:
        data.fetch(NAME)
    assert f"{url}/{NAME}" in str(err.value)
    assert "EMUCAL_MIRROR" in str(err.value)
    assert not any(p.is_file() for p in synthetic.cache.rglob("*"))


def test_upstream_url_is_used_without_mirror(synthetic, monkeypatch):
    monkeypatch.delenv("EMUCAL_MIRROR")
    with pytest.raises(ConnectionError, match=r"https://upstream\.invalid/camels_attributes"):
        data.fetch(NAME)


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMUCAL_DATA_DIR", str(tmp_path / "here"))
    assert data.cache_dir() == tmp_path / "here"
    monkeypatch.setenv("EMUCAL_DATA_DIR", "")
    assert data.cache_dir() == Path(pooch.os_cache("emucal")).resolve()
    monkeypatch.setenv("EMUCAL_MIRROR", "http://127.0.0.1:8000/")
    assert data.mirror_url() == "http://127.0.0.1:8000"
    monkeypatch.setenv("EMUCAL_MIRROR", "")
    assert data.mirror_url() is None


def test_extract_members_takes_only_what_is_asked(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("root/x/01/one.txt", "1")
        zf.writestr("root/x/02/two.txt", "2")
        zf.writestr("root/y/01/one.txt", "other")
    out = data.extract_members(archive, ["*x/*/one.txt"], tmp_path / "out")
    assert out["*x/*/one.txt"].read_text() == "1"
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.txt")) == ["one.txt"]
    with pytest.raises(KeyError, match="three.txt"):
        data.extract_members(archive, ["*/three.txt"], tmp_path / "out")


def test_extract_members_refuses_paths_that_leave_the_folder(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
        zf.writestr("/abs/inside.txt", "y")
        zf.writestr("ok/file.txt", "z")
    for pattern in ("*outside.txt", "*inside.txt"):
        with pytest.raises(ValueError, match="outside"):
            data.extract_members(archive, [pattern], tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
    assert data.extract_members(archive, ["ok/*"], tmp_path / "out")["ok/*"].read_text() == "z"


def test_extract_members_replaces_a_truncated_copy_and_leaves_no_temporaries(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("root/one.txt", "complete content")
    target = tmp_path / "out" / "root" / "one.txt"
    target.parent.mkdir(parents=True)
    target.write_text("compl")  # what a process killed mid-write could leave
    out = data.extract_members(archive, ["*one.txt"], tmp_path / "out")
    assert out["*one.txt"].read_text() == "complete content"
    assert [p.name for p in target.parent.iterdir()] == ["one.txt"]


def test_extract_members_names_the_archive_and_member_with_a_bad_crc(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("root/one.txt", "the member's original content")
    raw = archive.read_bytes()
    archive.write_bytes(raw.replace(b"original", b"ORIGINAL"))  # same size, another CRC
    with pytest.raises(ValueError) as err:
        data.extract_members(archive, ["*one.txt"], tmp_path / "out")
    message = str(err.value)
    assert str(archive) in message and "'root/one.txt'" in message
    assert "download it again" in message
    assert list((tmp_path / "out").rglob("*.*")) == []  # no member, no temporary file


def test_mirror_that_is_not_an_http_url_names_the_variable(synthetic, monkeypatch):
    for mirror in ["127.0.0.1:8000", "localhost:8000", "ftp://host", "http://"]:
        monkeypatch.setenv("EMUCAL_MIRROR", mirror)
        with pytest.raises(ValueError, match=f"EMUCAL_MIRROR='{mirror}' is not a URL"):
            data.fetch(NAME)
    assert synthetic.server.requests_seen == []


def test_offline_with_a_corrupt_cached_copy_says_so(synthetic, monkeypatch):
    path = data.fetch(NAME)
    path.write_text("corrupt")
    monkeypatch.setenv("EMUCAL_MIRROR", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(ConnectionError, match="does not match the registry's hash"):
        data.fetch(NAME)


def test_stale_temporary_downloads_are_cleaned(synthetic):
    import os
    import time

    path = data.fetch(NAME)
    stale, fresh = path.parent / "tmpk1ll3d", path.parent / "tmpl1v3"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y")
    old = time.time() - 2 * data.STALE_SECONDS
    os.utime(stale, (old, old))
    data.fetch(NAME)
    assert not stale.exists() and fresh.exists()  # a live download is left alone


def test_extract_members_redoes_a_copy_edited_since(tmp_path):
    # issue 30: an extracted file edited in place (same size) was returned as it was
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/usgs/01013500_streamflow_qc.txt", "01013500 1980 01 01 655.00 A\n")
    pattern = "*/01013500_streamflow_qc.txt"
    path = data.extract_members(archive, [pattern], tmp_path / "out")[pattern]
    path.write_text("01013500 1980 01 01 955.00 A\n")  # same size, another flow
    again = data.extract_members(archive, pattern, tmp_path / "out")[pattern]  # one pattern
    assert again.read_text() == "01013500 1980 01 01 655.00 A\n"
    with pytest.raises(ValueError, match="is not a zip archive"):
        data.extract_members(path, [pattern], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="No zip archive at"):
        data.extract_members(tmp_path, [pattern], tmp_path / "out")
    with pytest.raises(ValueError, match="is a file"):
        data.extract_members(archive, [pattern], path)
