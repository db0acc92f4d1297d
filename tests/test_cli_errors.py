"""Every command-line mistake gets one line on stderr and exit code 2 (through the real entry point).

typer bundles its own click, so an ``except click.ClickException`` never fired and each of these
printed a ~50-line traceback with exit code 1.
"""
import os
import subprocess
import sys

import pytest

BENCH = [sys.executable, "-c", "from bench.cli.main import main; main()"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def bench(*args, cwd=None):
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args,says", [
    (["run", "--bogus"], "No such option: --bogus"),
    (["run", "--methods"], "requires an argument"),
    (["tabel"], "No such command 'tabel'"),
    (["run", "--max-concurrent", "x"], "--max-concurrent"),
    (["run", "--methods", "nope"], "unknown method 'nope'"),
    (["run", "--datasets", "nope"], "unknown dataset 'nope'"),
    (["run", "--au", "maybe"], "bad --au 'maybe'"),
    (["run", "--seeds", "a,b"], "bad --seeds"),
    (["run", "--methods", ","], "--methods is empty"),
    (["run", "--set", "train.epochz=3"], "unknown option train.epochz"),
    (["run", "--set", "methods.cutmix.prob=abc"], "bad value 'abc' for methods.cutmix.prob: expected float"),
    (["run", "--set", "methods.wildcat.maps=2.5"], "bad value 2.5 for methods.wildcat.maps: expected int"),
    (["run", "--set", "methods.cutmx.prob=1"], "unknown method 'cutmx'"),
    (["run", "--eval", "everything"], "bad --eval"),
    (["run", "--log", "tensorboard", "--executor", "local"], "--log"),
    (["run", "--profile", "nope"], "unknown profile 'nope'"),
    (["table", "--format", "pdf"], "bad --format"),
])
def test_mistakes_are_one_line_and_exit_2(args, says, tmp_path, cli):
    if args[0] in ("run", "table"):
        args = [args[0], "--results-dir", str(tmp_path), *args[1:]]
    code, _, err = cli(*args)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert says in lines[0] and "Traceback" not in err
    assert not (tmp_path / "demo").exists()            # nothing written


def test_a_mistake_through_the_console_script_is_one_line():
    out = bench("run", "--bogus")
    assert out.returncode == 2 and out.stderr.strip() == (
        "error: No such option: --bogus (Possible options: --log) (try 'bench run --help')")


def test_bench_alone_prints_help_and_exits_2():
    out = bench()
    assert out.returncode == 2 and "Commands" in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_version():
    from importlib.metadata import version

    out = bench("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"au-cam-bench {version('au-cam-bench')}"


def test_help_names_datasets_profiles_and_environment():
    run_help = bench("run", "--help").stdout
    for word in ("synthetic", "rafdb", "affectnet", "folder", "demo", "paper", "BENCH_DATA", "BENCH_CACHE",
                 "--list-settings"):
        assert word in run_help, word
    assert "BENCH_PLUGINS" in bench("--help").stdout


def test_list_settings_shows_every_settable_key_with_its_profile_value():
    out = bench("run", "--list-settings", "--profile", "demo")
    assert out.returncode == 0
    lines = {line.split()[0]: line.split()[-1] for line in out.stdout.splitlines()[1:]}
    assert lines["data.image_size"] == "64" and lines["train.epochs"].isdigit()
    assert "methods.cutmix.prob" in lines and "au.weight" in lines and "eval.extended" in lines
