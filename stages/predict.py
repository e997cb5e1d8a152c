"""Predict the genre of audio files: python -m stages.predict FILE... [--model NAME] [--top K].

Each file is decoded exactly as the model's training clips were (genreclf.audio.decode_clip
at the model's sample rate) and goes through the model's own feature or spectrogram path
(models/<name>/preprocessing.json). Prints the top K genres of each file with their
probabilities. A file that cannot be read gets an error line and the others are still
predicted; the exit status is 1 if any file failed.

The default model is the one of best test accuracy in metrics/summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from genreclf.data.audio import decode_clip
from genreclf.errors import DataError, GenreError, ParamError
from genreclf.models.predictors import PREPROCESSING_FILE, load_predictor
from stages.common import run_stage, stage_logger

MODELS_DIR = Path("models")
SUMMARY_FILE = Path("metrics/summary.json")
DEFAULT_TOP = 3

log = stage_logger("predict")


def trained_models(models_dir: Path = MODELS_DIR) -> list[str]:
    """Names of the model folders that hold a preprocessing.json, sorted."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if (p / PREPROCESSING_FILE).is_file())


def best_model(summary_file: Path = SUMMARY_FILE, models_dir: Path = MODELS_DIR) -> str:
    """The model of best test accuracy in the summary (the first listed on a tie)."""
    available = trained_models(models_dir)
    listing = ", ".join(available) if available else "none (train one: dvc repro)"
    if not summary_file.is_file():
        raise DataError(f"{summary_file} is missing, so there is no best model to default to; "
                        f"pass --model NAME (models in {models_dir}/: {listing})")
    try:
        models = json.loads(summary_file.read_text(encoding="utf-8"))["models"]
        best = max(models, key=lambda name: models[name]["accuracy"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{summary_file}: expected {{\"models\": {{name: {{\"accuracy\": ...}}}}}} "
                        f"({type(e).__name__}: {e}); run the summarize stage again, "
                        f"or pass --model NAME (models in {models_dir}/: {listing})") from None
    if best not in available:
        raise DataError(f"{summary_file} names {best} as the best model, but {models_dir}/{best} holds no "
                        f"trained model; run dvc pull or dvc repro, or pass --model NAME "
                        f"(models in {models_dir}/: {listing})")
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="audio files (wav, au, mp3, flac, ogg)")
    parser.add_argument("--model", help="a model folder under models/ (default: best in metrics/summary.json)")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"genres to print per file ({DEFAULT_TOP})")
    args = parser.parse_args()
    if args.top < 1:
        raise ParamError(f"--top {args.top}: expected a number of genres >= 1")
    if args.model is not None and args.model not in trained_models():
        raise DataError(f"{MODELS_DIR}/{args.model} holds no trained model ({PREPROCESSING_FILE} missing); "
                        f"models in {MODELS_DIR}/: {', '.join(trained_models()) or 'none'}")

    name = args.model or best_model()
    predictor = load_predictor(MODELS_DIR / name)
    log.info("model %s (%s%s), %d genres, audio decoded at %d Hz", name, predictor.family,
             "" if args.model else ", best accuracy in " + str(SUMMARY_FILE),
             len(predictor.labels), predictor.sample_rate)

    failed = []
    for path in args.files:
        try:
            clip = decode_clip(path, predictor.sample_rate)          # its errors name the file
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
