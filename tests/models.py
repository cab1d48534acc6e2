"""Models for tests and benchmarks that fit a pipeline themselves instead of running `train()`."""

from __future__ import annotations

from gender.card import CandidateResult, ModelCard, Slot, Training
from gender.trained import Model, served_pipeline


def wrap_model(pipeline, base_rate: float, slot: str = "treatment", name: str = "boosted"):
    """A `Model` around a pipeline fitted here, without `train()`: no calibration, the threshold
    at the base rate (so both answers occur), and a card holding only what serving reads."""
    card = ModelCard.model_construct(  # unvalidated on purpose: no cross-validation was run
        slots={slot: Slot.model_construct(candidate=name, label=name, threshold=base_rate, sha256="0" * 64)},
        candidates={name: CandidateResult.model_construct(auc_mean=float("nan"))},
        training=Training.model_construct(male_share=base_rate),
    )
    return Model(served_pipeline(pipeline, None, base_rate), card, slot)


def fitted_model(pipeline, frame, y, slot: str, name: str) -> Model:
    """A `Model` around `pipeline` fitted here on (frame, y), without `train()`'s cross-validation."""
    return wrap_model(pipeline.fit(frame, y), float(y.mean()), slot, name)
