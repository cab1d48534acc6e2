"""Model: how the candidates compared, where the threshold sits, and what was trained on."""

from datetime import timedelta

import pandas as pd
import streamlit as st

import ui
from gender import answers, artifact, metrics, plots, train

st.title("The model")

with ui.banners():
    model = ui.require_models().treatment
card = model.card
training, cv, slot = card.training, card.cv, model.entry
holdout = slot.holdout  # set when the candidates were compared on a sample
compared_on = (
    f"a stratified sample of **{cv.sessions:,}** of the {training.sessions:,} labelled sessions"
    if cv.sampled
    else f"all {training.sessions:,} labelled sessions"
)
st.markdown(
    f"**{model.label}** (`{model.model_id}`) was chosen among {len(card.candidates)} candidates by "
    f"{cv.folds}-fold stratified cross-validated ROC-AUC on {compared_on}; every candidate curve below is "
    "out of fold."
)
if holdout:
    st.markdown(
        f"The serving model was then fitted on {slot.fitted_sessions:,} sessions and measured on "
        f"**{holdout.sessions:,} held-out sessions** used neither to fit it nor to set its calibration and "
        f"threshold ({holdout.calibration_sessions:,} other held-out sessions did that): "
        f"**ROC-AUC {holdout.auc:.3f}**, balanced accuracy {slot.confusion.balanced_accuracy:.3f}. "
        "The threshold below is read off that held-out set."
    )

st.subheader("Candidates")
table = pd.DataFrame(
    [
        {
            "candidate": name,
            "ROC-AUC": result.auc_mean,  # beside the name: a narrow screen shows the first columns
            "± std": result.auc_std,
            "per fold": ", ".join(f"{auc:.3f}" for auc in result.auc_folds),
            "each fold fitted on": result.fold_fit_sessions,  # fewer than the others': a stratified sample
            "explainable": "yes" if result.explainable else "no (baseline)",
            "what": result.label,  # last: a long one cut the numbers after it
        }
        for name, result in card.candidates.items()
    ]
).sort_values("ROC-AUC", ascending=False)
st.dataframe(
    table,
    hide_index=True,
    key="candidates",
    row_height=70,  # above 4 rem a cell wraps: the description fits beside the numbers
    column_config={  # narrow numbers, so that more columns fit without scrolling sideways
        "ROC-AUC": st.column_config.NumberColumn(format="%.4f", width="small"),
        "± std": st.column_config.NumberColumn(format="%.4f", width="small"),
        "each fold fitted on": st.column_config.NumberColumn(
            format="localized",
            help="Sessions each fold's fit saw: fewer than the others' for a candidate fitted on a stratified sample",
        ),
        "what": st.column_config.TextColumn(width="medium"),
    },
)

st.subheader("Threshold")
stored = model.threshold
threshold = st.slider(
    "Call a session male when P(male) is at least",
    0.0,
    1.0,
    float(stored),  # exactly: the rates below then match the table of served models
    0.001,
    format="%.3f",
    key="threshold",
    help=f"The stored threshold, {stored:.3f}, maximises balanced accuracy "
    + ("on the held-out calibration sessions." if holdout else "out of fold."),
)
# The served model's own scores: held out when it was fitted beyond the compared sample, else out of fold.
if threshold == stored:  # exactly as measured, as the table below gives it (the curves keep fewer points)
    at, point = model.entry.confusion, stored
elif holdout:
    at, point = metrics.confusion_from_roc(holdout.roc, threshold, holdout.male, holdout.female)
else:
    at, point = metrics.confusion_from_roc(card.candidates[card.chosen].roc, threshold, training.male, training.female)
matrix_col, rates_col = ui.side_by_side("confusion_row", (3, 2), min_width=260)
with matrix_col:
    ui.chart(plots.confusion_heatmap(at.tn, at.fp, at.fn, at.tp), key="confusion")
with rates_col:
    st.metric("Balanced accuracy", f"{at.balanced_accuracy:.3f}")
    called_male = at.tp + at.fp  # none at the top of the slider: precision is then 0/0, not 0
    st.metric("Precision (men among those called men)", f"{at.precision:.3f}" if called_male else "n/a")
    st.metric("Recall (men found)", f"{at.recall:.3f}")
    st.caption(
        f"Stored threshold {stored:.3f} · shown at {threshold:.3f} (nearest curve point {point:.3f})"
        + ("" if called_male else " · nobody is called male here, so there is no precision to measure")
    )

roc_col, pr_col = ui.side_by_side("curves_row", (1, 1))
with roc_col:
    ui.chart(plots.roc_curves(card.candidates, card.chosen, threshold), key="roc")
with pr_col:
    ui.chart(plots.pr_curves(card.candidates, card.chosen, training.male_share), key="pr")

st.subheader("Training facts")
took = answers.duration_text(timedelta(seconds=round(card.seconds)))
# A row that wraps: five fixed columns cut their values on a narrow screen.
with st.container(horizontal=True, horizontal_alignment="distribute", key="training_facts"):
    st.metric("Labelled sessions", f"{training.sessions:,}", width="content")
    st.metric(
        "Male share",
        f"{training.male_share:.1%}",
        help=f"{training.male:,} male, {training.female:,} female",
        width="content",
    )
    st.metric(
        "Compared on",
        f"{cv.sessions:,}",
        help="a stratified sample of the labelled sessions" if cv.sampled else "every labelled session",
        width="content",
    )
    st.metric("Trained", f"{card.trained_at:%Y-%m-%d %H:%M} UTC", width="content")
    st.metric("Training time", took, width="content")

st.dataframe(
    pd.DataFrame(
        [
            {
                "slot": name,
                "model": entry.candidate,
                "ROC-AUC": card.quality(name)[1],
                "balanced accuracy": entry.confusion.balanced_accuracy,
                "threshold": entry.threshold,
                "final model fitted on": entry.fitted_sessions,
                "measured on": card.quality(name)[0],
            }
            for name, entry in card.slots.items()
        ]
    ),
    hide_index=True,
    key="slots",
    column_config={  # as the threshold and the rates above show them
        "ROC-AUC": st.column_config.NumberColumn(format="%.4f"),
        "balanced accuracy": st.column_config.NumberColumn(format="%.3f"),
        "threshold": st.column_config.NumberColumn(format="%.3f"),
        "final model fitted on": st.column_config.NumberColumn(
            format="localized", help="Sessions the served model was fitted on, after the comparison"
        ),
    },
)
longest = (  # the Predict page warns of a session beyond these
    f"  \nThe most views of a session trained on: {training.most_views:,}; "
    f"the longest one lasted {answers.duration_text(training.longest)}"
    if training.most_views is not None and training.longest is not None
    else ""
)
st.markdown(f"Database: {ui.shown(card.database, limit=200)}  \nData fingerprint: `{training.fingerprint}`{longest}")
st.dataframe(pd.DataFrame(card.versions.items(), columns=["library", "version"]), hide_index=True, key="versions")

st.subheader("Training runs")
runs = artifact.load_runs(ui.settings().model_dir)


def held_out(auc: float | None) -> str:
    """A run's held-out ROC-AUC, or why it has none (its sessions were too few to hold some out)."""
    return "— (CV only)" if auc is None else f"{auc:.4f}"


st.dataframe(
    pd.DataFrame(
        [
            {
                "trained at (UTC)": run.trained_at.strftime("%Y-%m-%d %H:%M"),  # as Training facts give it
                "serving": "● serving" if run.slots["treatment"].sha256 == slot.sha256 else "",
                "chosen": run.chosen,
                "ROC-AUC": run.candidates[run.chosen].auc_mean,
                "original": run.candidates["original"].auc_mean if "original" in run.candidates else None,
                "sessions": run.training.sessions,
                "compared on": run.cv.sessions,
                "held-out ROC-AUC": held_out(run.slots["treatment"].holdout_auc),
                "took": answers.duration_text(timedelta(seconds=round(run.seconds))),
                "data fingerprint": run.training.fingerprint[:8],  # as short as a model id's sha256
                "model sha256": run.slots["treatment"].sha256[:8],
            }
            for run in runs
        ]
    ),
    hide_index=True,
    key="runs",
    column_config={
        "ROC-AUC": st.column_config.NumberColumn(format="%.4f", width="small"),
        "original": st.column_config.NumberColumn(format="%.4f", width="small"),
        "sessions": st.column_config.NumberColumn(format="localized"),
        "compared on": st.column_config.NumberColumn(format="localized"),
        "held-out ROC-AUC": st.column_config.TextColumn(
            help=f"Only above {train.COMPARE_SESSIONS:,} labelled sessions are some held out to measure the "
            "final model; below that every session is compared by cross-validation (the ROC-AUC column)"
        ),
        # short headers: the long ones ran past the page's width at 1400 px
        "data fingerprint": st.column_config.TextColumn("data", help="The training data's fingerprint"),
        "model sha256": st.column_config.TextColumn("model", help="The treatment model file's sha256, as its id"),
    },
)
with st.expander("Parameters of the newest run"):
    st.json(runs[0].parameters if runs else {})

retrain_help = (
    f"It trains on the server, and goes on if you leave this page: "
    f"these models took {took} on {training.sessions:,} labelled sessions."
)
ui.training_button("Retrain on the current database", key="retrain", help=retrain_help)
