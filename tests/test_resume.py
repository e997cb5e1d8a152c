"""A killed per-clip stage resumes where it stopped (genreclf.resume and the stages that use it).

The scratch module itself (atomic results, a damaged file not trusted, the key), the engine's
map over a scratch, and convert and features (20 gtzan_mini clips) run as subprocesses that
SIGKILL themselves and their workers once they have stored half the clips, run again, checked to
have reused exactly that work and to write the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genreclf import resume
from genreclf.artifacts import CLIP_COLUMNS, write_clips, write_split
from genreclf.data import conversion
from genreclf.engine import Engine, map_in_order
from tests.support.helpers import (
    ROOT,
    directory_bytes,
    make_project,
    run_command,
    run_stage,
    set_params,
    subprocess_env,
)

CLIPS = 20
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
SPLITS = ["train", "val", "test"]
KILL_TIMEOUT_S = 300
RESUMED = re.compile(
    r"resume: reused (\d+) (?:clips|shards) \(finished by a run that stopped\), (?:computed|decoded) (\d+)"
)


# ---- the scratch


def test_a_result_comes_back_exactly(tmp_path):
    scratch = resume.Scratch(tmp_path / "s")
    row = np.array([np.pi, 1e-300, -0.0, np.nan, 1 / 3], dtype=np.float64)
    scratch.store(3, row)
    again = resume.Scratch(tmp_path / "s")  # another run
    assert len(again) == 1 and again.load(0) is resume.MISSING
    loaded = again.load(3)
    assert loaded.dtype == np.float64 and loaded.tobytes() == row.tobytes()


def test_a_half_written_or_damaged_result_is_not_trusted(tmp_path):
    scratch = resume.Scratch(tmp_path / "s")
    scratch.store(0, np.arange(100.0))
    scratch.store(1, np.arange(100.0))
    scratch.store(2, np.arange(100.0))
    (zero,) = (tmp_path / "s").glob("0.*.bin")
    zero.write_bytes(zero.read_bytes()[:50])  # cut short
    (one,) = (tmp_path / "s").glob("1.*.bin")
    data = bytearray(one.read_bytes())
    data[-1] ^= 1
    one.write_bytes(bytes(data))  # one bit off
    (tmp_path / "s" / f"{resume.TMP_PREFIX}5.123").write_bytes(b"a write that was killed")
    again = resume.Scratch(tmp_path / "s")
    assert again.load(0) is resume.MISSING and again.load(1) is resume.MISSING
    assert again.load(5) is resume.MISSING
    assert np.array_equal(again.load(2), np.arange(100.0))
    assert [reason.split(": ", 1)[1] for reason in again.untrusted] == ["its bytes do not match its name"] * 2
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "s").glob("*.bin")) == ["2"]
    assert not list((tmp_path / "s").glob(f"{resume.TMP_PREFIX}*"))


def test_a_result_whose_file_changed_is_not_trusted(tmp_path):
    scratch = resume.Scratch(tmp_path / "s", resume.file_codec(lambda r: r, lambda r: r))
    wav = scratch.files / "a.wav"
    wav.write_bytes(b"RIFF....")
    scratch.store(0, ({"ok": True}, resume.file_record(wav)))
    assert resume.Scratch(tmp_path / "s", scratch.codec).load(0)[0] == {"ok": True}
    wav.write_bytes(b"RIFF..")  # cut short by a crash
    again = resume.Scratch(tmp_path / "s", scratch.codec)
    assert again.load(0) is resume.MISSING
    assert again.untrusted[0].endswith(f"{wav} changed since its result was stored")


def test_the_key_follows_params_manifest_files_and_code(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"1234")
    code = tmp_path / "stage.py"
    code.write_text("x = 1\n")
    key = resume.scratch_key("features", {"n_fft": 2048}, [b"manifest"], [str(wav)], [code])
    assert key == resume.scratch_key("features", {"n_fft": 2048}, [b"manifest"], [str(wav)], [code])
    assert key != resume.scratch_key("embed", {"n_fft": 2048}, [b"manifest"], [str(wav)], [code])
    assert key != resume.scratch_key("features", {"n_fft": 1024}, [b"manifest"], [str(wav)], [code])
    assert key != resume.scratch_key("features", {"n_fft": 2048}, [b"manifesto"], [str(wav)], [code])
    wav.write_bytes(b"12345")
    changed = resume.scratch_key("features", {"n_fft": 2048}, [b"manifest"], [str(wav)], [code])
    assert changed != key
    code.write_text("x = 2\n")
    assert resume.scratch_key("features", {"n_fft": 2048}, [b"manifest"], [str(wav)], [code]) != changed


def test_opening_a_key_deletes_the_others_and_remove_cleans_up(tmp_path, caplog):
    old = resume.Scratch.open(tmp_path / "root", "features", "old")
    old.store(0, np.zeros(3))
    with caplog.at_level("INFO", logger=resume.__name__):
        new = resume.Scratch.open(tmp_path / "root", "features", "new")
    assert not old.folder.exists() and len(new) == 0
    assert f"deleted {old.folder}, 1 results of a features run with other params" in caplog.text
    new.remove()
    assert not (tmp_path / "root").exists()


def test_has_results_looks_without_making_the_scratch(tmp_path):
    assert not resume.has_results(tmp_path / "root", "features", "k")
    assert not (tmp_path / "root").exists()
    scratch = resume.Scratch.open(tmp_path / "root", "features", "k")
    (scratch.folder / f"{resume.TMP_PREFIX}0.1").write_bytes(b"a write that was killed")
    assert not resume.has_results(tmp_path / "root", "features", "k")
    scratch.store(0, np.zeros(3))
    assert resume.has_results(tmp_path / "root", "features", "k")
    assert not resume.has_results(tmp_path / "root", "features", "other")


def square(x):
    calls.append(x)
    return np.array([float(x) ** 2])


calls: list = []


def test_the_map_computes_only_what_the_scratch_lacks(tmp_path):
    scratch = resume.Scratch(tmp_path / "s")
    calls.clear()
    stopped = map_in_order(square, [(i,) for i in range(10)], Engine(), scratch=scratch)
    assert [float(next(stopped)[0]) for _ in range(4)] == [0.0, 1.0, 4.0, 9.0]
    stopped.close()  # the run stops after 4 clips
    calls.clear()
    again = resume.Scratch(tmp_path / "s")
    results = list(map_in_order(square, [(i,) for i in range(10)], Engine(), scratch=again))
    assert [float(r[0]) for r in results] == [float(i * i) for i in range(10)]
    assert calls == list(range(4, 10)) and again.counts() == (4, 6)


GO_WAIT_S = 20


def wait_for_go(index: int, go: str, started: float) -> bool:
    """A stand-in for a clip's conversion: the first chunk's clips at once, the others once ``go``
    exists (the caller has received a result); whether it did within GO_WAIT_S of ``started``."""
    while index >= conversion.CHUNK_SIZE and not os.path.exists(go):
        if time.time() > started + GO_WAIT_S:
            return False
        time.sleep(0.01)
    return True


def test_convert_hands_on_each_result_before_the_rest_are_done(tmp_path):
    """Convert's local engine yields each clip's result as it is done, so that it is stored at once:
    the clips after the first chunk wait until the first result has arrived here."""
    go = tmp_path / "go"
    clips = [(i, str(go), time.time()) for i in range(4 * conversion.CHUNK_SIZE)]
    results = conversion.convert_here(wait_for_go, clips)
    first = next(results)
    go.touch()
    assert [first, *results] == [True] * 4 * conversion.CHUNK_SIZE


# ---- the stages, killed and run again


def gtzan_sources(gtzan_mini: Path, clips: int) -> list[Path]:
    """``clips`` real clips, as many of each genre."""
    per_genre = clips // len(GENRES)
    return [source for genre in GENRES for source in sorted((gtzan_mini / genre).glob("*.wav"))[:per_genre]]


def convert_project(root: Path, gtzan_mini: Path) -> Path:
    """A project with data/raw/clips.csv listing CLIPS gtzan_mini clips, resampled to 16 kHz."""
    make_project(root, {"convert": {"sample_rate": 16000}})
    rows = []
    for source in gtzan_sources(gtzan_mini, CLIPS):
        genre = source.parent.name
        dest = root / "data" / "raw" / "audio" / genre / source.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, dest)
        rows.append((source.stem, genre, f"data/raw/audio/{genre}/{source.name}", ""))
    write_clips(root / "data" / "raw" / "clips.csv", pd.DataFrame(rows, columns=CLIP_COLUMNS))
    return root


def features_project(root: Path, gtzan_mini: Path, params: dict | None = None) -> Path:
    """A project with data/wav and data/split for CLIPS gtzan_mini clips."""
    make_project(root, params)
    (root / "data" / "wav").mkdir(parents=True)
    rows = []
    for i, source in enumerate(gtzan_sources(gtzan_mini, CLIPS)):
        samples, sr = sf.read(source, dtype="int16")
        path = f"data/wav/{source.stem}.wav"
        sf.write(root / path, samples, sr, subtype="PCM_16")
        genre, split = source.parent.name, SPLITS[i % len(SPLITS)]
        label = GENRES.index(genre)
        rows.append({"track_id": source.stem, "path": path, "genre": genre, "label": label, "split": split})
    write_split(root / "data" / "split", pd.DataFrame(rows), GENRES)
    return root


def stored(project: Path, stage: str) -> int:
    """The clip results in the stage's scratch."""
    return len(list((project / resume.SCRATCH_ROOT / stage).glob(f"*/*{resume.RESULT_SUFFIX}")))


# the stage in a process that SIGKILLs its process group (itself and its workers, no clean-up, as
# a lost VM) right after it has stored its {at}-th clip: the workers may be writing other clips.
# (A stage of 20 clips takes well under a second: a kill from outside, once a poll sees the
# count, can come after every clip is done on a busy machine.)
KILLED_AFTER_STORES = """
import os, runpy, signal
from genreclf import resume

store, stored = resume.Scratch.store, []

def store_or_die(self, index, result):
    store(self, index, result)
    stored.append(index)
    if len(stored) == {at}:
        os.killpg(0, signal.SIGKILL)

resume.Scratch.store = store_or_die
runpy.run_module("stages.{stage}", run_name="__main__")
"""


def run_and_kill(project: Path, stage: str, at: int) -> int:
    """Run the stage until it SIGKILLs itself and its workers once it has stored ``at`` clips; ``at``."""
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_STORES.format(at=at, stage=stage)],
        cwd=project,
        env=dict(subprocess_env(), PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=KILL_TIMEOUT_S,
        start_new_session=True,  # its own process group, which the kill takes whole
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert stored(project, stage) == at
    return at


def resumed(stderr: str) -> tuple[int, int]:
    match = RESUMED.search(stderr)
    assert match, stderr[-3000:]
    return int(match[1]), int(match[2])


def check_resumes(
    tmp_path: Path, gtzan_mini: Path, stage: str, make, outputs: list[str], clips: int, at: int, kill=run_and_kill
) -> None:
    """Run the stage uninterrupted in one project; in another kill it once ``at`` clips are done
    (``kill``), then run it again as DVC would (outputs deleted): same bytes, only the rest computed."""
    reference = make(tmp_path / "reference", gtzan_mini)
    assert resumed(run_stage(reference, stage).stderr) == (0, clips)
    project = make(tmp_path / "killed", gtzan_mini)
    killed_at = kill(project, stage, at)
    for output in outputs:  # as DVC does before it runs the stage
        path = project / output
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    rerun = run_stage(project, stage).stderr
    assert resumed(rerun) == (killed_at, clips - killed_at), rerun[-3000:]
    for output in outputs:
        a, b = reference / output, project / output
        assert (directory_bytes(a) if a.is_dir() else a.read_bytes()) == (
            directory_bytes(b) if b.is_dir() else b.read_bytes()
        ), output
    assert not (project / resume.SCRATCH_ROOT).exists()


@pytest.mark.slow
def test_convert_killed_resumes_and_writes_the_same_bytes(tmp_path, gtzan_mini):
    outputs = ["data/wav", "data/converted.csv", "data/convert_skipped.csv", "metrics/convert.json"]
    check_resumes(tmp_path, gtzan_mini, "convert", convert_project, outputs, CLIPS, CLIPS // 2)


@pytest.mark.slow
def test_features_killed_resumes_and_writes_the_same_bytes(tmp_path, gtzan_mini):
    check_resumes(tmp_path, gtzan_mini, "features", features_project, ["data/features"], CLIPS, CLIPS // 2)


SHARDS = {"train": 6, "val": 4, "test": 4}


def shard_project(root: Path, gtzan_mini: Path) -> Path:
    return features_project(root, gtzan_mini, {"shard": {"num_shards": SHARDS}})


# shard in a process that SIGKILLs itself (no clean-up) once it has written half of shard number
# {at}: that shard's file is in the scratch, without a result, the shards before it with theirs.
# (The shards of 20 clips are written in some 50 ms: too fast to be killed from outside on time.)
KILLED_IN_A_SHARD = """
import os, signal
import stages.shard as shard
from genreclf.data import sharding
from stages.common import run_stage

write, started = sharding.write_shard, []

def write_or_die(path, clips, sample_rate, progress=None):
    if len(started) == {at}:
        write(path, clips[: max(1, len(clips) // 2)], sample_rate)
        os.kill(os.getpid(), signal.SIGKILL)
    started.append(path)
    return write(path, clips, sample_rate, progress)

sharding.write_shard = write_or_die
run_stage("shard", shard.main)
"""


def kill_in_a_shard(project: Path, stage: str, at: int) -> int:
    """Run shard in ``project`` until it dies in shard number ``at``; the shards stored then."""
    proc = run_command([sys.executable, "-c", KILLED_IN_A_SHARD.format(at=at)], project, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert stored(project, stage) == at
    (scratch,) = (project / resume.SCRATCH_ROOT / stage).iterdir()
    assert len(list((scratch / "files").iterdir())) == at + 1  # the one cut short too
    return at


@pytest.mark.slow
def test_shard_killed_resumes_and_writes_the_same_bytes(tmp_path, gtzan_mini):
    shards = sum(SHARDS.values())
    check_resumes(
        tmp_path, gtzan_mini, "shard", shard_project, ["data/shards"], shards, shards // 2, kill=kill_in_a_shard
    )


@pytest.mark.slow
def test_a_params_change_does_not_reuse(tmp_path, gtzan_mini):
    project = convert_project(tmp_path / "project", gtzan_mini)
    run_and_kill(project, "convert", CLIPS // 2)
    (old_key,) = (project / resume.SCRATCH_ROOT / "convert").iterdir()
    set_params(project, {"convert": {"min_seconds": 5.0}})
    rerun = run_stage(project, "convert").stderr
    assert resumed(rerun) == (0, CLIPS)
    assert f"{CLIPS // 2} results of a convert run with other params, inputs or code" in rerun
    assert not old_key.exists() and not (project / resume.SCRATCH_ROOT).exists()


def embed_project(root: Path, model_saver) -> Path:
    """A project with data/split of EMBED_CLIPS short tones and models/musicnn_msd (``model_saver``)."""
    from genreclf import artifacts
    from tests.support.helpers import to_int16, tone, write_audio

    make_project(root, {"embed": {"embedding": "penultimate", "patches_per_clip": 1}})
    rows = []
    for i in range(EMBED_CLIPS):
        samples = to_int16(tone(3.5, 22050, 150.0 * (i + 1), 0.4))
        path = write_audio(root / "data" / "wav" / f"clip{i}.wav", samples, 22050)
        genre = GENRES[i % 2]
        rows.append({"track_id": f"clip{i}", "path": path.relative_to(root).as_posix(), "genre": genre,
                     "label": i % 2, "split": SPLITS[i % 3]})  # fmt: skip
    artifacts.write_split(root / artifacts.SPLIT_DIR, pd.DataFrame(rows), GENRES[:2])
    artifacts.write_pretrained(
        root / artifacts.PRETRAINED_DIR,
        {"source": "random.whl", "sha256": "0" * 64, "sample_rate": 16000, "outputs": [], "tags": []},
        model_saver,
    )
    return root


EMBED_CLIPS = 6


@pytest.mark.slow
def test_embed_stopped_part_way_resumes_and_writes_the_same_bytes(tmp_path, monkeypatch):
    """In this process (TensorFlow loads once): the stage stopped by an error after 3 clips, then run again."""
    from genreclf import artifacts
    from genreclf.models import musicnn
    from genreclf.models.training import save_model
    from tests.support.helpers import call_stage

    model = musicnn.build_model()
    reference = embed_project(tmp_path / "reference", lambda path: save_model(model, path))
    call_stage(reference, "embed")
    saved = reference / artifacts.PRETRAINED_DIR / artifacts.PRETRAINED_MODEL_FILE
    project = embed_project(tmp_path / "stopped", lambda path: shutil.copy(saved, path))
    embed, calls = musicnn.clip_embedding, []

    def stops_after_3(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("killed")
        return embed(*args, **kwargs)

    monkeypatch.setattr(musicnn, "clip_embedding", stops_after_3)
    with pytest.raises(RuntimeError, match="killed"):
        call_stage(project, "embed")
    assert stored(project, "embed") == 3
    calls.clear()
    monkeypatch.setattr(musicnn, "clip_embedding", lambda *a, **k: (calls.append(1), embed(*a, **k))[1])
    call_stage(project, "embed")
    assert len(calls) == EMBED_CLIPS - 3
    assert directory_bytes(project / artifacts.EMBEDDINGS_DIR) == directory_bytes(reference / artifacts.EMBEDDINGS_DIR)
    assert not (project / resume.SCRATCH_ROOT).exists()
