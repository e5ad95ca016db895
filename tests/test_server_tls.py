"""TLS and mutual TLS on the edge server, with certificates the test generates (trustme):
a device with a certificate the server's client CA signed is served; one without a
certificate, or with one from another CA, is refused; a plaintext client gets nothing."""

from __future__ import annotations

import socket

import pytest

from aecnn.errors import AecnnError
from aecnn.runtime import protocol as P
from aecnn.runtime.client import Connection
from aecnn.runtime.tls import client_context, server_context

trustme = pytest.importorskip("trustme")

from test_server_attacks import Running, feature_wire, variant  # noqa: E402, F401


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, rogue = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(d / "server.pem"))
    ca.issue_cert("device-1").private_key_and_cert_chain_pem.write_to_path(
        str(d / "device.pem"))
    rogue.issue_cert("device-2").private_key_and_cert_chain_pem.write_to_path(
        str(d / "rogue.pem"))
    return d


def test_mutual_tls_admits_only_known_devices(variant, pki):  # noqa: F811
    wire = feature_wire(variant)
    tls = server_context(pki / "server.pem", client_ca=pki / "ca.pem")
    with Running(variant, tls=tls, first_byte_timeout=2.0) as run:
        good = client_context(pki / "ca.pem", pki / "device.pem")
        with Connection(run.host, run.port, timeout=10, tls=good) as conn:
            rep, _ = conn.call(P.Kind.FEATURE, wire)
            assert rep["label"].startswith("c") and conn.call(P.Kind.PING, b"x")[0]["echo"] == 1
        for ctx in (client_context(pki / "ca.pem"),  # no certificate
                    client_context(pki / "ca.pem", pki / "rogue.pem")):  # another CA's
            with pytest.raises(AecnnError), Connection(run.host, run.port, timeout=10,
                                                       tls=ctx) as conn:
                conn.call(P.Kind.FEATURE, wire)  # TLS 1.3: refused at the first read
        with socket.create_connection((run.host, run.port), timeout=10) as s:
            s.sendall(P.request(P.Kind.PING, 1))  # plaintext: the handshake fails
            try:
                got = s.recv(4096)
            except ConnectionResetError:
                got = b""
            assert not got.startswith(P.RESPONSE)
        assert run.wait_for(lambda: run.open_connections() == 0)
        assert run.server.served == 2  # only the known device's two requests


def test_a_client_checks_the_server_certificate(variant, pki):  # noqa: F811
    tls = server_context(pki / "server.pem")
    with Running(variant, tls=tls) as run:
        with Connection(run.host, run.port, timeout=10,
                        tls=client_context(pki / "ca.pem")) as conn:
            assert conn.call(P.Kind.PING, b"abc")[0]["echo"] == 3
        with pytest.raises(AecnnError, match="cannot connect"):
            Connection(run.host, run.port, timeout=10, tls=client_context()).connect()
    with pytest.raises(AecnnError, match="does not exist"):
        server_context(pki / "missing.pem")
