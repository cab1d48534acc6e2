"""The original web service re-created for the load benchmark (benchmarks/api.py): a Flask app with
the original's two routes and JSON, its per-request scan for a session's rows, its UNION of four
GROUP BYs for /count, and the original random forest's predict without an explanation
(tests/original_style.py holds those pieces, pinned to our answers by tests/test_fast_paths.py).

    .venv/bin/python benchmarks/flask_original.py DB_URL MODEL_DIR PORT

It serves on 127.0.0.1 only, with Flask's own threaded server as the original ran it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask, jsonify  # noqa: E402

from gender import artifact, db  # noqa: E402
from tests.original_style import OriginalService, union_connection, union_count  # noqa: E402


def create_app(db_url: str, model_dir: Path) -> Flask:
    engine = db.connect(db_url)
    pipeline = artifact.load(model_dir).control.pipeline  # the original's forest, as train() re-creates it
    # One thread per prediction, as our serving walks the forest (gender.fast): the comparison is of
    # the queries and the work per request, not of joblib's thread-pool polling. (The pipeline's
    # last step is the calibrated decision around the forest.)
    pipeline[-1].estimator.set_params(n_jobs=1)
    service = OriginalService(engine, pipeline)
    app = Flask("original")

    @app.get("/predict/<session_id>")
    def predict_session(session_id: str):
        return jsonify(PREDICTION=service.predict(session_id), SESSION_ID=session_id)

    @app.get("/count/<session_id>/<category>")
    def count_views(session_id: str, category: str):
        with union_connection(engine) as conn:
            views = union_count(conn, session_id, category)
        return jsonify(CATEGORY=category, COUNT=views, SESSION_ID=session_id)

    return app


if __name__ == "__main__":
    url, model_dir, port = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    create_app(url, model_dir).run(host="127.0.0.1", port=port, threaded=True)
