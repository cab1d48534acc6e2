"""Model: how the candidates compared, where the threshold sits, and what was trained on."""

import pandas as pd
import streamlit as st

import ui
from gender import artifact, metrics, plots

st.title("The model")

with ui.banners():
    model = ui.require_models().treatment
metadata = model.metadata
candidates = metadata["candidates"]
training = metadata["training"]
chosen = metadata["chosen"]

cv = metadata["cv"]
slot = metadata["slots"]["treatment"]
holdout = slot.get("holdout")  # set when the candidates were compared on a sample
compared_on = (
    f"a stratified sample of **{cv['sessions']:,}** of the {training['sessions']:,} labelled sessions"
    if cv.get("sampled")
    else f"all {training['sessions']:,} labelled sessions"
)
st.markdown(
    f"**{model.label}** (`{model.model_id}`) was chosen among {len(candidates)} candidates by "
    f"{cv['folds']}-fold stratified cross-validated ROC-AUC on {compared_on}; every candidate curve below is "
    "out of fold."
)
if holdout:
    st.markdown(
        f"The serving model was then fitted on {slot['fitted_sessions']:,} sessions and measured on "
        f"**{holdout['sessions']:,} held-out sessions** used neither to fit it nor to set its calibration and "
        f"threshold ({holdout['calibration_sessions']:,} other held-out sessions did that): "
        f"**ROC-AUC {holdout['auc']:.3f}**, balanced accuracy {slot['confusion']['balanced_accuracy']:.3f}. "
        "The threshold below is read off that held-out set."
    )

st.subheader("Candidates")
table = pd.DataFrame(
    [
        {
            "candidate": name,
            "what": result["label"],
            "ROC-AUC": result["auc_mean"],
            "± std": result["auc_std"],
            "per fold": ", ".join(f"{auc:.3f}" for auc in result["auc_folds"]),
            "explainable": "yes" if result["explainable"] else "no (baseline)",
            "each fold fitted on": result.get("fold_fit_sessions"),  # fewer than the others': a stratified sample
        }
        for name, result in candidates.items()
    ]
).sort_values("ROC-AUC", ascending=False)
st.dataframe(table, hide_index=True, key="candidates")

st.subheader("Threshold")
stored = model.threshold
threshold = st.slider(
    "Call a session male when P(male) is at least",
    0.0,
    1.0,
    round(stored, 2),
    0.01,
    key="threshold",
    help=f"The stored threshold, {stored:.3f}, maximises balanced accuracy "
    + ("on the held-out calibration sessions." if holdout else "out of fold."),
)
# The served model's own scores: held out when it was fitted beyond the compared sample, else out of fold.
scored = holdout or {"roc": candidates[chosen]["roc"], "male": training["male"], "female": training["female"]}
at = metrics.confusion_from_roc(scored["roc"], threshold, scored["male"], scored["female"])
matrix_col, rates_col = st.columns([3, 2])
with matrix_col:
    ui.chart(plots.confusion_heatmap(at["tn"], at["fp"], at["fn"], at["tp"]), key="confusion")
with rates_col:
    st.metric("Balanced accuracy", f"{at['balanced_accuracy']:.3f}")
    st.metric("Precision (men among those called men)", f"{at['precision']:.3f}")
    st.metric("Recall (men found)", f"{at['recall']:.3f}")
    st.caption(f"Stored threshold {stored:.3f} · shown at {threshold:.2f} (nearest curve point {at['threshold']:.3f})")

roc_col, pr_col = st.columns(2)
with roc_col:
    ui.chart(plots.roc_curves(candidates, chosen, threshold), key="roc")
with pr_col:
    ui.chart(plots.pr_curves(candidates, chosen, training["male_share"]), key="pr")

st.subheader("Training facts")
facts = st.columns(5)
facts[0].metric("Labelled sessions", f"{training['sessions']:,}")
facts[1].metric(
    "Male share", f"{training['male_share']:.1%}", help=f"{training['male']:,} male, {training['female']:,} female"
)
facts[2].metric(
    "Compared on",
    f"{cv['sessions']:,}",
    help="a stratified sample of the labelled sessions" if cv.get("sampled") else "every labelled session",
)
facts[3].metric("Trained", metadata["trained_at"][:16].replace("T", " "), help="UTC")
facts[4].metric("Training time", f"{metadata['seconds']:.0f} s")


def quality(entry: dict) -> tuple[str, float]:
    """Where a served model was measured, and its ROC-AUC there."""
    held = entry.get("holdout")
    if held:
        return f"{held['sessions']:,} held-out sessions", held["auc"]
    return "out of fold (its candidate's CV)", candidates[entry["candidate"]]["auc_mean"]


st.dataframe(
    pd.DataFrame(
        [
            {
                "slot": name,
                "model": entry["candidate"],
                "fitted on (sessions)": entry.get("fitted_sessions"),
                "measured on": quality(entry)[0],
                "ROC-AUC": quality(entry)[1],
                "balanced accuracy": entry["confusion"]["balanced_accuracy"],
                "threshold": entry["threshold"],
            }
            for name, entry in metadata["slots"].items()
        ]
    ),
    hide_index=True,
    key="slots",
)
st.markdown(f"Database: `{metadata['database']}`  \nData fingerprint: `{training['fingerprint']}`")
st.dataframe(
    pd.DataFrame(metadata["versions"].items(), columns=["library", "version"]), hide_index=True, key="versions"
)

st.subheader("Training runs")
runs = artifact.load_runs(ui.settings().model_dir)
serving_sha = metadata["slots"]["treatment"]["sha256"]
st.dataframe(
    pd.DataFrame(
        [
            {
                "trained at (UTC)": run["trained_at"][:19].replace("T", " "),
                "serving": "● serving" if run["slots"]["treatment"]["sha256"] == serving_sha else "",
                "chosen": run["chosen"],
                "ROC-AUC": run["candidates"][run["chosen"]]["auc_mean"],
                "original": run["candidates"].get("original", {}).get("auc_mean"),
                "sessions": run["training"]["sessions"],
                "compared on": run["cv"].get("sessions", run["training"]["sessions"]),
                "held-out ROC-AUC": run["slots"]["treatment"].get("holdout_auc"),
                "data fingerprint": run["training"]["fingerprint"][:12],
                "model sha256": run["slots"]["treatment"]["sha256"][:12],
                "seconds": run["seconds"],
            }
            for run in runs
        ]
    ),
    hide_index=True,
    key="runs",
)
with st.expander("Parameters of the newest run"):
    st.json(runs[0]["parameters"] if runs else {})

if st.button("Retrain on the current database", key="retrain"):
    ui.train_here()
