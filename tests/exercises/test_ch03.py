"""Tests for bncourse.exercises.ch03: plain solutions pass; the module's script is torch's."""

import numpy as np

from bncourse.exercises import get_exercise


def _axes(x):
    return (0, *range(2, x.ndim))


def _view(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def ewa_bias_corrected(values, beta):
    v, out = np.zeros(values.shape[1:]), np.empty(values.shape, dtype=np.float64)
    for t, theta in enumerate(values, 1):
        v = beta * v + (1 - beta) * theta
        out[t - 1] = v / (1 - beta ** t)
    return out.astype(values.dtype)


def update_running_stats(running_mean, running_var, x, momentum):
    ax, m = _axes(x), x.size // x.shape[1]
    mean, var = x.mean(axis=ax), x.var(axis=ax) * m / (m - 1)
    return ((1 - momentum) * running_mean + momentum * mean).astype(x.dtype), \
        ((1 - momentum) * running_var + momentum * var).astype(x.dtype)


def bn_forward_eval(x, running_mean, running_var, gamma, beta, eps):
    x_hat = (x - _view(running_mean, x)) / np.sqrt(_view(running_var, x) + eps)
    return (_view(gamma, x) * x_hat + _view(beta, x)).astype(x.dtype)


class BatchNorm:
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.eps, self.momentum = eps, momentum
        self.weight, self.bias = np.ones(num_features), np.zeros(num_features)
        self.running_mean, self.running_var = np.zeros(num_features), np.ones(num_features)
        self.num_batches_tracked = 0
        self.training = True

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        ax = _axes(x)
        if self.training:
            mean, var = x.mean(axis=ax), x.var(axis=ax)
            m = x.size // x.shape[1]
            self.num_batches_tracked += 1
            w = 1 / self.num_batches_tracked if self.momentum is None else self.momentum
            self.running_mean = (1 - w) * self.running_mean + w * mean
            self.running_var = (1 - w) * self.running_var + w * var * m / (m - 1)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - _view(mean, x)) / np.sqrt(_view(var, x) + self.eps)
        return _view(self.weight, x) * x_hat + _view(self.bias, x)


SOLUTIONS = {"ch03-ewa-bias-corrected": ewa_bias_corrected,
             "ch03-update-running-stats": update_running_stats,
             "ch03-bn-forward-eval": bn_forward_eval,
             "ch03-batchnorm-module": BatchNorm}


def test_module_scripts_switch_modes_and_cover_momentum_none_and_new_parameters():
    ex = get_exercise("ch03-batchnorm-module")
    cases = ex.cases("all")
    ops = [{s[0] for s in c.args["steps"]} for c in cases]
    assert all({"train", "forward", "eval"} <= o or "train_false" in o for o in ops)
    assert any("affine" in o for o in ops) and any("train_false" in o for o in ops)
    assert {c.args["momentum"] for c in cases} >= {None, 0.1, 1.0}
    # the record after every call: the eval forward leaves the buffers alone in torch too
    case = ex.cases("visible")[0]
    records = ex.expected_output(case)
    steps = [s[0] for s in case.args["steps"]]
    after_eval = records[1 + steps.index("eval") + 1]
    before_eval = records[1 + steps.index("eval") - 1]
    assert after_eval["num_batches_tracked"] == before_eval["num_batches_tracked"] == 2
    np.testing.assert_array_equal(after_eval["running_var"], before_eval["running_var"])
