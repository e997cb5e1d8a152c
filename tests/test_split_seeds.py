"""benchmarks/split_seeds.py: each model's accuracy per split seed, with mean and standard deviation."""

from __future__ import annotations

from benchmarks.split_seeds import model_accuracies, seeds_table


def test_accuracies_are_read_from_the_summary():
    summary = {"chance": {"uniform_accuracy": 0.1}, "models": {"svm": {"accuracy": 0.75, "n_test": 20}}}
    assert model_accuracies(summary) == {"svm": 0.75}


def test_table_gives_each_model_its_seeds_mean_and_population_std():
    table = seeds_table({0: {"svm": 0.5, "knn": 1.0}, 3: {"svm": 1.0, "knn": 1.0}})
    assert table.splitlines() == [
        "| model | seed 0 | seed 3 | mean | std |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| svm | 0.500 | 1.000 | 0.750 | 0.250 |",
        "| knn | 1.000 | 1.000 | 1.000 | 0.000 |",
    ]
