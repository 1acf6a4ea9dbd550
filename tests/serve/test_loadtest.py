"""Load test plumbing that needs no server: loopback-only URLs, plan validation, one-line CLI errors."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from xvdeploy.cli import main
from xvdeploy.errors import XVDeployError
from xvdeploy.serve.loadtest import LoadSpec, parse_url


@pytest.mark.parametrize("url, host, port, prefix", [
    ("http://127.0.0.1:8000/", "127.0.0.1", 8000, "/"),
    ("http://127.0.0.1:8000", "127.0.0.1", 8000, "/"),
    ("127.0.0.1:9000/predict", "127.0.0.1", 9000, "/"),
    ("http://localhost:8000/digits/metadata", "localhost", 8000, "/digits/"),
    ("http://127.3.2.1:81/a/", "127.3.2.1", 81, "/a/"),
    ("http://[::1]:8000/", "::1", 8000, "/"),
])
def test_loopback_urls(url, host, port, prefix):
    target = parse_url(url)
    assert (target.host, target.port, target.prefix) == (host, port, prefix)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000/", "http://192.168.1.2/", "http://example.com/",
                                 "https://127.0.0.1:8000/", "http://0.0.0.0:8000/", "ftp://localhost/"])
def test_other_addresses_are_refused(url):
    with pytest.raises(XVDeployError):
        parse_url(url)


def test_load_spec_bounds():
    LoadSpec().validate()
    for bad in (LoadSpec(concurrency=()), LoadSpec(concurrency=(0,)), LoadSpec(requests=0),
                LoadSpec(time_limit_s=0), LoadSpec(batch=0), LoadSpec(kill_replica_at=-1)):
        with pytest.raises(XVDeployError):
            bad.validate()


def test_cli_refuses_a_remote_url_in_one_line(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    result = CliRunner().invoke(main, ["loadtest", "http://10.1.2.3:8000/", "--model", str(model)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "loopback" in lines[0]
    result = CliRunner().invoke(main, ["loadtest", "http://127.0.0.1:1/", "--model", str(model),
                                       "--concurrency", "1,x"])
    assert result.exit_code == 2 and "--concurrency" in result.stderr


def test_cli_says_when_nothing_answers(tmp_path, make_net):
    import socket

    with socket.socket() as s:  # a port with no server behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(main, ["loadtest", f"http://127.0.0.1:{port}/", "--model", str(make_net()),
                                       "--requests", "1", "--concurrency", "1"])
    assert result.exit_code == 2 and "nothing answers" in result.stderr, result.output
