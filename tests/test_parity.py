"""The one parity check every converter uses: max |expected − ONNX| on a named output."""

from __future__ import annotations

import numpy as np
import pytest

from slimserve.parity import onnx_max_abs_diff, run_onnx


@pytest.fixture(scope="module")
def doubling_graph() -> bytes:
    """An ONNX graph with input x and outputs same = x, double = 2x."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2]) for n in ("same", "double")]
    nodes = [helper.make_node("Identity", ["x"], ["same"]), helper.make_node("Add", ["x", "x"], ["double"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_diff_is_measured_on_the_named_output(doubling_graph):
    x = np.array([[1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    assert onnx_max_abs_diff(doubling_graph, {"x": x}, 2 * x, "double") == 0.0
    assert onnx_max_abs_diff(doubling_graph, {"x": x}, 2 * x, "same") == 4.0


def test_default_output_is_the_first_and_a_bare_array_feeds_the_only_input(doubling_graph, tmp_path):
    path = tmp_path / "g.onnx"
    path.write_bytes(doubling_graph)
    x = np.array([[0.5, 1.5]], dtype=np.float32)
    assert onnx_max_abs_diff(path, x, x.astype(np.float64) + 0.25) == 0.25
    assert [a.tolist() for a in run_onnx(path, x)] == [[[0.5, 1.5]], [[1.0, 3.0]]]
