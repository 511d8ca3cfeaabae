"""bncourse: Batch Normalization, tested.

Reference implementations and experiments for the course book, each checked
against PyTorch. Import the modules themselves (``from bncourse.batchnorm import
batchnorm_forward``); this package module imports nothing, so that
``import bncourse`` stays cheap and does not load torch.

Shape letters used throughout: N samples in the batch, C channels (features),
m values per channel (N for ``(N, C)`` input, N*H*W for ``(N, C, H, W)``).

Rooms
-----
Imports point down only: ``study`` uses ``experiments``, experiments use the
``lab``, the lab uses the reference shelf, and nothing imports upward.

The reference shelf (this folder): what the book teaches

batchnorm         NumPy forward, closed-form and graph backward, functional ``batch_norm``, layer ``BatchNorm``
torch_bn          hand-derived backward in an autograd Function; ``BatchNorm1d/2d/3d`` drop-ins
ewa               exponentially weighted averages with bias correction (running statistics)
precise_bn        recompute the running buffers after training ("precise BN"); replay of the updates
fold              fold an evaluation-mode BatchNorm into the Linear or convolution before it
ghost_bn          ghost batch normalization over virtual sub-batches (chapter 7)
noisy_bn          BN with random shifts and scales after it, Santurkar et al.'s noisy BN (chapter 5)
batch_renorm      batch renormalization (Ioffe 2017) (chapter 10)
groupnorm         group normalization in NumPy, forward and backward, built on layernorm (chapter 10)
layernorm         layer and RMS normalization in NumPy: forward, closed-form and graph backward (chapter 12)
masked_bn         batch normalization with statistics over the real (unpadded) positions (chapter 12)
sync_bn           synchronized BN over several processes, one batch normalized as one (chapter 10)
standardize       input standardization with training statistics (chapter 1)
gradcheck         finite-difference gradients and the relative error
doctor            the BN doctor: finds the batch-norm mistakes of chapter 11 in a model
verdicts          the ledger's verdicts: ``decide`` (t-interval, TOST, sign test, mde), ``combine`` (Holm)
_checks           input validation shared by the public entry points (private)
_kernels          speed-only NumPy kernels behind ``batchnorm`` (private)
_torch_checks     tensor checks and per-channel views shared by the PyTorch modules (private)

Below it, one sub-package per kind of code

lab               data, models, the training loop and probes, sweeps, plotting, diagrams
experiments       one module per chapter experiment, entry points ``run_<experiment>``
bench             benchmarks against PyTorch (``python -m bncourse.bench``, ``make bench``)
study             the claims registry and the study runner on Dask (``python -m bncourse.study``)
exercises         graded exercises, one module ``exercises/chNN.py`` per chapter; learner checks
grade             grade a folder of submissions into a gradebook (``python -m bncourse.grade``)

``CONTRIBUTING.md`` says where new code goes.
"""

__version__ = "0.1.0"
