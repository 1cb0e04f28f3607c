"""Model flavors: how a model is written into a model directory and read back.

A model directory holds the model's files and ``sweep-model.json``
(:class:`ModelInfo`): the flavor and what its loader needs, every file with its size
and SHA-256, the Python and package versions it was saved with, and an optional input
example and signature. Flavors:

- ``sklearn`` (scikit-learn estimators) and ``joblib`` (anything joblib pickles);
- ``pytorch`` (``state_dict`` + the module's import path and ``init_kwargs``),
  ``pytorch-module`` (whole module, ``torch.save``), ``torchscript``;
- ``onnx`` (an ``onnx.ModelProto`` or a ``.onnx`` file);
- ``files``: a file or directory the training code wrote, stored as is.

A ``str`` or ``Path`` is always a path, never pickled. Saving is atomic (see
``_save``); heavy packages are imported only by the flavor that needs them, and a
missing one is named in the error.
"""

from sweep.flavors._base import require
from sweep.flavors._load import load_model_dir, model_path, read_model_info
from sweep.flavors._meta import MODEL_META, ModelFile, ModelInfo
from sweep.flavors._registry import FLAVORS, detect
from sweep.flavors._save import save_model

__all__ = [
    "require",
    "FLAVORS",
    "MODEL_META",
    "ModelFile",
    "ModelInfo",
    "detect",
    "load_model_dir",
    "model_path",
    "read_model_info",
    "save_model",
]
