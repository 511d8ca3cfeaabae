"""Tests for bncourse.lab.training: reproducibility, data order, probes, divergence."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_cnn, make_mlp, weight_layers
from bncourse.lab.training import (
    ActivationProbe,
    History,
    evaluate,
    grad_norms,
    moments,
    percentiles,
    train,
    weight_norms,
)

B = 32


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.fixture
def one_thread():
    """Manual re-computations run on one thread, like train(), so results agree bitwise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mlp(bn="none", **kw):
    kw.setdefault("hidden", (16, 16, 16))
    return make_mlp(64, bn=bn, init_scale=0.3, seed=1, **kw)


def _batch_indices(n: int, seed: int, batch_size: int, step: int) -> torch.Tensor:
    """Independent re-derivation of the documented order: a fresh randperm per epoch from
    torch.Generator(seed), n // batch_size full batches per epoch."""
    gen = torch.Generator().manual_seed(seed)
    per_epoch = n // batch_size
    perm = None
    for _ in range(step // per_epoch + 1):
        perm = torch.randperm(n, generator=gen)
    i = step % per_epoch
    return perm[i * batch_size:(i + 1) * batch_size]


def _run(data, model, **kw):
    kw.setdefault("steps", 20)
    kw.setdefault("batch_size", B)
    kw.setdefault("lr", 0.3)
    kw.setdefault("eval_every", 10)
    kw.setdefault("progress", False)
    return train(model, data, **kw)


def test_same_seed_gives_bitwise_identical_histories(data):
    probes = {"p": percentiles("act2"), "g": grad_norms()}
    kw = dict(seed=3, probes=probes, record_every=5)
    a = _run(data, _mlp("before", dropout=0.2), **kw)
    b = _run(data, _mlp("before", dropout=0.2), **kw)
    assert isinstance(a, History) and a.equals(b)
    assert np.array_equal(a.loss, b.loss) and np.array_equal(a.records["p"], b.records["p"])
    c = _run(data, _mlp("before", dropout=0.2), seed=4, probes=probes, record_every=5)
    assert not np.array_equal(a.loss, c.loss)


def test_same_model_weights_after_identical_runs(data):
    m1, m2 = _mlp("before"), _mlp("before")
    _run(data, m1, seed=2)
    _run(data, m2, seed=2)
    for p, q in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(p, q)


def test_data_order_is_the_same_for_every_model_and_as_documented(data):
    def batch_x(model, batch):
        return batch[0].numpy().copy()

    def batch_y(model, batch):
        return batch[1].numpy().copy()

    runs = [_run(data, model, steps=50, seed=7, probes={"x": batch_x, "y": batch_y},
                 record_every=1)
            for model in (_mlp("none"), _mlp("before"), _mlp("after", dropout=0.5),
                          make_mlp(64, hidden=(5,), activation="relu", seed=99))]
    for h in runs[1:]:
        np.testing.assert_array_equal(h.records["x"], runs[0].records["x"])
        np.testing.assert_array_equal(h.records["y"], runs[0].records["y"])
    for step in (0, 1, data.n_train // B, 49):  # first batch, second, next epoch, last
        idx = _batch_indices(data.n_train, 7, B, step)
        np.testing.assert_array_equal(runs[0].records["x"][step], data.x_train[idx].numpy())
        np.testing.assert_array_equal(runs[0].records["y"][step], data.y_train[idx].numpy())


def test_eval_and_record_grids(data):
    h = _run(data, _mlp(), steps=25, eval_every=10, probes={"g": grad_norms()},
             record_every=7)
    np.testing.assert_array_equal(h.steps, [0, 10, 20, 25])
    np.testing.assert_array_equal(h.record_steps, [0, 7, 14, 21])
    assert h.loss.shape == (25,) and h.records["g"].shape == (4, 4)
    assert h.test_accuracy.shape == h.train_loss.shape == (4,)
    assert h.config["lr"] == 0.3 and h.config["batch_size"] == B and h.seconds > 0
    only_ends = _run(data, _mlp(), steps=5, eval_every=None)
    np.testing.assert_array_equal(only_ends.steps, [0, 5])


def test_evaluation_matches_a_manual_computation(data, one_thread):
    model = _mlp("before")
    untrained = copy.deepcopy(model)
    h = _run(data, model, steps=10)
    with torch.no_grad():
        logits = untrained.eval()(data.x_test)
        acc0 = (logits.argmax(1) == data.y_test).double().mean().item()
        loss0 = F.cross_entropy(logits, data.y_test).item()
    assert h.test_accuracy[0] == acc0 and h.test_loss[0] == loss0
    assert evaluate(model, data.x_test, data.y_test) == (h.test_loss[-1], h.test_accuracy[-1])
    assert model.training  # evaluate restores the mode
    assert h.final_test_accuracy == h.test_accuracy[-1]
    assert h.final_train_accuracy == h.train_accuracy[-1]


def _hooked_forward(model, x, name, where):
    captured = {}

    def hook(module, inputs, output):
        captured["z"] = (inputs[0] if where == "input" else output).detach()

    handle = model.get_submodule(name).register_forward_hook(hook)
    model.train()
    out = model(x)
    handle.remove()
    return out, captured["z"]


@pytest.mark.parametrize("bn", ["none", "before"])
def test_activation_probes_match_manual_computation(data, bn, one_thread):
    model = _mlp(bn)
    fresh = copy.deepcopy(model)
    probes = {"p_all": percentiles("act3"), "p_unit": percentiles("act3", q=(5, 50, 95), unit=2),
              "m": moments("act1", where="output"),
              "abs": ActivationProbe(model.fc2, lambda z: z.abs().sum(dim=0).numpy(),
                                     where="input")}
    h = _run(data, model, steps=12, seed=5, probes=probes, record_every=6)
    assert h.records["p_all"].shape == (2, 3) and h.records["abs"].shape == (2, 16)

    # Record step 0: the fresh weights, the first mini-batch, training-mode forward.
    x0 = data.x_train[_batch_indices(data.n_train, 5, B, 0)]
    _, z = _hooked_forward(fresh, x0, "act3", "input")
    np.testing.assert_array_equal(h.records["p_all"][0],
                                  np.percentile(z.double().numpy().ravel(), [15, 50, 85]))
    np.testing.assert_array_equal(h.records["p_unit"][0],
                                  np.percentile(z[:, 2].double().numpy(), [5, 50, 95]))
    _, a1 = _hooked_forward(copy.deepcopy(fresh), x0, "act1", "output")
    a1 = a1.double().numpy().ravel()
    np.testing.assert_array_equal(h.records["m"][0], [a1.mean(), a1.std()])

    # Record step 6: weights after 6 updates (same seed, same data order), batch number 6.
    after6 = copy.deepcopy(fresh)
    _run(data, after6, steps=6, seed=5)
    x6 = data.x_train[_batch_indices(data.n_train, 5, B, 6)]
    _, z6 = _hooked_forward(after6, x6, "act3", "input")
    np.testing.assert_array_equal(h.records["p_all"][1],
                                  np.percentile(z6.double().numpy().ravel(), [15, 50, 85]))
    _, f2 = _hooked_forward(copy.deepcopy(after6), x6, "fc2", "input")
    np.testing.assert_array_equal(h.records["abs"][1], f2.abs().sum(dim=0).numpy())


def test_grad_and_weight_norm_probes_match_manual_computation(data, one_thread):
    model = _mlp("before")
    fresh = copy.deepcopy(model)
    h = _run(data, model, steps=3, seed=8, probes={"g": grad_norms(), "gb": grad_norms("bias"),
                                                   "w": weight_norms()}, record_every=3)
    idx = _batch_indices(data.n_train, 8, B, 0)
    fresh.train()
    F.cross_entropy(fresh(data.x_train[idx]), data.y_train[idx]).backward()
    layers = weight_layers(fresh)
    np.testing.assert_array_equal(
        h.records["g"][0], [torch.linalg.vector_norm(m.weight.grad).item() for _, m in layers])
    np.testing.assert_array_equal(
        h.records["gb"][0], [torch.linalg.vector_norm(m.bias.grad).item() for _, m in layers])
    np.testing.assert_array_equal(
        h.records["w"][0], [torch.linalg.vector_norm(m.weight.detach()).item() for _, m in layers])


def test_probes_cannot_change_the_training_run(data):
    def vandal(model, batch):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(3.0)
                if p.grad is not None:
                    p.grad.zero_()
        model.train()
        model(torch.randn(40, 64))  # moves BN running stats, consumes the global RNG
        model.eval()
        torch.set_grad_enabled(False)
        return 0.0

    plain = _run(data, _mlp("before", dropout=0.3), seed=1)
    vandalized = _run(data, _mlp("before", dropout=0.3), seed=1, probes={"v": vandal},
                      record_every=2)
    assert torch.is_grad_enabled()
    for name in ("loss", "train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(vandalized, name))


def test_training_leaves_the_global_rng_alone(data):
    state = torch.get_rng_state()
    _run(data, _mlp(dropout=0.5), steps=5)
    assert torch.equal(state, torch.get_rng_state())


def test_divergence_is_detected_and_padded(data):
    model = make_mlp(64, hidden=(64, 64), activation="relu", init_scale=1.0, seed=0)
    h = _run(data, model, steps=200, lr=1e4, eval_every=50, probes={"g": grad_norms()},
             record_every=10)
    assert h.diverged and h.diverged_at is not None and h.diverged_at < 200
    t = h.diverged_at
    assert not np.isfinite(h.loss[t]) and np.all(np.isfinite(h.loss[:t]))
    assert np.all(np.isnan(h.loss[t + 1:]))
    assert h.steps.shape == (5,) and h.test_accuracy.shape == (5,)
    assert np.all(np.isnan(h.test_accuracy[h.steps > t]))
    assert h.records["g"].shape[0] == 20 and np.all(np.isnan(h.records["g"][-1]))
    assert np.isnan(h.final_test_accuracy) and np.isnan(h.final_train_accuracy)


def test_max_loss_counts_as_divergence(data):
    h = _run(data, _mlp(), steps=10, max_loss=1e-3)
    assert h.diverged and h.diverged_at == 0 and h.loss[0] > 1e-3
    assert not _run(data, _mlp(), steps=10).diverged


def test_optimizers_and_cnn(data):
    images = data.as_images()
    h = _run(images, make_cnn(channels=(4, 8), norm="bn", seed=0), steps=10, optimizer="adam",
             lr=1e-2)
    assert not h.diverged and h.config["optimizer"] == "adam"
    custom = _run(data, _mlp(), steps=10,
                  optimizer=lambda params: torch.optim.SGD(params, lr=0.3))
    plain = _run(data, _mlp(), steps=10)
    np.testing.assert_array_equal(custom.loss, plain.loss)
    momentum = _run(data, _mlp(), steps=10, momentum=0.9)
    assert not np.array_equal(momentum.loss, plain.loss)


def test_progress_bar_goes_to_stderr(data, capsys):
    _run(data, _mlp(), steps=5, progress=True, desc="demo")
    captured = capsys.readouterr()
    assert "demo" in captured.err and captured.out == ""


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(steps=0), ValueError, "train: steps must be an int >= 1"),
    (dict(batch_size=5000), ValueError, "train: batch_size must be at most the 1347"),
    (dict(lr=0.0), ValueError, "train: lr must be a positive finite float"),
    (dict(lr=float("nan")), ValueError, "train: lr"),
    (dict(optimizer="rmsprop"), ValueError, "train: optimizer must be 'sgd', 'adam'"),
    (dict(probes={"p": 3}), TypeError, "train: probes\\['p'\\] must be a callable"),
    (dict(probes={"p": percentiles("fc9")}), ValueError, "ActivationProbe: module must be"),
    (dict(seed=-1), ValueError, "train: seed must be an int >= 0"),
])
def test_bad_input(data, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _run(data, _mlp(), **kwargs)


def test_bad_data_and_model(data):
    with pytest.raises(TypeError, match="train: data must be a bncourse.lab.data.Dataset"):
        train(_mlp(), (data.x_train, data.y_train), steps=1, batch_size=4, lr=0.1)
    with pytest.raises(TypeError, match="train: model must be a torch.nn.Module"):
        train(lambda x: x, data, steps=1, batch_size=4, lr=0.1)


def test_thread_setting_is_restored(data):
    before = torch.get_num_threads()
    _run(data, _mlp(), steps=3, num_threads=1)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="train: num_threads must be an int >= 1"):
        _run(data, _mlp(), steps=3, num_threads=0)
