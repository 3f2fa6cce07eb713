"""The model format: a semtune generator as an MLflow pyfunc model, logged "from code".

Its files are the generator's ``generator.pt`` (weights + the config that rebuilds the network,
read with ``weights_only=True``) and a copy of the ``semtune`` package; nothing is unpickled when
it is loaded, and its input signature accepts any image size.
"""

from __future__ import annotations

import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import Schema, TensorSpec
from torch import nn

from semtune.tracking.store import open_client, use_tracking_uri
from semtune.tracking.tags import GENERATOR_ARTIFACT, TAG_STUDY, TAG_TRIAL

__all__ = ["GeneratorModel", "log_generator_model"]

_MODEL_CODE = '''"""semtune generator as an MLflow pyfunc model, logged from code (no pickle).

The weights and the config that rebuilds the network are the artifact "generator"
(generator.pt, read with torch.load(weights_only=True)); the semtune package that defines the
network ships with the model (code/semtune).
"""

import mlflow

from semtune.tracking.pyfunc import GeneratorModel

mlflow.models.set_model(GeneratorModel())
'''

# What the copied semtune package needs to rebuild and run a generator (pinned to this process's
# versions); training-only dependencies (Ray, Optuna) are left out.
_REQUIREMENTS = (
    "torch",
    "kornia",
    "numpy",
    "scipy",
    "pillow",
    "scikit-image",
    "tifffile",
    "pyyaml",
    "tqdm",
    "mlflow",
)


def _requirements() -> list[str]:
    reqs = []
    for name in _REQUIREMENTS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        reqs.append(f"{name}=={version.split('+')[0]}")
    return reqs


def _signature() -> ModelSignature:
    # -1 everywhere but the channel: any batch, any height, any width
    spec = TensorSpec(np.dtype("float32"), (-1, 1, -1, -1))
    return ModelSignature(inputs=Schema([spec]), outputs=Schema([spec]))


class GeneratorModel(PythonModel):
    """pyfunc wrapper of a semtune generator: ``predict`` restores (B, 1, H, W) float32 arrays
    in [0, 1] of any size (tiled, like ``python -m semtune.enhance``)."""

    def __init__(self) -> None:
        self.generator: nn.Module | None = None

    def load_context(self, context: PythonModelContext) -> None:
        from semtune.train.state import load_generator

        self.generator, _ = load_generator(context.artifacts[GENERATOR_ARTIFACT], "cpu")

    # np.ndarray is the one hint MLflow takes without deriving a schema from it (the explicit
    # signature, any size, is the contract) and without converting the input
    def predict(
        self,
        context: PythonModelContext,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        from semtune.inference import enhance_image

        if self.generator is None:
            raise RuntimeError("GeneratorModel used before load_context")
        x = np.asarray(model_input, dtype=np.float32)
        squeeze = x.ndim == 2
        if squeeze:
            x = x[None, None]
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) or (H, W) float32 in [0, 1], got {x.shape}")
        t = torch.from_numpy(np.ascontiguousarray(x))
        out = torch.cat([enhance_image(self.generator, t[i : i + 1]) for i in range(len(t))])
        y = out.cpu().numpy().astype(np.float32)
        return y[0, 0] if squeeze else y


def log_generator_model(
    uri: str, run_id: str, generator_path: str | Path, name: str = "model"
) -> dict[str, str]:
    """Log ``generator_path`` as a pyfunc model (from code, no pickle) into run ``run_id``.

    Returns:
        ``{"model_id", "model_uri"}`` of the logged model (``models:/m-...``).
    """
    import semtune
    from semtune.train.state import load_generator

    generator_path = Path(generator_path)
    load_generator(generator_path, "cpu")  # a broken file fails here, not on the user's machine
    package = Path(semtune.__file__).resolve().parent
    client = open_client(uri)
    run = client.get_run(run_id)
    # created here rather than by Model.log, which would file it under the default experiment
    # (it looks at the fluent "active" experiment, not at the run's)
    model = client.create_logged_model(
        run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        params={k: v for k, v in run.data.params.items()},
        tags={
            TAG_STUDY: run.data.tags.get(TAG_STUDY, ""),
            TAG_TRIAL: run.data.tags.get(TAG_TRIAL, ""),
        },
    )
    with tempfile.TemporaryDirectory(prefix="semtune-model-") as tmp, warnings.catch_warnings():
        # the signature is given, so MLflow's notes about type hints and input examples are moot
        warnings.simplefilter("ignore", UserWarning)
        code = Path(tmp) / "semtune_generator_model.py"
        code.write_text(_MODEL_CODE)
        with use_tracking_uri(uri):
            info = mlflow.models.Model.log(
                artifact_path=None,
                name=name,
                flavor=mlflow.pyfunc,
                flavor_name="pyfunc.ModelFromCode",
                run_id=run_id,
                model_id=model.model_id,
                python_model=str(code),
                artifacts={GENERATOR_ARTIFACT: str(generator_path)},
                code_paths=[str(package)],
                signature=_signature(),
                pip_requirements=_requirements(),
                await_registration_for=0,
            )
    return {"model_id": str(info.model_id), "model_uri": f"models:/{info.model_id}"}


# -- loading and managing registered models -------------------------------------------------------
