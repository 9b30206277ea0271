"""eegtune.storage: the same behaviour for a local folder and an S3 bucket (moto's server)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eegtune import storage


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A root under which each test writes; below the bucket, so prefix handling is exercised."""
    if request.param == "local":
        return str(tmp_path / "root")
    return f"{request.getfixturevalue('s3_bucket')}/root"


# --- reading and writing ----------------------------------------------------------------


def test_round_trip_nested_keys_and_overwrite(location: str) -> None:
    target = storage.join(location, "a", "b", "c.bin")
    payload = bytes(range(256)) * 3
    storage.write_bytes(target, payload)
    assert storage.read_bytes(target) == payload
    assert storage.exists(target)
    assert storage.size(target) == len(payload)

    # A shorter overwrite must not leave the old tail behind.
    storage.write_bytes(target, b"short")
    assert storage.read_bytes(target) == b"short"
    assert storage.size(target) == 5

    text_target = storage.join(location, "notes.txt")
    storage.write_text(text_target, "µV ≈ 3\nzweite Zeile")
    assert storage.read_text(text_target) == "µV ≈ 3\nzweite Zeile"
    assert storage.read_bytes(text_target) == "µV ≈ 3\nzweite Zeile".encode()


def test_exists_and_size(location: str) -> None:
    target = storage.join(location, "sub", "x.bin")
    assert not storage.exists(target)
    with pytest.raises(FileNotFoundError):
        storage.size(target)
    storage.write_bytes(target, b"12345")
    assert storage.exists(target)
    # A folder (or a prefix on S3) holding files counts as existing in both kinds.
    assert storage.exists(storage.join(location, "sub"))
    assert storage.size(target) == 5
    assert not storage.exists(storage.join(location, "sub", "y.bin"))


def test_remove_and_remove_of_missing_is_a_no_op(location: str) -> None:
    target = storage.join(location, "gone.bin")
    keep = storage.join(location, "kept.bin")
    storage.write_bytes(target, b"x")
    storage.write_bytes(keep, b"y")
    storage.remove(target)
    assert not storage.exists(target)
    storage.remove(target)
    storage.remove(storage.join(location, "never", "there.bin"))
    assert storage.read_bytes(keep) == b"y"


def test_read_of_missing_file_names_it(location: str) -> None:
    target = storage.join(location, "missing", "file.bin")
    for read in (storage.read_bytes, storage.read_text):
        with pytest.raises(FileNotFoundError) as info:
            read(target)
        assert target in str(info.value)


def test_open_input_reads_in_chunks(location: str) -> None:
    target = storage.join(location, "big.bin")
    payload = os.urandom(100_000)
    storage.write_bytes(target, payload)
    chunks = []
    with storage.open_input(target) as fh:
        while chunk := fh.read(8192):
            chunks.append(chunk)
    assert b"".join(chunks) == payload
    assert len(chunks) > 1
    with pytest.raises(FileNotFoundError):
        storage.open_input(storage.join(location, "nope.bin"))


@pytest.mark.parametrize(
    "name", ["a b.txt", "run#1.txt", "x%41.txt"], ids=["space", "hash", "percent"]
)
def test_names_with_uri_characters_round_trip(location: str, name: str) -> None:
    # upload_tree copies whatever names a local tree has; each must land under its own name.
    target = storage.join(location, name)
    storage.write_bytes(target, b"v")
    assert storage.read_bytes(target) == b"v"
    assert storage.list_files(location) == [name]


# --- atomicity ----------------------------------------------------------------------------


def _not_bytes() -> object:
    """Data whose write raises: the failure comes from inside the write, not before it."""
    return (chunk for chunk in [b"partial"])


class _HalfThenFail:
    """An output stream that sends half of what it is given, then loses the connection."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __enter__(self):
        self.stream.__enter__()
        return self

    def __exit__(self, *exc):
        return self.stream.__exit__(*exc)

    def write(self, data) -> None:
        self.stream.write(bytes(data[: len(data) // 2]))
        raise OSError("connection reset mid-write")


def _fail_midway(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next writes under ``location`` fail after half their bytes are out: on S3
    through the filesystem's output stream, locally through the temporary file's write."""
    if storage.is_remote(location):
        real = storage._fs

        class Filesystem:
            def __init__(self, fs) -> None:
                self.fs = fs

            def __getattr__(self, name: str):
                return getattr(self.fs, name)

            def open_output_stream(self, path: str):
                return _HalfThenFail(self.fs.open_output_stream(path))

        monkeypatch.setattr(storage, "_fs", lambda text: (Filesystem(real(text)[0]), real(text)[1]))
    else:

        def half_then_fail(self: Path, data: bytes) -> int:
            with open(self, "wb") as fh:
                fh.write(bytes(data[: len(data) // 2]))
            raise OSError("disk full mid-write")

        monkeypatch.setattr(Path, "write_bytes", half_then_fail)


NEW = b"new content " * 10_000


def test_a_write_that_fails_midway_keeps_the_previous_content(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = storage.join(location, "state.json")
    storage.write_bytes(target, b"old content")
    with monkeypatch.context() as patch:
        _fail_midway(location, patch)
        with pytest.raises(OSError, match="mid-write"):
            storage.write_bytes(target, NEW)
    assert storage.read_bytes(target) == b"old content"
    assert storage.list_files(location) == ["state.json"]  # no partial temporary left


def test_a_new_file_whose_write_fails_midway_never_appears(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = storage.join(location, "new.bin")
    with monkeypatch.context() as patch:
        _fail_midway(location, patch)
        with pytest.raises(OSError, match="mid-write"):
            storage.write_bytes(target, NEW)
    assert not storage.exists(target) and storage.list_files(location) == []
    storage.write_bytes(target, NEW)  # and the next write goes through whole
    assert storage.read_bytes(target) == NEW


def test_failed_write_keeps_previous_content(location: str) -> None:
    target = storage.join(location, "state.json")
    storage.write_bytes(target, b"old content")
    with pytest.raises(TypeError):
        storage.write_bytes(target, _not_bytes())  # type: ignore[arg-type]
    assert storage.read_bytes(target) == b"old content"


def test_local_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "out" / "model.pt"
    storage.write_bytes(target, b"first")
    storage.write_bytes(target, b"second")
    storage.write_bytes(tmp_path / "out" / "other.bin", b"x")
    assert sorted(os.listdir(tmp_path / "out")) == ["model.pt", "other.bin"]
    assert target.read_bytes() == b"second"


def _fail_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(storage.os, "replace", refuse)


def test_local_failed_rename_keeps_previous_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    storage.write_bytes(target, b"old content")
    _fail_rename(monkeypatch)
    with pytest.raises(OSError, match="disk went away"):
        storage.write_bytes(target, b"new content that never lands")
    assert target.read_bytes() == b"old content"


@pytest.mark.parametrize("failure", ["bad data", "rename fails"])
def test_local_failed_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    target = tmp_path / "state.json"
    storage.write_bytes(target, b"old content")
    if failure == "rename fails":
        _fail_rename(monkeypatch)
        data: object = b"new"
    else:
        data = _not_bytes()
    with pytest.raises((OSError, TypeError)):
        storage.write_bytes(target, data)  # type: ignore[arg-type]
    assert storage.list_files(tmp_path) == ["state.json"]


# --- trees --------------------------------------------------------------------------------

TREE = {
    "b.txt": b"b",
    "a.txt": b"aa",
    "a/z.txt": b"zzz",
    "a/b/c.txt": b"cccc",
    "ab/x.txt": b"xxxxx",
}


def _write_tree(location: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        storage.write_bytes(storage.join(location, *rel.split("/")), data)


def test_list_files_is_recursive_relative_and_sorted(location: str) -> None:
    _write_tree(location, TREE)
    assert storage.list_files(location) == sorted(TREE)
    # "ab/" shares a prefix with "a" but is not under it.
    assert storage.list_files(storage.join(location, "a")) == ["b/c.txt", "z.txt"]
    assert storage.list_files(storage.join(location, "missing")) == []
    assert storage.list_files(storage.join(location, "a", "z")) == []


def test_list_files_of_a_root_never_written_is_empty(location: str) -> None:
    assert storage.list_files(location) == []


def test_download_tree_filters_and_skips_same_size_files(location: str, tmp_path: Path) -> None:
    _write_tree(location, TREE)
    local = tmp_path / "mirror"
    keep: Callable[[str], bool] = lambda rel: rel.startswith("a/")  # noqa: E731
    assert storage.download_tree(location, local, keep=keep) == ["a/b/c.txt", "a/z.txt"]
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == [
        "a/b/c.txt",
        "a/z.txt",
    ]
    assert (local / "a" / "b" / "c.txt").read_bytes() == b"cccc"

    assert storage.download_tree(location, local, keep=keep) == []
    # Same size is taken as "already there": outputs are written once, never edited.
    storage.write_bytes(storage.join(location, "a", "z.txt"), b"ZZZ")
    assert storage.download_tree(location, local, keep=keep) == []
    assert (local / "a" / "z.txt").read_bytes() == b"zzz"
    storage.write_bytes(storage.join(location, "a", "z.txt"), b"longer")
    assert storage.download_tree(location, local, keep=keep) == ["a/z.txt"]
    assert (local / "a" / "z.txt").read_bytes() == b"longer"

    assert storage.download_tree(location, local) == ["a.txt", "ab/x.txt", "b.txt"]


def test_upload_tree_mirrors_a_local_tree(location: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel, data in TREE.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    assert sorted(storage.upload_tree(src, location)) == sorted(TREE)
    assert storage.list_files(location) == sorted(TREE)
    for rel, data in TREE.items():
        assert storage.read_bytes(storage.join(location, rel)) == data


# --- Parquet ------------------------------------------------------------------------------


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": ["NDARAA", "NDARAB", "NDARAC", "NDARAD", "NDARAE"],
            "rt": [0.41, 0.52, float("nan"), 0.77, 1.25],
            "trial": [1, 2, 3, 4, 5],
        }
    )


def test_read_parquet_round_trip(location: str) -> None:
    target = storage.join(location, "oof", "fold0.parquet")
    frame = _frame()
    storage.write_bytes(target, storage.parquet_bytes(frame))
    pd.testing.assert_frame_equal(storage.read_parquet(target), frame)
    pd.testing.assert_frame_equal(
        storage.read_parquet(target, columns=["trial", "rt"]), frame[["trial", "rt"]]
    )


def test_parquet_bytes_drops_the_index() -> None:
    frame = _frame().set_index("subject")
    back = pd.read_parquet(io.BytesIO(storage.parquet_bytes(frame)))
    assert list(back.columns) == ["rt", "trial"]
    assert isinstance(back.index, pd.RangeIndex)


def test_pyarrow_reads_uri_strings_directly(location: str) -> None:
    # fold_stream hands these path strings straight to pyarrow, relying on the environment
    # alone (AWS_ENDPOINT_URL, credentials) to reach the store.
    table = pa.table({"x": list(range(10)), "y": [float(i) / 2 for i in range(10)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=3)
    target = storage.join(location, "windows", "part-0.parquet")
    storage.write_bytes(target, buffer.getvalue())

    assert pq.read_table(target).equals(table)
    assert pq.read_table(target, columns=["y"]).equals(table.select(["y"]))
    assert pq.read_schema(target) == table.schema
    reader = pq.ParquetFile(target)
    assert reader.metadata.num_row_groups == 4
    batches = list(reader.iter_batches(batch_size=4, columns=["x"]))
    assert pa.Table.from_batches(batches).column("x").to_pylist() == list(range(10))


# --- locations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("file:///a/b", "/a/b"),
        ("file:///a%20b/c", "/a b/c"),
        ("file:///", "/"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("s3://bucket/", "s3://bucket"),
        ("gs://bucket/p//", "gs://bucket/p"),
        ("relative/dir/", "relative/dir/"),
        (Path("/x/y"), "/x/y"),
    ],
)
def test_normalize(given: str | Path, expected: str) -> None:
    assert storage.normalize(given) == expected


@pytest.mark.parametrize("uri", ["ftp://x", "http://host/path", "hdfs://nn/data"])
def test_normalize_refuses_unsupported_schemes(uri: str) -> None:
    scheme = uri.split("://")[0]
    with pytest.raises(ValueError, match=f"{uri}.*'{scheme}'"):
        storage.normalize(uri)


def test_is_remote() -> None:
    assert storage.is_remote("s3://bucket/x")
    assert storage.is_remote("gs://bucket")
    assert not storage.is_remote("file:///a/b")
    assert not storage.is_remote("/a/b")
    assert not storage.is_remote(Path("relative"))


def test_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage.absolute("store") == str(tmp_path.resolve() / "store")
    assert storage.absolute(f"file://{tmp_path}/store") == str(tmp_path.resolve() / "store")
    assert storage.absolute("s3://bucket/store/") == "s3://bucket/store"


@pytest.mark.parametrize(
    "parts",
    [
        ("a", "b.txt"),
        ("a/", "/b/", "c.txt"),
        ("a", "", "b.txt"),
        ("/", "b.txt"),
    ],
    ids=["plain", "slashed", "empty-part", "slash-part"],
)
@pytest.mark.parametrize("base", ["s3://bucket", "s3://bucket/", "s3://bucket/pre/"])
def test_join_on_s3_never_doubles_slashes(base: str, parts: tuple[str, ...]) -> None:
    joined = storage.join(base, *parts)
    key = joined.split("://", 1)[1]
    assert "//" not in key
    assert joined.startswith(storage.normalize(base) + "/")
    assert joined.endswith("/b.txt") or joined.endswith("/c.txt")


@pytest.mark.parametrize("parts", [("a",), ("a", "b.txt"), ("x", "y", "z.bin")])
def test_join_locally_is_os_path_join(tmp_path: Path, parts: tuple[str, ...]) -> None:
    assert storage.join(str(tmp_path), *parts) == os.path.join(str(tmp_path), *parts)
    assert storage.join(f"file://{tmp_path}", *parts) == os.path.join(str(tmp_path), *parts)


def test_name_of() -> None:
    assert storage.name_of("s3://bucket/runs/c1/fold0.parquet") == "fold0.parquet"
    assert storage.name_of("s3://bucket/runs/c1/") == "c1"
    assert storage.name_of("/data/store/manifest.json") == "manifest.json"
    assert storage.name_of("file:///data/store/") == "store"


def test_local_mirror_lives_under_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    one = storage.local_mirror("s3://bucket-one/runs/c1/")
    two = storage.local_mirror("s3://bucket-two/runs/c1")
    assert one.is_relative_to(tmp_path / "cache")
    assert two.is_relative_to(tmp_path / "cache")
    assert one != two
    assert one.parts[-2:] == ("runs", "c1")
    assert storage.local_mirror("gs://bucket-one/runs/c1") != one
    # The trailing slash must not make a second mirror of the same experiment.
    assert storage.local_mirror("s3://bucket-one/runs/c1") == one


def test_local_mirror_defaults_to_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(storage.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    mirror = storage.local_mirror("s3://bucket/x")
    assert mirror.is_relative_to(tmp_path / ".cache" / "eegtune")


def test_set_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first so monkeypatch restores the real value however set_endpoint changes it.
    monkeypatch.setenv(storage.ENDPOINT_ENV, "http://before:1")
    storage.set_endpoint(None)
    assert os.environ[storage.ENDPOINT_ENV] == "http://before:1"
    storage.set_endpoint("")
    assert os.environ[storage.ENDPOINT_ENV] == "http://before:1"
    monkeypatch.delenv(storage.ENDPOINT_ENV)
    storage.set_endpoint(None)
    assert storage.ENDPOINT_ENV not in os.environ
    storage.set_endpoint("http://127.0.0.1:9000")
    assert os.environ[storage.ENDPOINT_ENV] == "http://127.0.0.1:9000"
