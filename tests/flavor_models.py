"""Models for the flavor tests, defined in an importable module (as a project's own
model code is) so that a ``pytorch`` state_dict loads back in another process."""

from __future__ import annotations

from typing import Any

try:
    import torch
except ImportError:  # the torch tests are skipped then
    torch = None


if torch is not None:

    class TinyNet(torch.nn.Module):
        def __init__(self, width: int = 3) -> None:
            super().__init__()
            self.width = width
            self.linear = torch.nn.Linear(width, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) * 2


def onnx_affine(scale: float = 2.0, shift: float = 1.0) -> Any:
    """A small ONNX graph: y = x * scale + shift, x a float tensor of shape [N, 2]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "shift"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            helper.make_tensor("scale", TensorProto.FLOAT, [1], [scale]),
            helper.make_tensor("shift", TensorProto.FLOAT, [1], [shift]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model
