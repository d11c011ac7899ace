"""The pneumonia CNNs' training loop, shared by 1.0.0 (train_pneumonia) and 2.0.0 (train_pneumonia_kermany)."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from keras import layers


def augmenter(seed: int) -> keras.Sequential:
    """Train-time jitter of position and exposure, run in tf.data: model.h5 holds inference layers only."""
    # No horizontal flip: the heart sits on the left, a mirrored chest is not an image we will be served, and
    # with it val loss was the worst of the variants tried. Exposure jitter is for X-rays from other machines
    # and settings than train's; val (same source as train) cannot show its benefit and showed no cost.
    return keras.Sequential([
        layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
        layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed + 1),
        layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2),
        layers.RandomContrast(0.2, value_range=(0, 1), seed=seed + 3),
        layers.RandomBrightness(0.1, value_range=(0, 1), seed=seed + 4),
    ], name="augment")


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of the epoch with the lowest val loss (a checkpoint without files)."""

    def __init__(self) -> None:
        super().__init__()
        self.best_loss, self.best_epoch, self.weights = np.inf, 0, None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Keep a copy of the weights if this epoch improved val loss."""
        loss = (logs or {}).get("val_loss", np.inf)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.weights = loss, epoch + 1, self.model.get_weights()


def train(model: keras.Model, data: Any, args: argparse.Namespace,
          from_logits: bool = False) -> tuple[dict[str, list[float]], int]:
    """Fit on augmented train batches with balanced class weights, restore the best val-loss epoch; returns the
    history and that epoch (1-based). `from_logits`: the model outputs logits (2.0.0), not probabilities."""
    x, y = data.train.x, data.train.y
    augment = augmenter(args.seed)
    dataset = (tf.data.Dataset.from_tensor_slices((x, y))
               .shuffle(len(x), seed=args.seed, reshuffle_each_iteration=True)
               .batch(args.batch_size)
               .map(lambda images, labels: (augment(images, training=True), labels))
               .prefetch(2))
    # Balanced class weights: the model then scores as if both classes were equally common, which the
    # val-chosen threshold refines; test has more normals (37.5%) than train and val (26%).
    positives = float(y.mean())
    class_weight = {0: 0.5 / (1 - positives), 1: 0.5 / positives}
    steps = int(np.ceil(len(x) / args.batch_size)) * args.epochs
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.BinaryCrossentropy(from_logits=from_logits),
                  metrics=[keras.metrics.AUC(name="auc", from_logits=from_logits)])
    keep = KeepBest()
    history = model.fit(dataset, epochs=args.epochs, validation_data=(data.val.x, data.val.y),
                        class_weight=class_weight, callbacks=[keep], verbose=2)
    model.set_weights(keep.weights)
    return history.history, keep.best_epoch
