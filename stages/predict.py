"""Predict the genre of audio files: python -m stages.predict FILE... [--model NAME] [--top K].

Each file is decoded exactly as the model's training clips were (genreclf.data.audio.decode_clip
at the model's sample rate) and goes through the model's own feature or spectrogram path
(models/<name>/preprocessing.json). Prints the top K genres of each file with their
probabilities. A file that cannot be read gets an error line and the others are still
predicted; the exit status is 1 if any file failed.

The default model is the one of best test accuracy in metrics/summary.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from genreclf.artifacts import MODELS_DIR, PREPROCESSING_FILE, SUMMARY_JSON, read_summary
from genreclf.errors import DataError, GenreError
from stages.common import model_folders, run_stage, stage_logger

DEFAULT_TOP = 3

log = stage_logger("predict")


def trained_models(models_dir: Path = MODELS_DIR) -> list[str]:
    """Names of the model folders that hold a preprocessing.json, sorted."""
    return model_folders(models_dir, PREPROCESSING_FILE)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def best_model(summary_file: Path = SUMMARY_JSON, models_dir: Path = MODELS_DIR) -> str:
    """The model of best test accuracy in the summary (the first listed on a tie)."""
    available = trained_models(models_dir)
    listing = ", ".join(available) if available else "none (train one: dvc repro)"
    if not summary_file.is_file():
        raise DataError(
            f"{summary_file} is missing, so there is no best model to default to; "
            f"pass --model NAME (models in {models_dir}/: {listing})"
        )
    try:
        models = read_summary(summary_file)["models"]
    except DataError as e:
        raise DataError(f"{e}; or pass --model NAME (models in {models_dir}/: {listing})", path=e.path) from None
    best = max(models, key=lambda name: models[name]["accuracy"])
    if best not in available:
        raise DataError(
            f"{summary_file} names {best} as the best model, but {models_dir}/{best} holds no "
            f"trained model; run dvc pull or dvc repro, or pass --model NAME "
            f"(models in {models_dir}/: {listing})"
        )
    return best


def top_genres(probs: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    """The k most probable genres, most probable first (label order on a tie)."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [(labels[i], float(probs[i])) for i in order]


def format_prediction(path: str, ranked: list[tuple[str, float]]) -> str:
    width = max(len(genre) for genre, _ in ranked)
    lines = [path] + [f"  {rank}. {genre:<{width}}  {prob:.3f}" for rank, (genre, prob) in enumerate(ranked, 1)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", help="audio files (wav, au, mp3, flac, ogg)")
    trained = trained_models()
    parser.add_argument(
        "--model",
        metavar="NAME",
        choices=trained,
        help=f"a trained model (a folder under {MODELS_DIR}/ holding a {PREPROCESSING_FILE}): "
        f"{', '.join(trained) or 'none yet'}; default: the best in {SUMMARY_JSON}",
    )
    parser.add_argument(
        "--top", type=positive_int, default=DEFAULT_TOP, help=f"genres to print per file ({DEFAULT_TOP})"
    )
    args = parser.parse_args()
    # decoding and the models load scikit-learn and librosa (seconds): only once the arguments are good
    from genreclf.data.audio import decode_clip
    from genreclf.models.predictors import load_predictor

    name = args.model or best_model()
    predictor = load_predictor(MODELS_DIR / name)
    log.info(
        "model %s (%s%s), %d genres, audio decoded at %d Hz",
        name,
        predictor.family,
        "" if args.model else ", best accuracy in " + str(SUMMARY_JSON),
        len(predictor.labels),
        predictor.sample_rate,
    )

    failed = []
    for path in args.files:
        try:
            clip = decode_clip(path, predictor.sample_rate)  # its errors name the file
            probs = predictor.predict_audio(clip)
        except GenreError as e:
            message = str(e)
            log.error("error: %s", message if message.startswith(f"{path}:") else f"{path}: {message}")
            failed.append(path)
            continue
        print(format_prediction(path, top_genres(probs, predictor.labels, args.top)), flush=True)
    if failed:
        sys.stdout.flush()
        raise DataError(f"{len(failed)} of {len(args.files)} files could not be predicted: {', '.join(failed)}")


if __name__ == "__main__":
    run_stage("predict", main)
