"""Fixtures for the download tests: local mirrors on 127.0.0.1, and a port nobody listens on."""

import socket

import pytest

import helper
from support.http_server import Mirror


@pytest.fixture
def start_mirror(monkeypatch):
    """`start_mirror(files, **behaviour)` starts a local `Mirror`; all are shut down after the test."""
    monkeypatch.setattr(helper, "TIMEOUT", 1)  # a local mirror answers at once; silence means it hangs
    mirrors = []

    def start(files, **behaviour):
        mirrors.append(Mirror(files, **behaviour))
        return mirrors[-1]

    yield start
    for mirror in mirrors:
        mirror.close()


@pytest.fixture
def refused_url():
    """The URL of a local port with nothing listening, so connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
