"""Tests for bncourse.lab.mlp_stack: a stack of K MLPs trains each member exactly as train() would."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from bncourse.lab.data import load_digits_split
from bncourse.lab.mlp_stack import MLPStack, train_stack
from bncourse.lab.models import make_mlp
from bncourse.lab.training import grad_norms, train, weight_norms

FIELDS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "loss")


@pytest.fixture(scope="module")
def data64():
    data = load_digits_split(seed=0)
    return dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test.double())


@pytest.fixture(scope="module")
def data32():
    return load_digits_split(seed=0)


def _models(bn, activation, scales, dtype=torch.float64, hidden=(12, 12, 12)):
    return [make_mlp(64, hidden=hidden, activation=activation, bn=bn, init_scale=s,
                     seed=10 + i).to(dtype) for i, s in enumerate(scales)]


def _train_alone(model, data, lr, seed, **kw):
    probes = {"grad_norms": grad_norms(), "weight_norms": weight_norms()}
    return train(copy.deepcopy(model), data, lr=lr, seed=seed, probes=probes, progress=False,
                 **kw)


def _assert_same_history(got, want, rtol):
    assert got.diverged == want.diverged and got.diverged_at == want.diverged_at
    assert got.config == want.config
    assert np.array_equal(got.steps, want.steps)
    assert np.array_equal(got.record_steps, want.record_steps)
    for f in FIELDS:
        a, b = getattr(got, f), getattr(want, f)
        assert np.array_equal(np.isnan(a), np.isnan(b)), f
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0, equal_nan=True, err_msg=f)
    for name, b in want.records.items():
        a = got.records[name]
        if b.ndim == 1:          # train() never recorded anything (diverged at step 0)
            assert np.isnan(a).all() and np.isnan(b).all()
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("bn,activation", [("none", "tanh"), ("before", "sigmoid"),
                                           ("after", "relu"), ("before", "identity")])
def test_each_member_matches_train_alone_in_float64(data64, bn, activation):
    # Different init scales, learning rates and data-order seeds per member; the last
    # member diverges (max_loss) at once, the others keep training.
    models = _models(bn, activation, [0.1, 0.4, None, 3.0])
    lrs, seeds = [0.1, 0.5, 1.0, 50.0], [0, 1, 0, 2]
    kw = dict(steps=45, batch_size=32, eval_every=20, record_every=7, max_loss=20.0)
    stack = MLPStack.from_models(models)
    got = train_stack(stack, data64, lrs=lrs, seeds=seeds, progress=False, **kw)
    for model, lr, seed, history in zip(models, lrs, seeds, got):
        want = _train_alone(model, data64, lr, seed, **kw)
        _assert_same_history(history, want, rtol=1e-9)
    assert not got[0].diverged and got[-1].diverged


def test_divergence_at_an_evaluation_step_is_caught_as_train_does(data64):
    # Without max_loss a huge learning rate first shows up as a non-finite evaluation.
    models = _models("none", "relu", [0.5, 0.5])
    lrs = [0.05, 1e150]
    kw = dict(steps=30, batch_size=16, eval_every=1)
    got = train_stack(MLPStack.from_models(models), data64, lrs=lrs, seeds=3, progress=False,
                      **kw)
    for model, lr, history in zip(models, lrs, got):
        want = _train_alone(model, data64, lr, 3, **kw)
        _assert_same_history(history, want, rtol=1e-9)
    # The step-0 loss was finite and the evaluation after it was not: the eval path.
    assert got[1].diverged_at == 1 and np.isfinite(got[1].loss[0]) and not got[0].diverged
    assert np.isfinite(got[1].test_accuracy[0]) and np.isnan(got[1].test_accuracy[1])


def test_members_are_independent_of_each_other(data64):
    models = _models("before", "tanh", [0.2, 0.2, 5.0])
    kw = dict(steps=25, batch_size=20, eval_every=5, record_every=5, progress=False)
    together = train_stack(MLPStack.from_models(models), data64, lrs=[0.3, 2.0, 1e4],
                           seeds=[4, 5, 6], **kw)
    alone = train_stack(MLPStack.from_models(models[:1]), data64, lrs=0.3, seeds=4, **kw)
    _assert_same_history(together[0], alone[0], rtol=1e-12)


def test_float32_stack_follows_train_closely(data32):
    models = _models("before", "relu", [0.2, None], dtype=torch.float32)
    kw = dict(steps=20, batch_size=30, eval_every=10, record_every=10)
    got = train_stack(MLPStack.from_models(models), data32, lrs=[0.1, 0.3], seeds=[0, 1],
                      progress=False, **kw)
    for model, lr, seed, history in zip(models, [0.1, 0.3], [0, 1], got):
        want = _train_alone(model, data32, lr, seed, **kw)
        np.testing.assert_allclose(history.loss, want.loss, rtol=1e-4)
        np.testing.assert_allclose(history.records["grad_norms"], want.records["grad_norms"],
                                   rtol=1e-3)


def test_round_trip_and_eval_forward_match_the_modules(data64):
    models = _models("before", "sigmoid", [0.3, 1.0, None])
    before = [copy.deepcopy(m.state_dict()) for m in models]
    stack = MLPStack.from_models(models)
    for original, exported in zip(models, stack.to_models()):
        for key, value in original.state_dict().items():
            assert torch.equal(value, exported.state_dict()[key]), key
    train_stack(stack, data64, steps=15, batch_size=25, lrs=0.5, progress=False)
    for state, model in zip(before, models):           # the source models are untouched
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    x = data64.x_test[:40]
    logits = stack.forward(x, training=False)
    for k, model in enumerate(stack.to_models()):
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(logits[k], model(x), rtol=1e-12, atol=1e-12)
        assert int(model.norm1.num_batches_tracked) == 0   # not tracked by the stack
        assert not torch.equal(model.norm1.running_mean, torch.zeros(12))


def test_image_inputs_are_flattened(data64):
    models = _models("none", "relu", [0.2])
    images = dataclasses.replace(data64, x_train=data64.x_train.reshape(-1, 1, 8, 8),
                                 x_test=data64.x_test.reshape(-1, 1, 8, 8))
    kw = dict(steps=5, batch_size=10, lrs=0.1, progress=False)
    a = train_stack(MLPStack.from_models(models), images, **kw)[0]
    b = train_stack(MLPStack.from_models(models), data64, **kw)[0]
    _assert_same_history(a, b, rtol=0)


def test_bad_models_and_arguments_are_rejected(data64):
    with pytest.raises(ValueError, match="MLPStack.from_models: models must be Linear"):
        MLPStack.from_models([make_mlp(64, hidden=(8,), dropout=0.5)])
    with pytest.raises(ValueError, match=r"models\[1\] must be the same layers"):
        MLPStack.from_models([make_mlp(64, hidden=(8,)), make_mlp(64, hidden=(9,))])
    with pytest.raises(ValueError, match="non-empty sequence"):
        MLPStack.from_models([])
    with pytest.raises(TypeError, match="nn.Sequential"):
        MLPStack.from_models([torch.nn.Linear(3, 2)])
    stack = MLPStack.from_models(_models("none", "relu", [0.1, 0.1]))
    with pytest.raises(ValueError, match=r"train_stack: lrs must be one value per member \(2\)"):
        train_stack(stack, data64, steps=2, batch_size=8, lrs=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="lrs must be positive finite floats, got -1"):
        train_stack(stack, data64, steps=2, batch_size=8, lrs=[0.1, -1.0])
    with pytest.raises(ValueError, match="seeds must be non-negative ints"):
        train_stack(stack, data64, steps=2, batch_size=8, lrs=0.1, seeds=[0, -3])
    with pytest.raises(ValueError, match="batch_size must be at most"):
        train_stack(stack, data64, steps=2, batch_size=10_000, lrs=0.1)
    with pytest.raises(ValueError, match=r"MLPStack.forward: x must be shape \(B, D\)"):
        stack.forward(torch.zeros(3, 4, 5, 6, dtype=torch.float64))
