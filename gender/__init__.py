"""gender-lens: predict a web visitor's gender from one session of e-commerce logs.

The package is the pipeline, one module a stage:

    config    where the database and the models are
    db        the FTP schema (session, product) and every query
    ingest    PAKDD'15 CSV files and other FTP databases into the tables
    events    a shop's event log (CSV or Parquet, one row a view) into the tables
    synth     synthetic FTP-like logs for the demo and scale tests
    features  a session's views and times as a feature row
    train     candidates compared by cross-validated ROC-AUC; the best one saved
    artifact  model files and their metadata, checked before loading
    predict   one session looked up and predicted, or many scored
    explain   SHAP contributions of one prediction, in words and up the hierarchy
    plots     plotly figures for the dashboard
    cli       `python -m gender ...`
"""
