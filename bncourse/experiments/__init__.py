"""The chapters' experiments, one module each, named after the experiment.

Each module runs one experiment with the lab (:mod:`bncourse.lab`) and the
reference shelf; its entry point is named ``run_<experiment>`` and returns
the measurements (and, where a claim is decided, the verdict). Grouped by
chapter:

1   conditioning       least squares as a quadratic: condition numbers and steps to converge
    leakage            train/test leakage through standardization statistics
2   redundant_bias     find and count the biases that a following BN cancels
3   running_averages   running statistics against the population, and the claim-9 verdict
5   shift_experiment   Ioffe and Szegedy's Figure 1 network: no BN, BN, noisy BN
    drift              percentiles of a layer's input on fixed data during training
    ics                internal covariate shift measured through gradients
    landscape          loss variation and gradient predictiveness along the gradient
6   optim_experiments  learning-rate, initial-scale and depth sweeps for the optimization claims
    scale_invariance   scale invariance of the weights before BN; the effective learning rate
    grad_explosion     gradient explosion at initialization in deep BN nets without skips
7   batch_noise        scatter of the batch mean and variance over random mini-batches
    regularization     train/validation/test split and learning rates tuned on validation
8   placement          BN before or after the activation; what the next Linear can absorb
    variance_shift     variance shift of dropout before BN: prediction, measurement, fixes
    output_bn          BN on the output layer: logit scale, calibration, batch dependence
9   cost               steps and time to a target accuracy, and the cost claims
10  small_batch        accuracy against batch size for several normalizations
11  pretrained         the chapter's BN CNN, trained on the digits in a few seconds
    eval_mode          predictions in training mode; running statistics moved under no_grad
    sequence_axis      BatchNorm1d on an (N, L, C) sequence: the error, the silent case, the fix
    finetune           fine-tuning with BN in training mode or frozen (FrozenBatchNorm)
    adabn              domain shift at test time: source statistics against AdaBN
    swa_bn             SWA and EMA of the weights with and without update_bn
    weight_decay       weight decay on scale-invariant weights: the angular update; gamma, beta
    precision          bfloat16 autocast and channels-last: BN's dtype and error
    compile_fusion     the graph torch.compile captures, against folding BN by hand
    ddp_sync           DDP with per-process BN, torch's and the course's SyncBatchNorm
12  padding_pollution  zero padding in BN's statistics; masked BN and LN against it
    causal_leakage     later positions seen through batch statistics in a causal model
    batch_dependence   predictions that change with the rest of the batch at inference
    warmup_trainability  pre-LN and post-LN: gradients at initialization, training with warmup
"""
