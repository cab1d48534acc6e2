"""gender-lens: predict a web visitor's gender from one session of e-commerce logs.

The package is the pipeline, one module a stage:

    config    where the database and the models are
    errors    the errors a user can cause or meet, each with a message fit to show
    files     files written whole: a reader never sees half of one
    access    who may see data: the dashboard's allowlist and the API's bearer tokens
    db        the FTP schema (session, product) and every query
    ingest    PAKDD'15 CSV files and other FTP databases into the tables
    events    a shop's event log (CSV or Parquet, one row a view) into the tables
    synth     synthetic FTP-like logs for the demo and scale tests
    lake      the FTP tables as Parquet files: exported from a database, or synthetic; checked
    session   one session as stored, and the one grammar of feature names
    features  a session's views and times as a feature row
    model     the chosen classifier: logistic regression corrected by LightGBM
    metrics   curves, thresholds, confusion matrices, calibration
    train     candidates compared by cross-validated ROC-AUC; the best one and the control saved
    card      the model card: what was trained, on what, how well, how it decides
    trained   a trained model as served (pipeline, calibration, threshold, explainer) and the A/B pair
    artifact  model files and their card, checked before loading: the one loader
    predict   one session looked up, predicted and explained, or its views in a category counted
    fast      one session answered in well under a millisecond: the HTTP routes' path
    answers   the answers every interface gives (the original's JSON), and P(male) in words
    score     many sessions scored at once, streamed
    scores    scores computed ahead (on Spark), loaded into the database and read back
    serve     which model answers a session (A/B groups), and the prediction log
    explain   SHAP contributions of one prediction, in words and up the hierarchy
    whatif    a session edited (or built) without touching the database, and shared as a link
    explore   the logs summarised for exploring: one session's categories, the population's
    monitor   what was served, against what was trained, with honest intervals
    population SHAP of the chosen model over a sample of sessions: importance, dependence, cohorts
    plots     plotly figures for the dashboard
    report    one session's answer and explanation as a standalone HTML file (and as JSON)
    spark     every session of the Parquet tables scored on Spark (optional: pyspark, Java 17)
    summary   the Categories page's population summaries: SQL or Spark SQL, stored in the database
    suggest   session ids suggested as one types (the search box's route)
    api       the original web service's routes and the batch, health and metrics ones
    server    `python -m gender api`: the routes under uvicorn, in one process or several
    cli       `python -m gender ...`
"""
