"""Issue 20: ``--set methods.<m>.<field>`` for a method that is not in the run is still checked against
that method's options (unknown field, bad type: one line, exit 2), as for the methods in the run."""
import pytest


@pytest.mark.parametrize("setting, says", [
    ("methods.gradcam.nofield=x", "unknown option methods.gradcam.nofield; methods.gradcam options: target_layer"),
    ("methods.gradcam.target_layer=[1, 2]", "bad value"),
    ("methods.nosuchmethod.x=1", "nosuchmethod"),
])
def test_options_of_a_method_outside_the_run_are_validated(tmp_path, cli, setting, says):
    code, _, err = cli("run", "--methods", "cam", "--profile", "smoke", "--executor", "local", "--set", setting,
                       "--results-dir", tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and says in lines[0], err
    assert not list(tmp_path.iterdir())
