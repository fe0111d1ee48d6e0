"""`slowfast bench recorder` starts its recorder with parameters the node declares (a renamed
setting stopped the bench at start for several releases, unnoticed: no test ran it)."""
from slowfast_app.bench.recorder import STREAMS, recorder_stack
from slowfast_ros.profiles import check_parameters


def test_the_bench_recorder_stack_sets_only_declared_parameters(tmp_path):
    profile, overrides = recorder_stack(tmp_path)
    assert [n.name for n in profile.nodes] == ["recorder_node"]
    assert overrides["recorder_node"]["topics"] == list(STREAMS)
    for spec in profile.nodes:
        check_parameters(spec, overrides.get(spec.name))   # raises on an undeclared one
