"""Record the ORIGINAL musicnn graph's outputs on two real clips: the fixture tests/data/musicnn_parity.npz.

genreclf.models.musicnn re-implements MSD_musicnn in Keras 3. This script runs the original
TF1 graph (the package musicnn==0.1.0, in a scratch venv: it cannot run in the project's) on
the very log-mel input of the re-implementation's front end, and records that input with the
outputs, so that tests/test_musicnn.py can check on any CPU that our front end computes that
input and that our network, run on it, gives the original's outputs.

It runs in two steps, in two environments:

    # 1. the input, in the project's venv: log-mel patches of the two clips (genreclf's front end)
    . .venv/bin/activate
    python tests/support/musicnn_parity.py input --out /tmp/musicnn-parity-input.npz

    # 2. the original graph, in a scratch venv (TF 2.21 with the legacy Keras 2 for tf.compat.v1.layers)
    python3 -m venv /tmp/musicnn-orig
    /tmp/musicnn-orig/bin/pip install tensorflow==2.21.0 tf-keras==2.21.0
    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn-wheel
    /tmp/musicnn-orig/bin/pip install --no-deps /tmp/musicnn-wheel/musicnn-0.1.0-py3-none-any.whl
    TF_USE_LEGACY_KERAS=1 /tmp/musicnn-orig/bin/python tests/support/musicnn_parity.py original \\
        --input /tmp/musicnn-parity-input.npz --out tests/data/musicnn_parity.npz

The fixture holds the clips' names (``clips``), the input patches of all clips in CLIPS order
(``patches`` [20, 187, 96] float32, ``patch_counts`` [2]: 10 per clip) and the original's
outputs averaged over each clip's patches: ``taggram`` [2, 50], ``penultimate`` [2, 200],
``max_pool`` [2, 753] (float32). Step 2 imports only numpy, TensorFlow and the musicnn package:
the original's ``models.define_model`` builds the graph and its checkpoint is restored as the
package's own extractor does.

The front end's float32 bytes depend on the CPU's vector code (numpy's log10, OpenBLAS's
matrix product in the mel filter bank). The patches in the fixture are those step 1 printed
the SHA-256 of when the original graph was run; on an AVX-512 machine step 1 gives exactly
those bytes with ``OPENBLAS_CORETYPE=Haswell NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GTZAN_MINI = ROOT.parent / "shared" / "data" / "gtzan_mini"
CLIPS = ("blues/blues.00000.wav", "metal/metal.00002.wav")
OUTPUTS = ("taggram", "penultimate", "max_pool")


def input_patches(clip: Path) -> np.ndarray:
    """The log-mel patches [n, 187, 96] of a clip, as the embed stage computes them."""
    sys.path.insert(0, str(ROOT))
    from genreclf.data.audio import decode_clip
    from genreclf.features.fma_features import int16_to_float
    from genreclf.models import musicnn

    samples = int16_to_float(decode_clip(clip, musicnn.SAMPLE_RATE))
    return musicnn.patches(musicnn.log_mel(samples))


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def write_input(out: Path, gtzan_dir: Path) -> None:
    arrays = {f"clip{i}": input_patches(gtzan_dir / clip) for i, clip in enumerate(CLIPS)}
    np.savez(out, clips=np.array(CLIPS), **arrays)
    for i, clip in enumerate(CLIPS):
        print(f"{clip}: {arrays[f'clip{i}'].shape[0]} patches, sha256 {digest(arrays[f'clip{i}'])}")


def run_original(input_file: Path, out: Path) -> None:
    """The original graph (musicnn.models.define_model, 'MSD_musicnn') on the recorded input."""
    import musicnn
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    data = np.load(input_file)
    clips = [str(c) for c in data["clips"]]
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, _, _, _, _, _, _, max_pool, penultimate = models.define_model(x, is_training, "MSD_musicnn", 50)
        taggram = tf.nn.sigmoid(y)
    with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(session, str(Path(musicnn.__file__).parent / "MSD_musicnn") + "/")
        results = {name: [] for name in OUTPUTS}
        for i, clip in enumerate(clips):
            batch = data[f"clip{i}"]
            outputs = session.run([taggram, penultimate, max_pool], feed_dict={x: batch, is_training: False})
            for name, value in zip(OUTPUTS, outputs):
                results[name].append(np.asarray(value, dtype=np.float64).mean(axis=0))
            print(f"{clip}: {len(batch)} patches; taggram mean {results['taggram'][-1].mean():.6f}")
    np.savez_compressed(
        out,
        clips=np.array(clips),
        patches=np.concatenate([data[f"clip{i}"] for i in range(len(clips))]).astype(np.float32),
        patch_counts=np.array([len(data[f"clip{i}"]) for i in range(len(clips))]),
        **{name: np.array(values, dtype=np.float32) for name, values in results.items()},
    )
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    step1 = steps.add_parser("input", help="the log-mel patches of the clips (project venv)")
    step1.add_argument("--out", type=Path, required=True)
    step1.add_argument("--gtzan-dir", type=Path, default=GTZAN_MINI)
    step2 = steps.add_parser("original", help="the original graph's outputs (scratch venv with musicnn)")
    step2.add_argument("--input", type=Path, required=True)
    step2.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "input":
        write_input(args.out, args.gtzan_dir)
    else:
        run_original(args.input, args.out)


if __name__ == "__main__":
    main()
