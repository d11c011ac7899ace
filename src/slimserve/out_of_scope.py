"""Out-of-scope refusal: is an upload unlike every image the model was trained on (not a chest X-ray)?

The model's graph computes the score (for pneumonia 2.0.0 the Mahalanobis distance of its pooled features
to the training images'); the manifest's `ood` section names that output and the threshold chosen on the
validation split. The server calls `is_out_of_scope` before it labels a prediction and answers 422
`not_a_chest_xray` when it is true.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from slimserve.manifest import Manifest


def ood_score(manifest: Manifest, outputs: Mapping[str, np.ndarray]) -> float | None:
    """The out-of-scope score of the first (only) image in `outputs`, or None if the model has none."""
    if manifest.ood is None:
        return None
    return float(np.asarray(outputs[manifest.ood.output], dtype=np.float64).ravel()[0])


def is_out_of_scope(manifest: Manifest, outputs: Mapping[str, np.ndarray]) -> bool:
    """True when the model's out-of-scope score is above its threshold (or not a number): refuse, do not predict."""
    score = ood_score(manifest, outputs)
    if score is None:
        return False
    # `not <=` also refuses NaN: an input the graph cannot score is not one it was validated on.
    return not score <= manifest.ood.threshold
