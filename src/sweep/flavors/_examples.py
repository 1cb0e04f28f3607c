"""Input examples as JSON, and the signature they imply."""

from __future__ import annotations

import json
from typing import Any

from sweep.errors import ModelSaveError


def example_to_json(example: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``example`` (an array, a tensor, a DataFrame or JSON data) as JSON data, and the
    signature of its inputs where the type says it (None for plain JSON)."""
    if hasattr(example, "detach") and hasattr(example, "numpy"):  # a torch tensor
        example = example.detach().cpu().numpy()
    if hasattr(example, "dtype") and hasattr(example, "shape") and hasattr(example, "tolist"):
        shape = list(example.shape)
        tensor = {"type": "tensor", "dtype": str(example.dtype), "shape": [-1, *shape[1:]]}
        data = {"type": "ndarray", "dtype": str(example.dtype), "shape": shape}
        return {**data, "data": example.tolist()}, {"inputs": [tensor]}
    if hasattr(example, "columns") and hasattr(example, "dtypes"):  # a pandas DataFrame
        columns = [{"name": str(c), "dtype": str(t)} for c, t in example.dtypes.items()]
        data = json.loads(example.to_json(orient="split", index=False))
        return {"type": "dataframe", **data}, {"inputs": columns}
    try:
        json.dumps(example)
    except (TypeError, ValueError) as exc:
        raise ModelSaveError(
            f"cannot keep the input example ({type(example).__name__}): {exc}; pass a numpy "
            "array, a pandas DataFrame, a tensor or JSON data (lists, dicts, numbers)"
        ) from exc
    return {"type": "json", "data": example}, None
