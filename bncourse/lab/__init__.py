"""The experiment lab: data, models, the training loop and its probes, sweeps, figures.

Used by :mod:`bncourse.experiments` and the chapters; it builds on the
reference shelf (the top of the package) and imports nothing above it.

data           offline data sets (scikit-learn digits) as float32 torch tensors, seeded splits
datasets       study-scale data: MNIST-1D generated offline, train/validation/test splits, CIFAR-10
batches        the order in which a seeded generator deals out mini-batches
models         model builders: MLPs and a small CNN, with or without normalization
training       a seeded training loop that records losses, accuracies and probes
probes         run an expensive probe on only some of the recorded steps
mlp_stack      train many small MLPs side by side in batched matrix products
sweeps         several seeds, grids of settings, 95% intervals and computed verdicts
plotting       figures with 95% bands over seeds, percentile bands and error bars
diagrams       computational-graph diagrams drawn with matplotlib (chapter 4)
norm_axes      masks and pictures of the axes that share one mean and variance (chapter 2)
forward_check  a forward pass or a layer against PyTorch on 2-D to 5-D input (chapter 2)
transformer    a tiny causal transformer with the normalization and its placement as knobs (chapter 12)
"""
