"""`--log tensorboard|mlflow|wandb`: Ray Tune's logger callbacks, read back with each tracker's own reader."""
import os
import sys

import pytest

from bench.errors import UserError
from bench.integrations.tracking import parse_kinds, tune_callbacks
from bench.sweep.report_row import final_metrics

EPOCHS = [{"epoch": 1, "train_loss": 1.5, "val_cl": 30.0, "best_cl": 30.0},
          {"epoch": 2, "train_loss": 1.25, "val_cl": 40.0, "best_cl": 40.0}]
ROWS = [{"method": "cam", "cl": 69.5, "cam_cos": 0.82, "sanity_pass": True, "title": "CAM",
         "confusion": [[1, 0], [0, 1]], "per_class_cam_cos": {"Happiness": 0.9}, "pointing": None},
        {"method": "gradcam", "cl": 69.5, "cam_cos": 0.85, "sanity_pass": False}]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One tiny Tune experiment with the TensorBoard and MLflow callbacks (Ray started once)."""
    import ray
    from ray import tune

    from bench.sweep.executors import RAY_ENV

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    run_dir = tmp_path_factory.mktemp("tracked") / "demo-run"
    epochs, final = EPOCHS, final_metrics(ROWS)

    def trainable(config):      # nested: Ray pickles it by value (workers cannot import this test module)
        from ray import tune

        for metrics in epochs:
            tune.report(dict(metrics))
        tune.report({**epochs[-1], **final})

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False, logging_level="warning",
                 object_store_memory=80 * 2 ** 20)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            run_config=tune.RunConfig(storage_path=str((run_dir / "ray").resolve()), name="sweep", verbose=0,
                                      callbacks=tune_callbacks(["tensorboard,mlflow"], run_dir)),
        )
        grid = tuner.fit()
        assert grid.num_errors == 0
    finally:
        if started:
            ray.shutdown()
    return run_dir


def test_final_metrics_flattens_numbers_and_flags_only():
    flat = final_metrics(ROWS)
    assert flat == {"final/cam/cl": 69.5, "final/cam/cam_cos": 0.82, "final/cam/sanity_pass": 1.0,
                    "final/gradcam/cl": 69.5, "final/gradcam/cam_cos": 0.85, "final/gradcam/sanity_pass": 0.0}


@pytest.mark.slow      # starts Ray once for the module (10-40 s)
def test_tensorboard_event_files_parse_with_tensorboards_reader(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted((tracked_run / "ray").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file written"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    losses = [e.value for e in acc.Scalars("ray/tune/train_loss")]
    assert losses == pytest.approx([1.5, 1.25, 1.25])
    assert [e.value for e in acc.Scalars("ray/tune/final/cam/cl")] == pytest.approx([69.5])
    assert [e.value for e in acc.Scalars("ray/tune/final/gradcam/sanity_pass")] == pytest.approx([0.0])
    assert "ray/tune/best_cl" in tags and "ray/tune/val_cl" in tags


@pytest.mark.slow      # starts Ray once for the module (10-40 s)
def test_mlflow_writes_a_local_run_that_its_client_reads_back(tracked_run):
    from mlflow.tracking import MlflowClient

    store = tracked_run / "mlruns"
    assert store.is_dir(), "the default store is <run>/mlruns"
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name("demo-run")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["final/cam/cl"] == pytest.approx(69.5)
    assert run.data.metrics["final/cam/cam_cos"] == pytest.approx(0.82)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([1.5, 1.25, 1.25])


def test_unknown_tracker_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="choose from tensorboard, mlflow, wandb") as err:
        tune_callbacks(["tensorbord"], tmp_path)
    assert "\n" not in str(err.value)


def test_missing_extra_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)        # as if the package were not installed
    with pytest.raises(UserError, match=r"pip install 'au-cam-bench\[wandb\]'"):
        tune_callbacks(["wandb"], tmp_path)


def test_kinds_accept_repeats_and_comma_lists():
    assert parse_kinds(["tensorboard,mlflow", "tensorboard", " wandb "]) == ["tensorboard", "mlflow", "wandb"]


def test_mlflow_store_defaults_to_the_run_folder_and_honours_the_environment(tmp_path, monkeypatch):
    from bench.integrations.tracking import mlflow_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_tracking_uri(tmp_path) == (tmp_path.resolve() / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert mlflow_tracking_uri(tmp_path) == "http://tracking.example:5000"
