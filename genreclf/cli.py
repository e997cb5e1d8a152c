"""genreclf: the genre of your audio files, and similar songs, from a trained project.

    genreclf predict FILE... [--model NAME] [--top K] [--json]
    genreclf recommend FILE... [--top K] [--json]
    genreclf models [--json]

It runs in the project folder (where dvc.yaml is), as dvc does, or in the one --project DIR
names. Each file is decoded exactly as the model's (or the index's) clips were
(genreclf.data.audio.decode_clip at its sample rate) and goes through the same feature or
embedding path. ``predict`` uses the model of best test accuracy in metrics/summary.json unless
--model names one; ``recommend`` answers from models/recommend (the recommend_index stage):
the dataset's clips or the songs of your own library folder (recommend.library). Output is a
readable table; --json prints one JSON document instead. A file that cannot be read gets one
error line on stderr and the others are still answered; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

import numpy as np

from genreclf.artifacts import (
    MODEL_METRICS_DIR,
    MODELS_DIR,
    PREPROCESSING_FILE,
    RECOMMEND_DIR,
    SUMMARY_JSON,
    read_json,
    read_model_folder,
    read_summary,
)
from genreclf.errors import DataError, GenreError
from genreclf.recommend import track_name

PROG = "genreclf"
DEFAULT_TOP = {"predict": 3, "recommend": 10}
PROJECT_MARKERS = ("dvc.yaml", "params.yaml")


# ---- models and their scores ---------------------------------------------------------------------


def trained_models(models_dir: Path = MODELS_DIR) -> list[str]:
    """Names of the model folders that hold a preprocessing.json, sorted."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if (p / PREPROCESSING_FILE).is_file())


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


def model_table() -> dict:
    """{"models": [{name, family, accuracy (null: not evaluated)}], "default": name or null}."""
    rows = []
    for name in trained_models():
        metrics_file = MODEL_METRICS_DIR / f"{name}.json"
        accuracy = read_json(metrics_file).get("accuracy") if metrics_file.is_file() else None
        rows.append({"name": name, "family": read_model_folder(MODELS_DIR / name).family, "accuracy": accuracy})
    try:
        default = best_model()
    except DataError:
        default = None
    return {"models": rows, "default": default}


def top_genres(probs: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    """The k most probable genres, most probable first (label order on a tie)."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [(labels[i], float(probs[i])) for i in order]


# ---- the readable tables ----------------------------------------------------------------------------


def format_prediction(path: str, ranked: list[tuple[str, float]]) -> str:
    width = max(len(genre) for genre, _ in ranked)
    lines = [path] + [f"  {rank}. {genre:<{width}}  {prob:.3f}" for rank, (genre, prob) in enumerate(ranked, 1)]
    return "\n".join(lines)


def format_neighbours(path: str, rows: list[dict]) -> str:
    """The file, then one line per song: rank, similarity, the song (library path or track id),
    genre (the dataset's clips), artist - title."""
    songs = [row["path"] or row["track_id"] for row in rows]
    width = max((len(s) for s in songs), default=0)
    genre_width = max((len(row["genre"]) for row in rows), default=0)
    lines = [path]
    for rank, (row, song) in enumerate(zip(rows, songs), 1):
        genre = f"  {row['genre']:<{genre_width}}" if genre_width else ""
        name = track_name(row["artist"], row["title"])
        lines.append(f"  {rank:2d}. {row['similarity']:6.3f}  {song:<{width}}{genre}  {name}".rstrip())
    return "\n".join(lines)


def format_models(table: dict) -> str:
    if not table["models"]:
        return f"no trained models in {MODELS_DIR}/; run dvc repro (or dvc pull)"
    width = max(len(row["name"]) for row in table["models"])
    lines = [f"{'model':<{width}}  family   test accuracy"]
    for row in table["models"]:
        accuracy = "not evaluated" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        mark = "  (predict's default: best in metrics/summary.json)" if row["name"] == table["default"] else ""
        lines.append(f"{row['name']:<{width}}  {row['family']:<7}  {accuracy}{mark}")
    return "\n".join(lines)


# ---- the commands ---------------------------------------------------------------------------------------


def answer_files(files: list[tuple[str, Path]], answer, form, as_json: bool) -> tuple[list, list]:
    """Answer each (shown name, path) in turn; print each answer as it comes unless ``as_json``.
    An error is one line on stderr. ([(name, answer)], [(name, error)])."""
    answered, failed = [], []
    for shown, path in files:
        try:
            result = answer(path)
        except GenreError as e:
            message = str(e).replace(str(path), shown)
            message = message if message.startswith(f"{shown}:") else f"{shown}: {message}"
            print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
            failed.append((shown, message))
            continue
        answered.append((shown, result))
        if not as_json:
            print(form(shown, result), flush=True)
    return answered, failed


def predict(args, files: list[tuple[str, Path]]) -> dict:
    from genreclf.data.audio import decode_clip
    from genreclf.models.predictors import load_predictor

    available = trained_models()
    if args.model is not None and args.model not in available:
        raise DataError(f"no trained model {args.model!r} in {MODELS_DIR}/; trained: {', '.join(available) or 'none'}")
    name = args.model or best_model()
    predictor = load_predictor(MODELS_DIR / name)
    if not args.json:
        default = "" if args.model else f", the best in {SUMMARY_JSON}"
        print(f"model {name} ({predictor.family}{default}), {len(predictor.labels)} genres", file=sys.stderr)

    def answer(path: Path):
        return top_genres(predictor.predict_audio(decode_clip(path, predictor.sample_rate)), predictor.labels, args.top)

    answered, failed = answer_files(files, answer, format_prediction, args.json)
    predictions = [{"file": f, "genres": [{"genre": g, "probability": p} for g, p in r]} for f, r in answered]
    return {"model": name, "predictions": predictions, "errors": [{"file": f, "error": e} for f, e in failed]}


def recommend(args, files: list[tuple[str, Path]]) -> dict:
    from genreclf.artifacts import read_similarity_index
    from genreclf.data.audio import decode_clip
    from genreclf.models import neighbours
    from genreclf.recommend import Embedder

    arrays, library, info = read_similarity_index(RECOMMEND_DIR)
    index, embed = neighbours.SimilarityIndex(*arrays), Embedder(info, where=str(RECOMMEND_DIR))
    folder = info.get("library")

    def answer(path: Path) -> list[dict]:
        query = neighbours.query_vectors(index, embed(decode_clip(path, info["sample_rate"]))[None, :])
        found, similarity = neighbours.nearest(index, query, args.top)
        return [
            {
                "similarity": float(s),
                "path": None if folder is None else (Path(folder) / library["track_id"][i]).as_posix(),
                "track_id": library["track_id"][i],
                "genre": library["genre"][i],
                "artist": library["artist"][i],
                "title": library["title"][i],
            }
            for i, s in zip(found[0], similarity[0])
            if i >= 0  # fewer library songs than --top
        ]

    if not args.json:
        what = f"the songs of {folder}" if folder else "the dataset's train + val clips"
        print(f"index {RECOMMEND_DIR}: {len(library)} {what}, embedding {info['embedding']}", file=sys.stderr)
    answered, failed = answer_files(files, answer, format_neighbours, args.json)
    return {
        "embedding": info["embedding"],
        "library": folder,
        "answers": [{"file": f, "songs": rows} for f, rows in answered],
        "errors": [{"file": f, "error": e} for f, e in failed],
    }


# ---- the command line -------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


PREDICT_HELP = "the top genres of each file"
RECOMMEND_HELP = "similar songs of each file"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    project_help = "the project folder (default: the current folder)"
    parser.add_argument("--project", metavar="DIR", type=Path, default=Path("."), help=project_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{predict,recommend,models}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", metavar="DIR", type=Path, default=argparse.SUPPRESS, help=project_help)
    common.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    file_commands = {
        "predict": commands.add_parser("predict", parents=[common], help=PREDICT_HELP, description=PREDICT_HELP),
        "recommend": commands.add_parser(
            "recommend", parents=[common], help=RECOMMEND_HELP, description=RECOMMEND_HELP
        ),
    }
    for name, command in file_commands.items():
        command.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, au, mp3, flac, ogg)")
        top = DEFAULT_TOP[name]
        command.add_argument("--top", type=positive_int, default=top, metavar="K", help=f"answers per file ({top})")
    file_commands["predict"].add_argument(
        "--model", metavar="NAME", help=f"a model of {MODELS_DIR}/ (default: the best in {SUMMARY_JSON})"
    )
    commands.add_parser("models", parents=[common], help="the trained models and predict's default")
    return parser


def enter_project(project: Path) -> None:
    if not any((project / marker).is_file() for marker in PROJECT_MARKERS):
        raise DataError(
            f"{project.resolve()}: not a genreclf project (no {' or '.join(PROJECT_MARKERS)}); "
            "run genreclf in the project folder or pass --project DIR"
        )
    os.chdir(project)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0, or 1 when a file or the project failed)."""
    args = build_parser().parse_args(argv)
    files = [(f, Path(f).resolve()) for f in getattr(args, "files", [])]  # before entering the project
    try:
        enter_project(args.project)
        if args.command == "models":
            document = model_table()
            print(json.dumps(document, indent=2) if args.json else format_models(document))
            return 0
        document = (predict if args.command == "predict" else recommend)(args, files)
    except GenreError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    if document["errors"]:
        print(f"{PROG}: {len(document['errors'])} of {len(files)} files could not be answered", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The installed ``genreclf`` command (and ``python -m genreclf``): ``main``'s status as the
    process's. Every object still alive is frozen first (``gc.freeze``), so that the garbage
    collection Python runs as it exits skips them: most of a second once TensorFlow is imported."""
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    run()
