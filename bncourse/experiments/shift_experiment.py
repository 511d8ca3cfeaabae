"""Chapter 5's experiment: Ioffe and Szegedy's Figure 1 network without BN, with BN, with noisy BN.

One training run of the 3 x 100 sigmoid MLP (``bncourse.lab.models.make_mlp``)
on the digits, recording at once everything the chapter discusses:

- ``"percentiles"``, shape ``(R, 3, 100)``: the 15th, 50th and 85th
  percentiles of the input of every sigmoid of the last hidden layer
  (``act3``) on a fixed reference batch (``bncourse.experiments.drift``), every
  ``record_every`` steps;
- ``"ics"``, shape ``(R, 3, 3)``: Santurkar et al.'s internal covariate
  shift (``bncourse.experiments.ics``; rows l2, relative, cosine; columns fc2, fc3, out),
  every ``heavy_every``-th record (NaN rows in between);
- ``"smoothness"``, shape ``(R, 4)``: loss variation, gradient change,
  effective smoothness along the gradient and the gradient norm
  (``bncourse.experiments.landscape``), at the same records as ``"ics"``.

The three variants differ only in the layer after each hidden Linear layer:
nothing (``"no BN"``), ``nn.BatchNorm1d`` (``"BN"``), or
``bncourse.noisy_bn.NoisyBatchNorm1d`` (``"noisy BN"``). The same ``seed``
gives the same Linear weights and the same mini-batches in every variant.

Public API
----------
``VARIANTS``
    ``("no BN", "BN", "noisy BN")``.
``build_model(variant, seed, init_scale=0.1, shift=1.0, scale=(1.0, 2.0)) -> nn.Sequential``
``run_shift_experiment(variant, seed, data, steps=1000, lr=0.5, batch_size=60, ...) -> History``
    Trains one model; ``History.config`` gains ``variant``, ``init_scale`` and
    the noise settings.

Examples
--------
>>> from bncourse.lab.data import load_digits_split
>>> data = load_digits_split(seed=0)
>>> h = run_shift_experiment("noisy BN", seed=0, data=data, steps=20, record_every=5,
...                          heavy_every=2, eval_every=10)
>>> h.records["percentiles"].shape, h.records["ics"].shape, h.records["smoothness"].shape
((4, 3, 100), (4, 3, 3), (4, 4))
"""

from __future__ import annotations

import functools

import numpy as np
from torch import nn

from bncourse._checks import check_int, fail
from bncourse.experiments.drift import reference_percentiles
from bncourse.experiments.ics import ics_probe
from bncourse.experiments.landscape import smoothness_probe
from bncourse.lab.data import Dataset
from bncourse.lab.models import make_mlp
from bncourse.lab.probes import every
from bncourse.lab.training import History, train
from bncourse.noisy_bn import NoisyBatchNorm1d

__all__ = ["VARIANTS", "build_model", "run_shift_experiment"]

VARIANTS = ("no BN", "BN", "noisy BN")


def build_model(variant: str, seed: int, init_scale: float = 0.1, shift: float = 1.0,
                scale=(1.0, 2.0)) -> nn.Sequential:
    """The 64-100-100-100-10 sigmoid MLP of ``variant``, Gaussian weights of std ``init_scale``.

    Raises
    ------
    ValueError
        For a ``variant`` not in ``VARIANTS`` (and the checks of ``make_mlp``
        and ``NoisyBatchNorm1d``).
    """
    if variant not in VARIANTS:
        fail("build_model", "variant", "one of " + ", ".join(repr(v) for v in VARIANTS),
              repr(variant))
    kwargs = dict(hidden=(100, 100, 100), activation="sigmoid", init_scale=init_scale, seed=seed)
    if variant == "no BN":
        return make_mlp(64, bn="none", **kwargs)
    if variant == "BN":
        return make_mlp(64, bn="before", **kwargs)
    factory = functools.partial(NoisyBatchNorm1d, shift=shift, scale=scale)
    factory(1)                                          # check the noise settings up front
    return make_mlp(64, bn="before", bn_layer=factory, **kwargs)


def run_shift_experiment(variant: str, seed: int, data: Dataset, steps: int = 1000,
                         lr: float = 0.5, batch_size: int = 60, init_scale: float = 0.1,
                         record_every: int = 10, heavy_every: int = 10,
                         reference_size: int = 500,
                         step_multiples=(0.25, 0.5, 1.0, 2.0, 4.0), eval_every: int = 50,
                         shift: float = 1.0, scale=(1.0, 2.0),
                         progress: bool = False) -> History:
    """Train one variant with SGD and record percentiles, ICS and smoothness.

    Parameters
    ----------
    variant : {"no BN", "BN", "noisy BN"}
    seed : int
        Seeds the weights and the data order (the same for every variant).
    data : Dataset
        Digits as ``(N, 64)`` vectors (``bncourse.lab.data.load_digits_split``).
    steps, lr, batch_size, eval_every
        As ``bncourse.lab.training.train`` (plain SGD, no momentum).
    init_scale : float
        Standard deviation of the Gaussian initial weights (biases 0).
    record_every : int
        Percentiles every this many steps.
    heavy_every : int
        ICS and smoothness on every ``heavy_every``-th record, i.e. every
        ``record_every * heavy_every`` steps.
    reference_size : int
        The fixed reference batch is the first ``reference_size`` training samples.
    step_multiples : sequence of float
        Step sizes of the smoothness probe, in units of ``lr``.
    shift, scale
        Noise of ``NoisyBatchNorm1d`` (used by ``"noisy BN"`` only).
    progress : bool
        Show the training progress bar.

    Returns
    -------
    History
        With records ``"percentiles" (R, 3, 100)``, ``"ics" (R, 3, 3)``,
        ``"smoothness" (R, 4)``.

    Raises
    ------
    ValueError / TypeError
        For an unknown variant, non-positive counts, or a reference batch larger
        than the training set.
    """
    record_every = check_int("run_shift_experiment", "record_every", record_every)
    heavy_every = check_int("run_shift_experiment", "heavy_every", heavy_every)
    reference_size = check_int("run_shift_experiment", "reference_size", reference_size)
    if reference_size > data.n_train:
        fail("run_shift_experiment", "reference_size",
              f"at most the {data.n_train} training samples", repr(reference_size))
    model = build_model(variant, seed, init_scale=init_scale, shift=shift, scale=scale)
    multiples = np.asarray(step_multiples, dtype=np.float64)
    probes = {
        "percentiles": reference_percentiles("act3", data.x_train[:reference_size]),
        "ics": every(ics_probe(lr), heavy_every),
        "smoothness": every(smoothness_probe(lr * multiples), heavy_every),
    }
    history = train(model, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                    eval_every=eval_every, probes=probes, record_every=record_every,
                    progress=progress, desc=variant)
    history.config.update(variant=variant, init_scale=init_scale, shift=shift,
                          scale=tuple(scale), step_multiples=tuple(multiples.tolist()),
                          reference_size=reference_size)
    return history
