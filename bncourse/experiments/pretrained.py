"""The chapter-11 reference network: a small BN CNN trained on the digits in a few seconds.

Every pitfall of chapter 11 starts from the same trained model, so that each
demonstration changes one thing (the evaluation mode, the data, the averaging
of the weights) and nothing else. No weights are downloaded: the network is
trained here, seeded, in about 300 SGD steps.
"""

from __future__ import annotations

from bncourse.lab.data import Dataset
from bncourse.lab.models import make_cnn
from bncourse.lab.training import History, train

__all__ = ["reference_cnn", "REFERENCE"]

#: The recipe: make_cnn with BN and no bias before it; SGD with momentum.
REFERENCE = dict(channels=(8, 16), steps=300, batch_size=32, lr=0.05, momentum=0.9)


def reference_cnn(data: Dataset, seed: int = 0, steps: int | None = None,
                  num_classes: int | None = None, channels=None, progress: bool = False):
    """Train ``make_cnn(norm="bn", channels=(8, 16), bias_before_norm=False)`` on ``data``.

    Args:
        data: an image data set ``(N, 1, 8, 8)`` (``load_digits_split(images=True)``).
        seed: seeds the weights and the data order.
        steps: SGD steps (default ``REFERENCE["steps"]``), batch 32, lr 0.05, momentum 0.9.
        num_classes: output size (default ``data.num_classes``).
        channels: conv widths (default ``REFERENCE["channels"]``).
        progress: show a progress bar.

    Returns:
        ``(model, history)``: the trained model in evaluation mode and its ``History``.
    """
    steps = REFERENCE["steps"] if steps is None else steps
    model = make_cnn(num_classes=num_classes or data.num_classes, norm="bn",
                     channels=channels or REFERENCE["channels"], bias_before_norm=False, seed=seed)
    history: History = train(model, data, steps=steps, batch_size=REFERENCE["batch_size"],
                             lr=REFERENCE["lr"], momentum=REFERENCE["momentum"], seed=seed,
                             eval_every=None, progress=progress, desc="reference CNN")
    return model.eval(), history
