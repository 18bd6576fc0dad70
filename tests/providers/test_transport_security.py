"""Provider calls: verified HTTPS with TLS 1.3 as the floor; plain http only for listed hosts."""

import datetime as dt
import socket
import ssl
import threading

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from providers_app import http
from providers_app.adapters.base import PermanentError


@pytest.fixture(autouse=True)
def fresh_sessions():
    http.clear_sessions()
    yield
    http.clear_sessions()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (so only a trusted CA's is missing)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "cert.pem", folder / "key.pem"


def _tls_server(certificate, *, max_version):
    """A TLS listener that completes handshakes (and answers a minimal HTTP 200) up to ``max_version``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    context.maximum_version = max_version
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"https://127.0.0.1:{port}"


def _session(url, account="a"):
    return http.session_for(f"test:{account}:{url}", base_url=url, headers={}, params={})


def test_a_server_that_stops_at_tls_1_2_is_refused(certificate):
    listener, url = _tls_server(certificate, max_version=ssl.TLSVersion.TLSv1_2)
    with listener, pytest.raises(requests.exceptions.SSLError) as refused:
        _session(url).get(url, verify=str(certificate[0]), timeout=5)
    assert "PROTOCOL_VERSION" in str(refused.value).upper() or "UNSUPPORTED" in str(refused.value).upper()


def test_tls_1_3_with_a_trusted_certificate_works_and_an_untrusted_one_does_not(certificate):
    listener, url = _tls_server(certificate, max_version=ssl.TLSVersion.TLSv1_3)
    with listener:
        assert _session(url).get(url, verify=str(certificate[0]), timeout=5).json() == {}
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            # Another account's session: the system's CAs do not know this certificate.
            _session(url, account="b").get(url, timeout=5)


def test_the_floor_can_be_lowered_to_1_2_on_purpose(certificate, settings):
    settings.ARCHANGEL_PROVIDER_TLS_MIN = "1.2"
    listener, url = _tls_server(certificate, max_version=ssl.TLSVersion.TLSv1_2)
    with listener:
        assert _session(url).get(url, verify=str(certificate[0]), timeout=5).json() == {}


def test_a_plain_http_base_url_is_refused_when_the_session_opens(settings):
    settings.ARCHANGEL_PLAIN_HTTP_HOSTS = []
    with pytest.raises(PermanentError, match="https"):
        _session("http://127.0.0.1:9/api")
