"""genreclf.engine and genreclf.beam: the engine setting, and the beam engine giving the local engine's results.

The equality tests run each per-clip function of convert, shard and features on a few real
and synthetic clips on both engines, the beam one on Beam's FnApiRunner in this process
(nothing is downloaded). tests/e2e/test_beam_engine.py runs the data stages on it through DVC.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import threadpoolctl

import genreclf
from genreclf.data import audio
from genreclf.data.sharding import Clip, write_shard
from genreclf.engine import (
    BEAM,
    ENGINE_VARIABLE,
    LOCAL,
    OPTIONS_VARIABLE,
    THREAD_ENV_VARS,
    Engine,
    engine_from_environ,
    limit_threads,
    map_in_order,
)
from genreclf.errors import DataError, ParamError
from genreclf.features import fma_features as features
from tests.support.helpers import ROOT, directory_bytes, subprocess_env, tone, write_audio

beam = pytest.importorskip("genreclf.beam", reason="the beam engine needs `pip install -r requirements-beam.txt`")

# The in-process FnApiRunner: one worker, in this process (the stages' default runs one process per core).
IN_PROCESS = Engine(BEAM, ("--runner=FnApiRunner",))
LOCAL_ENGINE = Engine()
FMA_MP3 = "fma/fma_audio/000/000182.mp3"
GTZAN_CLIPS = ("blues/blues.00000.wav", "jazz/jazz.00001.wav")


def beam_environ(options: str | None = None) -> dict[str, str]:
    environ = {ENGINE_VARIABLE: BEAM}
    if options is not None:
        environ[OPTIONS_VARIABLE] = options
    return environ


# ---- choosing the engine


@pytest.mark.parametrize("value", [None, "", "local", " Local "])
def test_the_default_engine_is_local(value):
    environ = {} if value is None else {ENGINE_VARIABLE: value}
    assert engine_from_environ(environ) == Engine(LOCAL, ())


def test_beam_without_options_runs_in_process_with_a_worker_per_core():
    engine = engine_from_environ(beam_environ())
    assert engine.name == BEAM
    assert engine.beam_options == (
        "--runner=FnApiRunner",
        "--direct_running_mode=multi_processing",
        f"--direct_num_workers={os.cpu_count()}",
    )


@pytest.mark.parametrize(
    "options, expected",
    [
        ("--direct_num_workers=2", ("--runner=FnApiRunner", "--direct_running_mode=multi_processing")),
        ("--runner=FnApiRunner", ()),
        (
            "--runner=DataflowRunner --project=p --region=europe-west1 --temp_location=gs://b/tmp",
            (),
        ),
    ],
)
def test_beam_options_are_kept_and_completed_only_without_a_runner(options, expected):
    assert engine_from_environ(beam_environ(options)).beam_options == (*expected, *options.split())


@pytest.mark.parametrize(
    "environ, message",
    [
        ({ENGINE_VARIABLE: "spark"}, r"'spark': expected one of local, beam; unset it"),
        (beam_environ("--runer=FnApiRunner"), r"options that Beam does not know: \['--runer=FnApiRunner'\]"),
        (beam_environ("--direct_num_workers=two"), r"--direct_num_workers: invalid int value: 'two'"),
        (beam_environ("--direct_running_mode=fast"), r"--direct_running_mode: invalid choice: 'fast'"),
        (beam_environ("'--runner=FnApiRunner"), r"cannot split it into options \(No closing quotation\)"),
        (beam_environ("--runner=Nosuch"), r"--runner=Nosuch is not a runner Beam knows; expected one of"),
        (
            beam_environ("--runner=DataflowRunner --project=p"),
            r"runs elsewhere, so the results need a --temp_location .*gs://BUCKET/tmp",
        ),
    ],
)
def test_a_bad_setting_is_a_clear_error(environ, message):
    variable = OPTIONS_VARIABLE if OPTIONS_VARIABLE in environ else ENGINE_VARIABLE
    with pytest.raises(ParamError, match=rf"^{variable}=.*{message}"):
        engine_from_environ(environ)


def test_beam_without_the_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "genreclf.beam", None)  # importing genreclf.beam raises ImportError
    monkeypatch.delattr(genreclf, "beam", raising=False)
    with pytest.raises(ParamError, match=r"GENRECLF_ENGINE='beam' needs Apache Beam.*pip install -r requirements-beam"):
        engine_from_environ(beam_environ())


@pytest.mark.slow
def test_the_local_engine_does_not_import_beam():
    code = (
        "import sys, stages.convert, stages.shard, stages.features; from genreclf.engine import engine_from_environ; "
        "engine_from_environ({}); print(sorted(m for m in sys.modules if m.startswith('apache_beam')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_documented_dataflow_options_pass_the_checks():
    page = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    match = re.search(r'export GENRECLF_BEAM_OPTIONS="([^"]+)"', page)
    assert match, 'docs/scaling.md: no export GENRECLF_BEAM_OPTIONS="..." line'
    options = match.group(1).replace("\\\n", " ")
    engine = engine_from_environ(beam_environ(options))
    assert engine.beam_options[0] == "--runner=DataflowRunner"
    assert "--temp_location=gs://BUCKET/tmp" in engine.beam_options


# ---- the same results on both engines


def on_beam(fn, items, setup=None) -> list:
    """map_in_order on the beam engine, in this process; the BLAS threads and their variables restored after."""
    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    try:
        with threadpoolctl.threadpool_limits(limits=None):
            return list(map_in_order(fn, items, IN_PROCESS, setup=setup))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def on_local(fn, items) -> list:
    return list(map_in_order(fn, items, LOCAL_ENGINE))


def test_map_in_order_keeps_the_order_of_the_items():
    items = [(i, 10 - i) for i in range(10)]
    assert on_beam(divmod, items) == on_local(divmod, items) == [divmod(a, b) for a, b in items]


def test_two_local_workers_are_two_processes_besides_the_driver():
    engine = engine_from_environ(beam_environ("--direct_num_workers=2"))
    pids = list(map_in_order(os.getpid, [()] * 8, engine))
    assert len(set(pids)) == 2
    assert os.getpid() not in pids


def test_convert_clip_gives_the_same_results_and_wavs(tmp_path, shared_data):
    sources = [
        shared_data / FMA_MP3,  # 44.1 kHz stereo mp3: decoded, mixed down, resampled
        shared_data / "gtzan_mini" / GTZAN_CLIPS[0],
        write_audio(tmp_path / "short.wav", tone(1.0, 22050), 22050),  # too short
        tmp_path / "missing.mp3",  # decode error
    ]
    convert = partial(audio.convert_clip, sample_rate=22050, min_seconds=10.0)
    out = {engine: tmp_path / engine for engine in ("local", "beam")}
    local = on_local(convert, [(s, out["local"] / f"{i}.wav") for i, s in enumerate(sources)])
    beamed = on_beam(convert, [(s, out["beam"] / f"{i}.wav") for i, s in enumerate(sources)], setup=limit_threads)
    assert [r.kind for r in local] == ["ok", "ok", audio.TOO_SHORT, audio.DECODE_ERROR]
    assert beamed == local
    assert sorted(p.name for p in out["local"].iterdir()) == ["0.wav", "1.wav"]
    assert directory_bytes(out["beam"]) == directory_bytes(out["local"])


def test_write_shard_gives_the_same_shards(tmp_path):
    rng = np.random.default_rng(0)
    clips = [
        Clip(
            str(write_audio(tmp_path / f"{i}.wav", rng.integers(-32768, 32768, 100 + 37 * i, dtype=np.int16), 8000)),
            i % 3,
            f"t{i}",
        )
        for i in range(5)
    ]
    out = {engine: tmp_path / engine for engine in ("local", "beam")}
    for folder in out.values():
        folder.mkdir()
    local = on_local(
        write_shard, [(out["local"] / "a.tfrecord", clips[3:], 8000), (out["local"] / "b.tfrecord", clips[:3], 8000)]
    )
    beamed = on_beam(
        write_shard,
        [(out["beam"] / "a.tfrecord", clips[3:], 8000), (out["beam"] / "b.tfrecord", clips[:3], 8000)],
        setup=limit_threads,
    )
    assert local == [[211, 248], [100, 137, 174]]
    assert beamed == local
    assert sorted(directory_bytes(out["local"])) == ["a.tfrecord", "b.tfrecord"]
    assert directory_bytes(out["beam"]) == directory_bytes(out["local"])


def test_wav_features_are_the_same_and_errors_come_first_in_input_order(tmp_path, gtzan_mini):
    params = features.FeatureParams()
    fn = partial(features.wav_features, sample_rate=22050, params=params)
    paths = [(str(gtzan_mini / clip),) for clip in GTZAN_CLIPS]
    paths.append((str(write_audio(tmp_path / "tone.wav", tone(3.0, 22050), 22050)),))
    local = on_local(fn, paths)
    beamed = on_beam(fn, paths, setup=partial(features.init_worker, 22050, params))
    assert len(beamed) == len(local) == 3
    assert not np.array_equal(local[0], local[1])
    for a, b in zip(local, beamed):
        assert a.dtype == b.dtype == np.float64
        assert np.array_equal(a, b)

    bad = [(str(write_audio(tmp_path / f"{rate}.wav", tone(3.0, rate), rate)),) for rate in (8000, 16000)]
    items = [paths[2], *bad]
    with pytest.raises(DataError) as local_error:
        on_local(fn, items)
    with pytest.raises(DataError) as beam_error:
        on_beam(fn, items)
    assert str(local_error.value).endswith("8000.wav: sample rate 8000 Hz, expected 22050 Hz like the other clips")
    assert str(beam_error.value) == str(local_error.value)
    assert beam_error.value.path == local_error.value.path == bad[0][0]


@pytest.mark.slow
def test_a_remote_runners_results_come_back_through_gcs(tmp_path, monkeypatch):
    """A runner that runs elsewhere (Dataflow) returns its results through a folder under
    --temp_location: written there by Beam's own GCS IO (WriteToText), read back by the driver
    (FileSystems) and deleted. Here on the GCS emulator, which Beam's GCS client reaches through
    STORAGE_EMULATOR_HOST, with the pipeline itself run in this process."""
    from tests.support.gcs_emulator import emulated_bucket
    from tests.support.google_credentials import loopback_credentials

    read_from = []

    def recorded_read(prefix):
        read_from.append(prefix)
        return original_read(prefix)

    original_read = beam._read_results
    monkeypatch.setattr(beam, "is_local", lambda options: False)  # the results folder of a remote runner
    monkeypatch.setattr(beam, "_read_results", recorded_read)
    items = [(i, 10 - i) for i in range(10)]
    # Credentials that Beam finds at once (without them it tries for about 25 s, then connects anonymously)
    with loopback_credentials(tmp_path) as tokens, emulated_bucket(tmp_path, "beam-temp") as emulator:
        results = beam.map_in_order(divmod, items, ["--runner=FnApiRunner", "--temp_location=gs://beam-temp/tmp"])
        left = emulator.object_names()
    assert tokens.refreshes >= 1  # Beam's GCS client authenticated with them
    assert results == [divmod(a, b) for a, b in items]
    assert len(read_from) == 1 and read_from[0].startswith("gs://beam-temp/tmp/genreclf-beam-")
    assert left == []  # the results folder was deleted
