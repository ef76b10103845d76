"""The trainer's optional gradient norms: the norms of the very gradients each step used."""

from __future__ import annotations

import numpy as np

import propscope


def test_grad_norms_are_the_norms_of_the_step_gradients():
    s = propscope.open_session("xor", dtype="float64")
    s.run_to_end()
    expected = {name: float(np.linalg.norm(s.grad(name))) for name in ("W1", "b1", "W2", "b2")}
    history = s.train(3, grad_norms=True)
    assert set(history.grad_norms) == set(expected)
    for name, value in expected.items():
        assert history.grad_norms[name][0] == np.float64(value) or abs(history.grad_norms[name][0] - value) < 1e-12
        assert len(history.grad_norms[name]) == 3
    assert history[1].grad_norms == {name: v[1] for name, v in history.grad_norms.items()}


def test_grad_norms_are_off_by_default_and_averaged_over_mini_batches():
    s = propscope.open_session("classifier")
    assert s.train(2).grad_norms == {} and s.history[0].grad_norms == {}
    history = s.train(2, batch_size=30, grad_norms=True)
    assert all(len(v) == 2 and all(x > 0 for x in v) for v in history.grad_norms.values())
