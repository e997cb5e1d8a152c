"""A training loop with ``strategy.run``, for MultiWorkerMirroredStrategy.

With TensorFlow 2.21 and Keras 3.15, ``model.fit`` under MultiWorkerMirroredStrategy stops
at its first step with ``ValueError: Attempt to convert a value (PerReplica…)``
(keras-team/keras#20585). ``fit_with_strategy`` does what ``fit`` does for these models,
with the same Keras callbacks (early stopping, best weights, dvclive, progress), so
the runs on one machine (which keep ``model.fit``) and on several log and keep the
same things:

- every worker builds the same global batches (same shards, same seeds) and
  ``experimental_distribute_dataset`` splits each batch between the replicas of all
  workers (auto-shard policy DATA: each worker reads every shard and keeps its part of
  each batch), so all workers take the same number of steps and the global batches
  are those of a run on one machine;
- a step's loss is the sum of its per-example losses over the examples of the whole
  global batch (counted with an all-reduce, so a short last batch weighs as in
  ``fit``); Keras' optimizer sums the replicas' gradients;
- BatchNormalization's moving statistics (MobileNetV2) are updated by each replica from
  its part of the batch (Keras' layer is not synchronized across replicas); after each
  training epoch they are set to their mean over the replicas, so that every worker
  validates and keeps the same weights;
- the epoch's "loss" and "accuracy" are means over the examples seen during training,
  "val_loss" and "val_accuracy" over every validation example, summed over the
  workers: every worker has the same values, so early stopping stops all of them at
  the same epoch.

The functions here work under any strategy (the default one included: tested against
``model.fit``).
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import tensorflow as tf

SUMS = ("loss", "correct", "count")  # what each step returns, summed over its examples


def distribute(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy):
    """The dataset's global batches split between the replicas of every worker (see the module's docstring)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def example_sums(model: keras.Model, y_true, y_pred):
    """[loss sum, correct predictions, examples] of a batch (accuracy: argmax of prediction == of label)."""
    per_example = model.loss.call(y_true, y_pred)
    correct = tf.cast(tf.equal(tf.argmax(y_true, axis=-1), tf.argmax(y_pred, axis=-1)), tf.float32)
    count = tf.cast(tf.shape(y_true)[0], tf.float32)
    return tf.stack([tf.reduce_sum(tf.cast(per_example, tf.float32)), tf.reduce_sum(correct), count])


def train_step_function(model: keras.Model, strategy: tf.distribute.Strategy):
    """A tf.function that trains on one distributed batch and returns its SUMS over all replicas."""

    def replica_step(x, y):
        examples = tf.cast(tf.shape(y)[0], tf.float32)
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, examples)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            sums = example_sums(model, y, y_pred)
            loss = model.optimizer.scale_loss(sums[0] / tf.maximum(total, 1.0))
        weights = model.trainable_weights
        model.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return sums

    return summed_over_replicas(replica_step, strategy)


def eval_step_function(model: keras.Model, strategy: tf.distribute.Strategy):
    """A tf.function that returns the SUMS of one distributed validation batch over all replicas."""

    def replica_step(x, y):
        return example_sums(model, y, model(x, training=False))

    return summed_over_replicas(replica_step, strategy)


def summed_over_replicas(replica_step, strategy: tf.distribute.Strategy):
    """A tf.function of a distributed batch: ``replica_step(x, y)`` on every replica, summed over all of them."""

    @tf.function(reduce_retracing=True)
    def step(batch):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=batch), axis=None)

    return step


def batch_norm_statistics(layer) -> list:
    """The moving means and variances of every BatchNormalization layer in ``layer`` (nested models included)."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer.moving_mean, layer.moving_variance]
    return [variable for inner in getattr(layer, "layers", []) for variable in batch_norm_statistics(inner)]


def averaging_function(variables: list, strategy: tf.distribute.Strategy):
    """A tf.function that sets each of ``variables``, on every replica, to its mean over all replicas."""

    def replica_average():
        context = tf.distribute.get_replica_context()
        values = [tf.identity(variable.value) for variable in variables]  # this replica's, as tensors
        averages = context.all_reduce(tf.distribute.ReduceOp.MEAN, values)
        for variable, mean in zip(variables, averages):
            variable.assign(mean)

    @tf.function
    def average():
        strategy.run(replica_average)

    return average


def means(sums, prefix: str = "") -> dict[str, float]:
    """{"loss", "accuracy"} (with ``prefix``) from summed SUMS."""
    loss, correct, count = (float(value) for value in sums)
    count = max(count, 1.0)
    return {f"{prefix}loss": loss / count, f"{prefix}accuracy": correct / count}


def run_batches(batches, step, on_begin, on_end, stopped) -> np.ndarray:
    """The SUMS of ``step`` over the batches, calling the callbacks' batch hooks; ends early once ``stopped()``."""
    sums = tf.zeros([len(SUMS)])
    for index, batch in enumerate(batches):
        on_begin(index)
        sums += step(batch)
        on_end(index)
        if stopped():
            break
    return sums.numpy()


def train_epoch(batches, step, hooks: keras.callbacks.CallbackList, model: keras.Model) -> dict[str, float]:
    """One pass over the distributed training batches; ends early if a callback sets ``stop_training``."""
    sums = run_batches(batches, step, hooks.on_train_batch_begin, hooks.on_train_batch_end, lambda: model.stop_training)
    return means(sums)


def evaluate(batches, step, hooks: keras.callbacks.CallbackList, model: keras.Model) -> dict[str, float]:
    """The validation loss and accuracy over every distributed validation batch (or until ``stop_evaluating``)."""
    model.stop_evaluating = False
    hooks.on_test_begin()
    sums = run_batches(batches, step, hooks.on_test_batch_begin, hooks.on_test_batch_end, lambda: model.stop_evaluating)
    logs = means(sums, prefix="val_")
    hooks.on_test_end(logs)
    return logs


def fit_with_strategy(
    model: keras.Model,
    train: tf.data.Dataset,
    val: tf.data.Dataset,
    epochs: int,
    strategy: tf.distribute.Strategy,
    callbacks: list,
    steps_per_epoch: int | None = None,
) -> None:
    """``model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, steps_per_epoch=...)``
    with ``strategy.run``.

    ``train`` and ``val`` give global batches of (inputs, one-hot labels); ``model`` is
    compiled in ``strategy.scope()``. The callbacks see the same calls and epoch logs
    (loss, accuracy, val_loss, val_accuracy) as under ``fit``. Without ``steps_per_epoch``,
    each epoch iterates ``train`` again; with it, one iterator gives every epoch its steps
    (``train`` holds all the epochs' batches, ``tfdata.training_epochs``).
    """
    if not model.optimizer.built:  # its variables in the strategy's scope, as fit makes them
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
    train_batches, val_batches = distribute(train, strategy), distribute(val, strategy)
    train_step, eval_step = train_step_function(model, strategy), eval_step_function(model, strategy)
    statistics = batch_norm_statistics(model)
    average_statistics = averaging_function(statistics, strategy) if statistics else lambda: None
    steps = steps_per_epoch or int(train.cardinality())  # known: tfdata asserts it
    hooks = keras.callbacks.CallbackList(
        callbacks, model=model, epochs=epochs, steps=steps if steps > 0 else None, verbose=0
    )
    model.stop_training = False
    hooks.on_train_begin()
    stream = iter(train_batches) if steps_per_epoch else None
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        batches = itertools.islice(stream, steps_per_epoch) if stream is not None else train_batches
        logs = train_epoch(batches, train_step, hooks, model)
        average_statistics()
        logs.update(evaluate(val_batches, eval_step, hooks, model))
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
