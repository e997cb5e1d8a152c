"""Which run-time switches of the vector code change this project's numerical results, on this machine.

    python tests/support/vector_paths.py [--only NAME ...] [--markdown]

Each run computes, in a fresh process, the project's numerics-sensitive outputs:

- ``decode``: ``decode_clip`` of a gtzan_mini WAV to 16 kHz and of an FMA mp3 (44.1 kHz stereo)
  to 22050 Hz (libsndfile, soxr's resampler);
- ``fma_features``: ``clip_features`` of a gtzan_mini clip at its own 22050 Hz (librosa, numba,
  numpy's FFT, OpenBLAS);
- ``musicnn_patches``: the musicnn front end's log-mel patches of that clip (decode to 16 kHz,
  mel filter bank product, float16 rounding, log10);
- ``musicnn_outputs``: the pretrained musicnn network (the real wheel, from pretrained.cache_dir)
  on the fixture's recorded patches (TensorFlow, oneDNN);
- ``keras_training``: cnn2d (its spectrogram layer included) built, compiled and fitted for 6
  steps by the project's code on seeded random audio: the weights and the losses;
- ``sklearn_fit``: the logreg and svm pipelines (build_pipeline) fitted on seeded random data,
  one BLAS thread: their probabilities on held-out rows and the logreg coefficients.

It runs them once with no switch (the baseline) and once more (is the baseline repeatable?),
then with each switch alone, and prints for each switch which outputs changed and by how much
(the largest absolute difference; "=" where every byte is the same). The switches of numpy's
dispatch take the names numpy 2.4 dispatches on x86-64 (X86_V3 = AVX2, X86_V4 = AVX-512 SKX,
AVX512_ICL, AVX512_SPR); the older names (AVX512F, AVX512_SKX) are accepted and change nothing.
The numba switch writes its cache in a scratch folder, not beside librosa.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
WAV_CLIP = SHARED / "gtzan_mini" / "blues" / "blues.00000.wav"
MP3_CLIP = SHARED / "fma" / "fma_audio" / "000" / "000182.mp3"
OUTPUTS = ("decode", "fma_features", "musicnn_patches", "musicnn_outputs", "keras_training", "sklearn_fit")

# switch name -> the environment it sets (on top of this process's)
NUMPY_AVX2 = "X86_V4 AVX512_ICL AVX512_SPR"
SWITCHES = {
    "NPY_DISABLE_CPU_FEATURES=X86_V4 AVX512_ICL AVX512_SPR": {"NPY_DISABLE_CPU_FEATURES": NUMPY_AVX2},
    "NPY_DISABLE_CPU_FEATURES=X86_V3 X86_V4 AVX512_ICL AVX512_SPR": {
        "NPY_DISABLE_CPU_FEATURES": f"X86_V3 {NUMPY_AVX2}"
    },
    "NPY_DISABLE_CPU_FEATURES=AVX512F AVX512_SKX (old names)": {"NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512_SKX"},
    "OPENBLAS_CORETYPE=Haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "TF_ENABLE_ONEDNN_OPTS=0": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "SOXR_USE_SIMD=0": {"SOXR_USE_SIMD": "0"},
    "NUMBA_CPU_NAME=generic": {"NUMBA_CPU_NAME": "generic"},
}
# every switch that changed an output on an AVX-512 Xeon: .ci/run's capped step sets them all
CAPPED = {
    "NPY_DISABLE_CPU_FEATURES": f"X86_V3 {NUMPY_AVX2}",
    "OPENBLAS_CORETYPE": "Haswell",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "SOXR_USE_SIMD": "0",
}


# ---- the outputs (in the child process) -----------------------------------------------------


def decode() -> dict[str, np.ndarray]:
    from genreclf.data.audio import decode_clip

    return {"wav_16k": decode_clip(WAV_CLIP, 16000), "mp3_22k": decode_clip(MP3_CLIP, 22050)}


def fma_features() -> dict[str, np.ndarray]:
    from genreclf.data.audio import read_wav
    from genreclf.features import fma_features as features
    from stages.config import load_config

    samples, rate = read_wav(WAV_CLIP)
    params = features.recipe_params(load_config(ROOT / "params.yaml").features.model_dump())
    return {"features": features.clip_features(features.int16_to_float(samples), rate, params)}


def musicnn_patches() -> dict[str, np.ndarray]:
    from tests.support.musicnn_parity import input_patches

    return {"patches": input_patches(WAV_CLIP)}


def musicnn_outputs() -> dict[str, np.ndarray]:
    import yaml

    from genreclf.models import musicnn
    from stages import pretrained

    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["pretrained"]
    wheel = pretrained.obtain_wheel(settings["wheel"], settings["cache_dir"], settings["sha256"])
    patches = np.load(ROOT / "tests" / "data" / "musicnn_parity.npz")["patches"]
    return musicnn.patch_outputs(musicnn.pretrained_model(wheel), patches)


def keras_training() -> dict[str, np.ndarray]:
    from genreclf.models import keras_models, training
    from tests.support.keras_fixture import LABELS, SAMPLE_RATE, TINY_PARAMS

    settings = TINY_PARAMS["cnn2d"]
    preprocessing = training.preprocessing_for("cnn2d", SAMPLE_RATE, LABELS, settings, clip_samples=4400)
    training.set_seeds(0)
    model = training.build_model("cnn2d", settings, len(LABELS), preprocessing)
    keras_models.compile_model(model, 0.01)
    rng = np.random.default_rng(0)
    shape = (48, *model.input.shape[1:])
    x = (rng.standard_normal(shape) * 3000).astype(model.input.dtype)
    y = np.eye(len(LABELS), dtype=np.float32)[rng.integers(0, len(LABELS), len(x))]
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return {
        "weights": np.concatenate([np.ravel(w) for w in model.get_weights()]),
        "loss": np.array(history.history["loss"]),
    }


def sklearn_fit() -> dict[str, np.ndarray]:
    from threadpoolctl import threadpool_limits

    from genreclf.models.sklearn_models import build_pipeline

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 60))
    labels = np.repeat(np.arange(4), 60)
    x = centres[labels] * 0.6 + rng.standard_normal((len(labels), 60))
    train = rng.permutation(len(x))[:180]
    test = np.setdiff1d(np.arange(len(x)), train)
    logreg = build_pipeline("logreg", None, C=1.0, max_iter=2000, seed=0)
    svm = build_pipeline("svm", None, C=10.0, kernel="rbf", gamma="scale", seed=0)
    with threadpool_limits(limits=1, user_api="blas"):
        logreg.fit(x[train], labels[train])
        svm.fit(x[train], labels[train])
        return {
            "logreg_coef": logreg[-1].coef_,
            "logreg_proba": logreg.predict_proba(x[test]),
            "svm_proba": svm.predict_proba(x[test]),
        }


def compute(out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    arrays = {}
    for name in OUTPUTS:
        for key, value in globals()[name]().items():
            arrays[f"{name}/{key}"] = np.asarray(value)
    np.savez(out, **arrays)


# ---- the comparison (in the parent process) -------------------------------------------------


def run_child(environment: dict[str, str], out: Path) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **environment}
    if "NUMBA_CPU_NAME" in environment:  # its machine code goes to a scratch cache, not librosa's
        env["NUMBA_CACHE_DIR"] = str(out.parent / "numba_cache")
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "compute", str(out)], env=env, check=True)
    return time.perf_counter() - start


def largest_difference(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return np.inf
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def differences(baseline: Path, other: Path) -> dict[str, str]:
    """output -> "=" (the same bytes) or the largest absolute difference of its arrays."""
    a, b = np.load(baseline), np.load(other)
    found = {}
    for name in OUTPUTS:
        keys = [k for k in a.files if k.startswith(name + "/")]
        if all(a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in keys):
            found[name] = "="
            continue
        worst = max(largest_difference(a[k], b[k]) for k in keys)
        found[name] = f"{worst:.1e}"
    return found


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "compute":
        compute(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="run only the switches whose names contain one of these")
    args = parser.parse_args()
    switches = {"baseline again": {}, **SWITCHES, "all of .ci/run's (CAPPED)": CAPPED}
    if args.only:
        switches = {k: v for k, v in switches.items() if any(o in k for o in args.only)}
    preset = {k: os.environ[k] for k in {k for env in SWITCHES.values() for k in env} if k in os.environ}
    if preset:
        print(f"warning: already set here: {preset}")
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline.npz"
        seconds = run_child({}, baseline)
        print(f"baseline: {seconds:.0f} s", flush=True)
        rows = []
        for i, (name, environment) in enumerate(switches.items()):
            out = Path(scratch) / f"switch{i}.npz"
            seconds = run_child(environment, out)
            rows.append((name, differences(baseline, out)))
            print(f"{name}: {rows[-1][1]} ({seconds:.0f} s)", flush=True)
    print()
    print("| switch | " + " | ".join(OUTPUTS) + " |")
    print("|---" * (len(OUTPUTS) + 1) + "|")
    for name, found in rows:
        print(f"| {name} | " + " | ".join(found[o] for o in OUTPUTS) + " |")


if __name__ == "__main__":
    main()
