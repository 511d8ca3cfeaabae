"""bncourse: Batch Normalization, tested.

Reference implementations and experiments for the course book, each checked
against PyTorch. Import the modules themselves (``from bncourse.batchnorm import
batchnorm_forward``); this package module imports nothing, so that
``import bncourse`` stays cheap and does not load torch.

Shape letters used throughout: N samples in the batch, C channels (features),
m values per channel (N for ``(N, C)`` input, N*H*W for ``(N, C, H, W)``).

Modules
-------
Batch normalization and its relatives

batchnorm         NumPy forward, closed-form and graph backward, functional ``batch_norm``
layer             the NumPy layer ``BatchNorm`` with torch's buffers (re-exported by batchnorm)
torch_bn          hand-derived backward in an autograd Function; ``BatchNorm1d/2d`` drop-ins
ewa               exponentially weighted averages with bias correction (running statistics)
precise_bn        recompute the running buffers after training ("precise BN"); replay of the updates
fold              fold an evaluation-mode BatchNorm into the Linear or convolution before it
ghost_bn          ghost batch normalization over virtual sub-batches (chapter 7)
noisy_bn          BN with random shifts and scales after it, Santurkar et al.'s noisy BN (chapter 5)
batch_renorm      batch renormalization (Ioffe 2017) (chapter 10)
groupnorm         layer and group normalization in NumPy (chapter 10)
sync_bn           synchronized BN over several processes, one batch normalized as one (chapter 10)

Checks and measurement tools

standardize       input standardization with training statistics (chapter 1)
gradcheck         finite-difference gradients and the relative error
forward_check     a forward pass or a layer against PyTorch on 2-D to 5-D input (chapter 2)
timing            interleaved wall-clock timing on a shared machine
bench             benchmarks of the course's code and of BN's cost against PyTorch
sweeps            several seeds, grids of settings, 95% intervals and computed verdicts
training          a seeded training loop that records losses, accuracies and probes
probe_schedule    run an expensive probe on only some of the recorded steps
mlp_stack         train many small MLPs side by side in batched matrix products
models            model builders: an MLP and a small CNN, with or without normalization
data              offline data sets (scikit-learn digits) as float32 torch tensors
plotting          figures with 95% bands over seeds, percentile bands and error bars
diagrams          computational-graph diagrams drawn with matplotlib (chapter 4)
norm_axes         masks and pictures of the axes that share one mean and variance (chapter 2)

Experiments, one chapter or claim each

conditioning      least squares as a quadratic: condition numbers and steps to converge (chapter 1)
leakage           train/test leakage through standardization statistics (chapter 1)
redundant_bias    find and count the biases that a following BN cancels (chapter 2)
drift             percentiles of a layer's input on fixed data during training (chapter 5)
shift_experiment  Ioffe and Szegedy's Figure 1 network: no BN, BN, noisy BN (chapter 5)
ics               internal covariate shift measured through gradients (chapter 5)
landscape         loss variation and gradient predictiveness along the gradient (chapter 5)
optim_experiments learning-rate, initial-scale and depth sweeps for the optimization claims (ch. 6)
scale_invariance  scale invariance of the weights before BN; the effective learning rate (chapter 6)
grad_explosion    gradient explosion at initialization in deep BN nets without skips (chapter 6)
batch_noise       scatter of the batch mean and variance over random mini-batches (chapter 7)
regularization    train/validation/test split and learning rates tuned on validation (chapter 7)
placement         BN before or after the activation; what the next Linear can absorb (chapter 8)
variance_shift    variance shift of dropout before BN: prediction, measurement, fixes (chapter 8)
output_bn         BN on the output layer: logit scale, calibration, batch dependence (chapter 8)
cost              steps and time to a target accuracy, and the cost claims (chapter 9)
small_batch       accuracy against batch size for several normalizations (chapter 10)

Exercises and grading

exercises         graded exercises, one module ``exercises/chNN.py`` per chapter; learner checks
grade             grade a folder of submissions into a gradebook (``python -m bncourse.grade``)
_checks           input validation shared by the public entry points (private)
"""

__version__ = "0.1.0"
