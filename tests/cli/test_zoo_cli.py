from tests.cli.conftest import invoke
from xvdeploy import zoo


def test_zoo_lists_every_model_with_parameters():
    result = invoke("zoo", "--no-macs")
    assert result.exit_code == 0
    for name in zoo.names():
        assert name in result.output


def test_zoo_macs_of_digits_model():
    s = zoo.summary("xv_digits")
    assert s.macs > 0 and s.folded_macs > 0 and s.parameters > s.folded_parameters
