"""Per-clip work that survives a killed run: a scratch folder of finished results, outside the outputs.

A per-clip stage (convert, features, embed; shard per shard) killed part-way (SIGKILL, a
preempted VM) loses nothing it finished: DVC deletes a stage's outputs before running it, but
not this folder, so the next run computes only the clips that were not finished and writes the
same bytes as an uninterrupted run.

Design:

- The scratch of a run is ``.genreclf-scratch/<stage>/<key>/`` in the workspace (git and DVC
  ignore ``.genreclf-scratch/``). ``key`` (``scratch_key``) is a SHA-256 of the stage's name, its
  params (as JSON), its inputs (the bytes of its manifest, and each input file's path, size and
  mtime: a stat per clip, cheap at 8000 clips) and its code (every ``.py`` of ``genreclf/`` and the
  stage's script): a change of any of them gives another key, so stale work is never reused.
  Opening a scratch deletes the other keys of the stage (work that can no longer be reused).
- One file per finished clip, named ``<index>.<sha256 of its bytes>.bin`` (``index``: the clip's
  position in the stage's input order, which the key fixes). A result is written under a
  temporary name and renamed when complete, and read back only if its bytes still hash to its
  name: a half-written or damaged file is never trusted, it is deleted and the clip recomputed.
- A ``Codec`` turns a clip's result into bytes and back: ``ARRAYS`` stores a NumPy array as
  ``.npy`` bytes (exact: float64 stays float64). A codec's ``load`` may check more and raise to
  have the clip recomputed.
- Work that writes a file (convert: a clip's WAV; shard: a shard's TFRecord file, the unit of
  work there) writes it into ``Scratch.files`` and runs as ``WritesFile``, which records the
  file's size, modification time and inode with the result, once the file is closed
  (``file_codec``: reused only if a stat of the file still gives them, so a file is never read
  again to be trusted); the stage links the files into its output folder once every item is done.
- ``resumed`` loads every trusted result first, computes only the other items and stores each
  of their results as it arrives, in input order; ``Scratch.reused`` and ``Scratch.computed``
  count them for the stage's log. The engine's per-clip map does this when given a scratch
  (``genreclf.engine.map_in_order(..., scratch=...)``); embed, which runs in its own process,
  calls it directly. The stage removes the scratch once its outputs are written.
- The log (``log``) names each stale key deleted when a scratch is opened, and counts the stored
  results not trusted, with the first one's reason.

The Beam engine gets the same skipping (only the unfinished items are sent to the pipeline), but
its results reach the driver only when the whole pipeline has finished, so a Beam run killed
part-way keeps nothing: resuming a killed run is the local engine's. With a gs:// data root,
convert and shard use no scratch (their objects are named by their content or inputs, and
an object already there is not uploaded again).

Pure: knows nothing of DVC or of the stages; the paths are the caller's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreclf.io import file_error

SCRATCH_ROOT = Path(".genreclf-scratch")
KEY_CHARS = 24
DIGEST_CHARS = 32
RESULT_SUFFIX = ".bin"
TMP_PREFIX = ".tmp-"
MISSING = object()  # what ``Scratch.load`` gives for a clip without a trusted result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Codec:
    """How one clip's result is stored: ``dump(result) -> bytes``, ``load(bytes) -> result`` (an
    exception in ``load``: the result is not trusted)."""

    dump: Callable[[object], bytes]
    load: Callable[[bytes], object]


def dump_array(value) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(value), allow_pickle=False)
    return buffer.getvalue()


def load_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


ARRAYS = Codec(dump_array, load_array)


def file_record(path: str | Path) -> list:
    """[path, size, modification time (ns), inode] of a file that a clip's work wrote: a stat, not a
    read, so that neither storing nor reusing a result reads its file again. A file recorded once
    it was completely written and closed, in a folder that only the stage writes, is the same
    bytes while these are unchanged; a file cut short, rewritten or replaced is not."""
    stat = os.stat(path)
    return [os.fspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino]


@dataclass(frozen=True)
class WritesFile:
    """``fn(*args)``, which writes the file named by its argument ``args[at]`` (or nothing), as a
    worker's function: returns (fn's result, ``file_record`` of that file, or None if not written).
    ``at``: 1 for convert's ``(source, destination)``, 0 for a shard's ``(path, clips, rate)``."""

    fn: Callable
    at: int = 1

    def __call__(self, *args, **kwargs):
        result = self.fn(*args, **kwargs)
        written = args[self.at]
        return result, (file_record(written) if os.path.exists(written) else None)


def file_codec(to_json: Callable[[object], object], from_json: Callable[[object], object]) -> Codec:
    """The codec of ``WritesFile``'s results: the result as JSON (``to_json``, ``from_json``) with its
    file's record; loading checks that the file still has that record (``file_record``)."""

    def dump(value) -> bytes:
        result, record = value
        return json.dumps([to_json(result), record]).encode()

    def load(data: bytes):
        result, record = json.loads(data)
        if record is not None and file_record(record[0]) != record:
            raise ValueError(f"{record[0]} changed since its result was stored")
        return from_json(result), record

    return Codec(dump, load)


def file_identity(path: str) -> list:
    """What identifies an input file cheaply: its path, size and mtime (ns); a URL or a missing
    file by its path alone (a URL's content is fixed by the manifest that lists it)."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return [path]
    return [path, stat.st_size, stat.st_mtime_ns]


def code_files(stage_script: str | Path) -> list[Path]:
    """The code whose change must give another key: the stage's script and every .py of genreclf/."""
    package = Path(__file__).resolve().parent
    return [Path(stage_script).resolve(), *sorted(package.rglob("*.py"))]


def scratch_key(
    stage: str, params: dict, manifests: Iterable[bytes], files: Iterable[str], code: Iterable[str | Path] = ()
) -> str:
    """The key of a stage's scratch: a SHA-256 (hex, KEY_CHARS long) of its name, ``params`` (JSON,
    keys sorted), the bytes of its ``manifests``, the identity of each input file (``file_identity``)
    and the bytes of its ``code`` files."""
    digest = hashlib.sha256()

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    part(stage.encode())
    part(json.dumps(params, sort_keys=True, default=str).encode())
    for data in manifests:
        part(data)
    part(json.dumps([file_identity(os.fspath(f)) for f in files]).encode())
    for path in code:
        part(Path(path).read_bytes())
    return digest.hexdigest()[:KEY_CHARS]


def has_results(root: str | Path, stage: str, key: str) -> bool:
    """Whether the scratch ``root/stage/key`` holds a stored result (looked at, not made). A stage
    may skip a check of its params that the run which stored them passed: the key covers them."""
    folder = Path(root) / stage / key
    return folder.is_dir() and any(
        name.endswith(RESULT_SUFFIX) and not name.startswith(TMP_PREFIX) for name in os.listdir(folder)
    )


class Scratch:
    """The finished clips of one stage run: ``folder`` (``root/stage/key``) holds one file per clip.

    ``files``: a sub-folder for what a clip's work writes besides its result (convert's WAVs).
    """

    def __init__(self, folder: str | Path, codec: Codec = ARRAYS):
        self.folder = Path(folder)
        self.files = self.folder / "files"
        self.codec = codec
        self.reused = 0
        self.computed = 0
        self.untrusted: list[str] = []  # "<file>: <reason>" of each stored result not trusted
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files.mkdir(exist_ok=True)
        self._names: dict[int, str] = {}
        for entry in os.scandir(self.folder):
            if entry.name.startswith(TMP_PREFIX):  # a write that a killed run left half-done
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            index, _, rest = entry.name.partition(".")
            if entry.is_file() and index.isdigit() and rest.endswith(RESULT_SUFFIX):
                self._names[int(index)] = entry.name

    @classmethod
    def open(cls, root: str | Path, stage: str, key: str, codec: Codec = ARRAYS) -> Scratch:
        """The scratch ``root/stage/key``, made if new; the stage's other keys are deleted."""
        stage_folder = Path(root) / stage
        if stage_folder.is_dir():
            for other in stage_folder.iterdir():
                if other.name != key:
                    stale = sum(name.endswith(RESULT_SUFFIX) for name in os.listdir(other)) if other.is_dir() else 0
                    shutil.rmtree(other, ignore_errors=True)
                    log.info(
                        "resume: deleted %s, %d results of a %s run with other params, inputs or code",
                        other,
                        stale,
                        stage,
                    )
        return cls(stage_folder / key, codec)

    def __len__(self) -> int:
        return len(self._names)

    def counts(self) -> tuple[int, int]:
        """(clips reused, clips computed) by the last map over this scratch."""
        return self.reused, self.computed

    def load(self, index: int):
        """The result stored for clip ``index``, or MISSING (none, or one not trusted: deleted)."""
        name = self._names.get(index)
        if name is None:
            return MISSING
        path = self.folder / name
        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest()[:DIGEST_CHARS] != name.split(".")[1]:
                raise ValueError("its bytes do not match its name")
            return self.codec.load(data)
        except Exception as e:  # damaged, half-written or its files gone: the clip is computed again
            self.untrusted.append(f"{path}: {e}")
            with contextlib.suppress(OSError):
                path.unlink()
            del self._names[index]
            return MISSING

    def store(self, index: int, result) -> None:
        """Store clip ``index``'s result: written under a temporary name, then renamed."""
        data = self.codec.dump(result)
        name = f"{index}.{hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]}{RESULT_SUFFIX}"
        tmp = self.folder / f"{TMP_PREFIX}{index}.{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.folder / name)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise file_error(e, self.folder / name) from None
        old = self._names.get(index)
        if old is not None and old != name:
            with contextlib.suppress(OSError):
                (self.folder / old).unlink()
        self._names[index] = name

    def remove(self) -> None:
        """Delete the scratch (the stage is complete), and its stage's and the root's folders if empty."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for parent in (self.folder.parent, self.folder.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()


def resumed(scratch: Scratch, count: int, compute: Callable[[list[int]], Iterator]) -> Iterator:
    """The results of items 0 .. count-1 in order: those ``scratch`` holds loaded from it, the
    others from ``compute(pending)`` (their results in the order of ``pending``, the indices of the
    items it lacks), each stored as it arrives. Sets ``scratch.reused`` and ``scratch.computed``."""
    done = {i: result for i in range(count) if (result := scratch.load(i)) is not MISSING}
    pending = [i for i in range(count) if i not in done]
    scratch.reused, scratch.computed = len(done), 0
    if scratch.untrusted:
        log.warning(
            "resume: %d stored results not trusted, computed again (first: %s)",
            len(scratch.untrusted),
            scratch.untrusted[0],
        )
    results = iter(compute(pending)) if pending else iter(())
    try:
        for i in range(count):
            if i in done:
                yield done.pop(i)
            else:
                result = next(results)
                scratch.store(i, result)
                scratch.computed += 1
                yield result
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # stops the workers at once if the caller stops early
