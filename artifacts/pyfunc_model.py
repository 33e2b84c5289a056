"""The MLflow model of every Persona version, logged as models-from-code: MLflow stores this file (no
pickled Python class, so no cloudpickle) with the fitted bundle as a plain pickle artifact and `models/`
as code. Loading needs only `models` and the libraries.

Serving takes `.bundle` from `mlflow.pyfunc.load_model(...).unwrap_python_model()` (artifacts.registry);
`predict` is the generic pyfunc view: segment, or calibrated probability and tier.
"""

import pickle

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

BUNDLE_ARTIFACT = "bundle"


class PersonaBundleModel(PythonModel):
    """Holds a `models` bundle: a ClassifierBundle, a SegmentationModel or a value model
    (`model_config["kind"]`)."""

    def load_context(self, context) -> None:  # type: ignore[no-untyped-def]
        # Written by training (training.mlflow_io.log_bundle) from objects of `models/` only.
        with open(context.artifacts[BUNDLE_ARTIFACT], "rb") as f:
            self.bundle = pickle.load(f)  # noqa: S301 - our own artifact, from the registry we trust
        self.kind = context.model_config["kind"]

    # The annotation tells MLflow the input is a frame (its schema comes from the logged signature).
    # Not postponed (no `from __future__ import annotations`): MLflow reads it from the live function.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]  # noqa: ARG002
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if self.kind == "segments":
            return pd.DataFrame({"segment": self.bundle.predict(frame)})
        if self.kind == "recommend":
            return self.bundle.predict(frame)
        if self.kind == "uplift":
            uplift, tier = self.bundle.score(frame)
            return pd.DataFrame({"uplift": uplift, "tier": tier})
        if self.kind == "clv":
            value = self.bundle.predict(frame)
            return pd.DataFrame({"value": value, "tier": self.bundle.tiers(value)})
        proba = self.bundle.predict_proba(frame)
        return pd.DataFrame({"probability": proba, "tier": self.bundle.tiers(proba)})


mlflow.models.set_model(PersonaBundleModel())
