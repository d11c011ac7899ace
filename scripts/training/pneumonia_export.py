"""The pneumonia 2.x network and its served graph: calibrated probability, out-of-scope distance and CAM.

The trained network outputs a logit. The served graph adds, with plain Keras layers (so model.h5 loads
anywhere and converts to ONNX as-is):
- `probability` = sigmoid(scale·logit + bias), the calibration fitted on val;
- `ood_distance` = squared Mahalanobis distance of the pooled features of every stage to the training
  images' (mean and Ledoit–Wolf covariance as constants), divided by the number of features;
- `cam` = the last convolutional maps weighted by the final dense layer, whose mean over the cells is the logit.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers
from sklearn.covariance import LedoitWolf

OUTPUTS = ("probability", "ood_distance", "cam")


def build_network(image_size: int, width: int, stages: int = 4, dropout: float = 0.3) -> keras.Model:
    """A small VGG-style CNN, two 3×3 conv layers per stage, global average pooling → one logit."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = inputs
    for stage in range(stages):
        filters = width * 2 ** min(stage, 2)
        for conv in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)  # BN supplies the bias
            # momentum 0.9, not Keras' 0.99: with ~60 steps an epoch, 0.99 leaves the moving variance near its
            # initial 1 for epochs, far above the conv outputs' true variance, and val predictions collapse.
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU(name=f"stage{stage}" if conv == 1 else None)(x)
        if stage < stages - 1:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D(name="pooled")(x)
    x = layers.Dropout(dropout)(x)
    logit = layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, logit, name="pneumonia_cnn")


def stage_names(network: keras.Model) -> list[str]:
    """The names of the layers ending each stage, first to last."""
    return [layer.name for layer in network.layers if layer.name.startswith("stage")]


def feature_model(network: keras.Model) -> keras.Model:
    """image → the global-average-pooled output of every stage, concatenated (the out-of-scope features)."""
    pooled = [layers.GlobalAveragePooling2D(name=f"ood_pool_{name}")(network.get_layer(name).output)
              for name in stage_names(network)]
    return keras.Model(network.input, layers.Concatenate(name="ood_features")(pooled), name="ood_features")


def fit_mahalanobis(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, L) with L·Lᵀ the inverse of the shrunk covariance of `features`: ‖(f − mean)·L‖² is Mahalanobis²."""
    features = np.asarray(features, dtype=np.float64)
    estimator = LedoitWolf().fit(features)
    precision = np.linalg.inv(estimator.covariance_)
    precision = (precision + precision.T) / 2
    return estimator.location_, np.linalg.cholesky(precision)


def serving_model(network: keras.Model, scale: float, bias: float, mean: np.ndarray,
                  whiten: np.ndarray) -> keras.Model:
    """The graph that is saved and served: outputs probability, ood_distance and cam (in that order)."""
    features = feature_model(network)
    dims = whiten.shape[0]
    whitened = layers.Dense(dims, name="ood_whiten")(features.output)
    squared = layers.Multiply(name="ood_square")([whitened, whitened])
    distance = layers.Dense(1, use_bias=False, name="ood_distance")(squared)
    calibrated = layers.Dense(1, name="calibrate")(network.output)
    probability = layers.Activation("sigmoid", name="probability")(calibrated)
    last = network.get_layer(stage_names(network)[-1]).output
    cam = layers.Conv2D(1, 1, name="cam")(last)
    model = keras.Model(network.input, [probability, distance, cam], name="pneumonia_served")

    kernel, dense_bias = network.get_layer("logit").get_weights()
    model.get_layer("ood_whiten").set_weights([whiten.astype(np.float32),
                                               (-mean @ whiten).astype(np.float32)])
    model.get_layer("ood_distance").set_weights([np.full((dims, 1), 1 / dims, dtype=np.float32)])
    model.get_layer("calibrate").set_weights([np.array([[scale]], dtype=np.float32),
                                              np.array([bias], dtype=np.float32)])
    model.get_layer("cam").set_weights([kernel.reshape(1, 1, -1, 1), dense_bias])
    return model
