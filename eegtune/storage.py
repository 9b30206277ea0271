"""Where eegtune's files live: a local path, or an object-storage URI.

``--store`` and ``--storage-path`` take either. A local path (or ``file://``) is read and
written with the operating system, each write under a temporary name renamed into place.
A URI (``s3://bucket/prefix``, ``gs://…``) goes through pyarrow's filesystem layer, the
one Ray Data and Ray Train use for the same URIs; an object appears only once its upload
completes, so a write is just as atomic there. S3-compatible stores (MinIO, Ceph, a
loopback test server) are reached through the standard ``AWS_ENDPOINT_URL`` variable,
which ``--s3-endpoint`` sets.

Locations are plain strings: ``pathlib`` would fold ``s3://b`` into ``s3:/b``.
"""

from __future__ import annotations

import contextlib
import io
import os
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.fs as pafs

from eegtune.errors import ConfigError, MissingFileError

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
CACHE_ENV = "EEGTUNE_CACHE"  # where URIs are mirrored locally (default ~/.cache/eegtune)


def is_remote(location: str | Path) -> bool:
    """True for an object-storage URI; False for a local path or a ``file://`` URI."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def normalize(location: str | Path) -> str:
    """``file:///a/b`` → ``/a/b``; a URI without its trailing slash; a path unchanged."""
    text = str(location)
    if text.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(text).path) or "/"
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme not in ("s3", "gs", "gcs"):
            raise ConfigError(f"{text}: unsupported storage scheme {scheme!r} (s3, gs, file)")
        return text.rstrip("/")
    return text


def absolute(location: str | Path) -> str:
    """``normalize``, with a local path made absolute (what a cluster's workers need)."""
    text = normalize(location)
    return text if is_remote(text) else str(Path(text).resolve())


def join(base: str | Path, *parts: str) -> str:
    text = normalize(base)
    if not is_remote(text):
        return str(Path(text, *parts))
    return "/".join([text, *(p.strip("/") for p in parts if p.strip("/"))])


def name_of(location: str | Path) -> str:
    return normalize(location).rstrip("/").rsplit("/", 1)[-1]


def set_endpoint(url: str | None) -> None:
    """``--s3-endpoint``: an S3-compatible server, for this process and the Ray workers it
    starts (see ``eegtune.distributed.runtime``)."""
    if url:
        os.environ[ENDPOINT_ENV] = url


def _fs(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of ``scheme://bucket`` and the object's path, ``bucket/key``: only
    the bucket goes through URI parsing, so a key may hold '#', '%' or spaces."""
    scheme, rest = location.split("://", 1)
    bucket = rest.split("/", 1)[0]
    try:
        fs, root = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")
    except (OSError, ValueError) as exc:
        raise OSError(f"{location}: cannot open its filesystem: {exc}") from exc
    return fs, root + rest[len(bucket) :]


def exists(location: str | Path) -> bool:
    text = normalize(location)
    if not is_remote(text):
        return Path(text).exists()
    fs, path = _fs(text)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def size(location: str | Path) -> int:
    text = normalize(location)
    if not is_remote(text):
        return Path(text).stat().st_size
    fs, path = _fs(text)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise MissingFileError(f"{text}: no such object")
    return int(info.size)


def read_bytes(location: str | Path) -> bytes:
    text = normalize(location)
    if not is_remote(text):
        return Path(text).read_bytes()
    fs, path = _fs(text)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise MissingFileError(f"{text}: no such object")
    with fs.open_input_stream(path) as fh:
        return fh.read()


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode("utf-8")


def open_input(location: str | Path):
    """A binary file object to read in chunks (a checksum of a large file)."""
    text = normalize(location)
    if not is_remote(text):
        return open(text, "rb")
    fs, path = _fs(text)
    return fs.open_input_stream(path)


@contextlib.contextmanager
def replacing(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside local ``path`` to write; renamed onto ``path`` only if the
    block ends without an error, so a reader sees the old file or the whole new one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if fsync:  # the bytes reach the disk before the name does
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(location: str | Path, data: bytes) -> None:
    """Write all of ``data`` or nothing: a reader never sees part of it."""
    text = normalize(location)
    # Bad data fails here, before an upload starts: closing an S3 stream publishes it.
    data = memoryview(data)
    if is_remote(text):
        fs, path = _fs(text)
        # Uploaded under a temporary key, then moved (a server-side copy) onto the name: a
        # stream that fails part-way still publishes what it had sent when it is closed.
        head, _, name = path.rpartition("/")
        tmp = f"{head}/.{name}.tmp{os.getpid()}"
        try:
            with fs.open_output_stream(tmp) as fh:
                fh.write(data)
            fs.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                if fs.get_file_info(tmp).type == pafs.FileType.File:
                    fs.delete_file(tmp)
            raise
        return
    with replacing(text) as tmp:
        tmp.write_bytes(data)


def write_text(location: str | Path, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def makedirs(location: str | Path) -> None:
    """A local folder; nothing for object storage, which has none."""
    text = normalize(location)
    if not is_remote(text):
        Path(text).mkdir(parents=True, exist_ok=True)


def read_parquet(location: str | Path, columns: list[str] | None = None):
    """A Parquet file as a pandas frame, from a path or a URI."""
    import pandas as pd
    import pyarrow.parquet as pq

    text = normalize(location)
    if not is_remote(text):
        return pd.read_parquet(text, columns=columns)
    return pq.read_table(text, columns=columns).to_pandas()


def parquet_bytes(frame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def list_files(location: str | Path) -> list[str]:
    """Every file under ``location``, as paths relative to it ('/'-separated, sorted)."""
    return sorted(_file_sizes(location))


def _file_sizes(location: str | Path) -> dict[str, int]:
    """Relative path → size of every file under ``location``, from one listing."""
    text = normalize(location)
    if not is_remote(text):
        root = Path(text)
        if not root.exists():
            return {}
        files = (p for p in root.rglob("*") if p.is_file())
        return {p.relative_to(root).as_posix(): p.stat().st_size for p in files}
    fs, path = _fs(text)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    infos = fs.get_file_info(selector)
    return {
        i.path[len(path) :].lstrip("/"): int(i.size) for i in infos if i.type == pafs.FileType.File
    }


def download_tree(
    location: str, local: Path, keep: Callable[[str], bool] = lambda _: True
) -> list[str]:
    """Copy the files under ``location`` that ``keep`` accepts into ``local``; files the
    same size as their local copy are skipped (outputs are written once)."""
    copied = []
    # Sizes from the listing itself: no request per file to decide what to skip.
    for rel, remote_size in sorted(_file_sizes(location).items()):
        target = local / rel
        if not keep(rel) or (target.exists() and target.stat().st_size == remote_size):
            continue
        write_bytes(target, read_bytes(join(location, rel)))
        copied.append(rel)
    return copied


def upload_tree(local: Path, location: str, last: str | None = None) -> list[str]:
    """Copy every file under ``local`` to ``location``, keeping relative paths; files
    named ``last`` go after all others (a description that says the rest is there)."""
    copied = []
    files = sorted(p for p in Path(local).rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.name == last):
        rel = path.relative_to(local).as_posix()
        write_bytes(join(location, rel), path.read_bytes())
        copied.append(rel)
    return copied


def local_mirror(location: str) -> Path:
    """This machine's folder for a URI's files (the Optuna journal, downloaded outputs)."""
    parsed = urllib.parse.urlparse(normalize(location))
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "eegtune")
    return root / "mirror" / parsed.scheme / parsed.netloc / parsed.path.strip("/")


def remove(location: str | Path) -> None:
    """Delete a file if it is there."""
    text = normalize(location)
    if not is_remote(text):
        Path(text).unlink(missing_ok=True)
        return
    fs, path = _fs(text)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)
