"""ONNX conformance: propscope as an ONNX backend, measured by ONNX's own backend node tests.

`onnx.backend.test.BackendTest` builds about 1,900 node test cases (one operator, inputs, expected
outputs). We select the cases of the operators a float network uses (OPERATORS, by family), including
their `_expanded` variants (the same operator written as its function body of primitive ops), exclude by
pattern what is out of scope for a float training debugger (EXCLUDED, each with its reason), and run the
rest through `propscope.debugger.onnx_backend` on the NumPy and the torch backends. Known failures are
listed with their reason (EXPECTED_FAILURES); at least 95% must pass, and the README's conformance line
is computed here and must equal the one in the README.
"""

from __future__ import annotations

import re
import unittest
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest

onnx = pytest.importorskip("onnx")

from propscope.debugger.onnx_backend import NumpyOnnxBackend, TorchOnnxBackend  # noqa: E402
from propscope.graph.readers.onnx_backend import OnnxRunError, one_line  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"
MIN_PASS_RATE = 0.95
MIN_SELECTED = 400

# The operators a float network uses, by family (the README's figures follow this grouping).
OPERATORS: dict[str, tuple[str, ...]] = {
    "activations": ("Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "HardSigmoid",
                    "HardSwish", "Softplus", "Softsign", "Mish", "Gelu", "Erf", "Swish", "ThresholdedRelu",
                    "Softmax", "LogSoftmax", "Hardmax", "Shrink", "SwiGLU"),
    "elementwise": ("Add", "Sub", "Mul", "Div", "Pow", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Sin",
                    "Cos", "Floor", "Ceil", "Round", "Sign", "Max", "Min", "Sum", "Mean", "Clip", "Where",
                    "IsNaN", "IsInf", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"),
    "reductions": ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                   "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "CumSum", "CumProd"),
    "matmul": ("Gemm", "MatMul", "Einsum"),
    "conv and pools": ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                       "LpPool", "CausalConvWithState"),
    "norms": ("BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
              "RMSNormalization", "LRN", "MeanVarianceNormalization", "LpNormalization"),
    "shape": ("Reshape", "Transpose", "Concat", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather",
              "GatherElements", "Expand", "Split", "Tile", "Pad", "Identity", "Trilu", "ScatterND",
              "ScatterElements", "Scatter", "DepthToSpace", "SpaceToDepth", "EyeLike", "ReverseSequence",
              "CenterCropPad"),
    "losses": ("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"),
    "recurrent": ("LSTM", "GRU", "RNN"),
    "rotary and linear attention": ("RotaryEmbedding", "LinearAttention"),
    "regularization": ("Dropout",),
    "sampling": ("GridSample", "AffineGrid"),
    "quantization": ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
                     "QLinearConv", "QLinearMatMul"),
}

# Cases of the selected operators that are out of scope for a float training debugger.
EXCLUDED: tuple[tuple[str, str], ...] = (
    (r"^test_training_dropout(?!_zero_ratio)", "random: training-mode Dropout draws its mask from a random source"),
    (r"^test_identity_(sequence|opt)$", "sequence and optional types: propscope steps tensors"),
    (r"^test_(de)?quantizelinear_(e4m3fn|e5m2|float4e2m1|u?int4|u?int2|blocked)",
     "float8, float4, 4- and 2-bit grids and blocked scales (weight-only compression formats): propscope's grids are "
     "8-, 16- and 32-bit integers"),
    # a quantization case's integer type names its grid, not integer-only arithmetic (those cases are selected)
    (r"^(?!test_(de)?quantizelinear|test_qlinear).*_(int8|uint8|int16|uint16|int32|uint32|int64|uint64)(_|$)",
     "integer-only arithmetic: no gradient, nothing to step (propscope folds integer plumbing at load time)"),
    (r"^test_(div|mod|pow|clip|max|min|sum|mean)_.*int", "integer-only arithmetic: no gradient, nothing to step"),
    (r"_bool$", "boolean-only data: no gradient, nothing to step"),
    (r"^test_linear_attention_.*_expanded$", "LinearAttention's function body is a Scan over the time steps: control "
     "flow, which propscope does not step (the operator itself is read unrolled, one step after the other)"),
)

# Selected cases known to fail, with the reason; each one counts against the 95%.
EXPECTED_FAILURES: dict[str, str] = {
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's second output (flat argmax indices) is not built",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's second output (flat argmax indices) is not built",
    "test_lstm_with_peepholes": "LSTM peepholes: PyTorch's LSTM cell (the catalog's) has none",
    "test_training_dropout_zero_ratio": "Dropout's ratio given at run time: whether it drops is decided at load time",
    "test_training_dropout_zero_ratio_mask": "Dropout's ratio given at run time: whether it drops is decided at "
                                             "load time",
}


def _base(name: str) -> str:
    return re.sub(r"_expanded(_ver\d+)?$", "", name)


@cache
def node_cases() -> dict[str, Any]:
    """ONNX's node test cases by name (built in memory by onnx from its operator definitions)."""
    from onnx.backend.test.loader import load_node_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx's own generators overflow casts on purpose
        return {c.name: c for c in load_node_model_tests()}


@cache
def operator_of() -> dict[str, str]:
    """The operator each case tests: the single node of the case (of its base case, for `_expanded`)."""
    cases = node_cases()
    out = {}
    for name in cases:
        base = cases.get(_base(name), cases[name])
        ops = [n.op_type for n in base.model.graph.node]
        out[name] = ops[0] if len(set(ops)) == 1 else ops[-1]
    return out


def family_of(op: str) -> str | None:
    return next((f for f, ops in OPERATORS.items() if op in ops), None)


@cache
def selection() -> tuple[list[str], dict[str, str]]:
    """(the selected case names, the excluded ones with their reason)."""
    selected, excluded = [], {}
    for name, op in sorted(operator_of().items()):
        if family_of(op) is None:
            continue
        reason = next((why for pattern, why in EXCLUDED if re.search(pattern, name)), None)
        if reason:
            excluded[name] = reason
        else:
            selected.append(name)
    return selected, excluded


class _Outcomes(unittest.TestResult):
    """Each case's outcome as (passed, one line naming the operator and the reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, tuple[bool, str]] = {}

    @staticmethod
    def _case(test: Any) -> str:
        return re.sub(r"_cpu$", "", test._testMethodName)

    def addSuccess(self, test: Any) -> None:
        self.outcomes[self._case(test)] = (True, "")

    def addFailure(self, test: Any, err: Any) -> None:
        self.outcomes[self._case(test)] = (False, "wrong numbers: " + one_line(str(err[1]), 160))

    def addError(self, test: Any, err: Any) -> None:
        kind = "" if isinstance(err[1], OnnxRunError) else f"RAISED {type(err[1]).__name__}: "
        self.outcomes[self._case(test)] = (False, kind + one_line(str(err[1])))


@cache
def run_suite(kind: str) -> dict[str, tuple[bool, str]]:
    """Run onnx.backend.test.BackendTest over the selected cases on one propscope backend."""
    import onnx.backend.test

    backend = NumpyOnnxBackend if kind == "numpy" else TorchOnnxBackend
    selected, _ = selection()
    suite_runner = onnx.backend.test.BackendTest(backend, __name__)
    suite_runner.include("^(" + "|".join(re.escape(n) for n in selected) + ")_cpu$")
    result = _Outcomes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(
            suite_runner.test_cases["OnnxBackendNodeModelTest"])).run(result)
    return {n: result.outcomes[n] for n in selected if n in result.outcomes}


def figures(outcomes: dict[str, tuple[bool, str]]) -> str:
    """The README's conformance line: passed / selected, excluded, and passed / selected by family."""
    ops = operator_of()
    _, excluded = selection()
    parts = []
    for family in OPERATORS:
        names = [n for n in outcomes if family_of(ops[n]) == family]
        parts.append(f"{family} {sum(outcomes[n][0] for n in names)}/{len(names)}")
    passed = sum(ok for ok, _ in outcomes.values())
    return (f"ONNX conformance (onnx {onnx.__version__} backend node tests, NumPy backend): {passed} of "
            f"{len(outcomes)} selected cases pass, {len(excluded)} excluded; by family: {', '.join(parts)}.")


def test_selection_covers_the_float_operators() -> None:
    selected, excluded = selection()
    assert len(selected) >= MIN_SELECTED, f"only {len(selected)} cases selected"
    ops = {operator_of()[n] for n in selected}
    missing = [op for family in OPERATORS.values() for op in family if op not in ops]
    assert not missing, f"no node test selected for {missing}"
    assert all(reason for reason in excluded.values())
    assert set(EXPECTED_FAILURES) <= set(selected), set(EXPECTED_FAILURES) - set(selected)


def _check(kind: str) -> dict[str, tuple[bool, str]]:
    outcomes = run_suite(kind)
    selected, _ = selection()
    assert len(outcomes) == len(selected), "every selected case ran"
    ops = operator_of()
    raised = [f"{n} [{ops[n]}]: {why}" for n, (ok, why) in outcomes.items() if why.startswith("RAISED")]
    assert not raised, "exceptions other than OnnxRunError left the backend:\n" + "\n".join(raised)
    unexpected = [f"{n} [{ops[n]}]: {why}" for n, (ok, why) in outcomes.items()
                  if not ok and n not in EXPECTED_FAILURES]
    assert not unexpected, f"{len(unexpected)} case(s) fail on {kind}:\n" + "\n".join(unexpected)
    now_pass = [n for n in EXPECTED_FAILURES if outcomes[n][0]]
    assert not now_pass, f"listed as failing but pass on {kind} (remove them): {now_pass}"
    passed = sum(ok for ok, _ in outcomes.values())
    assert passed >= MIN_PASS_RATE * len(outcomes), f"{passed} of {len(outcomes)} pass on {kind}"
    return outcomes


def test_conformance_numpy_backend() -> None:
    _check("numpy")


@pytest.mark.torch
def test_conformance_torch_backend() -> None:
    pytest.importorskip("torch")
    _check("torch")


def test_readme_states_the_measured_conformance() -> None:
    line = figures(run_suite("numpy"))
    text = README.read_text(encoding="utf-8")
    assert line in text, f"the README's conformance line should read:\n{line}"


def test_a_failing_case_names_operator_and_reason_in_one_line() -> None:
    case = node_cases()["test_lstm_with_peepholes"]
    with pytest.raises(OnnxRunError) as info:
        NumpyOnnxBackend.prepare(case.model).run(list(case.data_sets[0][0]))
    message = str(info.value)
    assert message.startswith("LSTM: ") and "peepholes" in message and "\n" not in message
