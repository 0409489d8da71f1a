"""HTTPS with a certificate that is renewed on disk while the daemon runs."""
from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import wait_for


def make_cert(folder: Any, name: str, serial: int) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (and its key), written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = str(folder / f"{name}.crt"), str(folder / f"{name}.key")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


def served_common_name(url: str) -> str:
    host, port = url.split("://")[1].split(":")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_https_serves_and_reloads_a_renewed_certificate(make_daemon: Any, tmp_path: Any) -> None:
    first_cert, first_key = make_cert(tmp_path, "first", 1)
    live_cert, live_key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    os.link(first_cert, live_cert)
    os.link(first_key, live_key)
    d = make_daemon(f"[web]\nhttps = on\ncert = {live_cert}\nkey = {live_key}\n").start()
    assert d.url.startswith("https://")
    r = requests.get(d.url + "/status.json", verify=first_cert, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    with_plain_http = d.url.replace("https://", "http://")
    try:
        plain = requests.get(with_plain_http + "/status.json", timeout=10)
        assert plain.status_code != 200
    except requests.RequestException:
        pass  # the TLS server drops a plain-text request: also a refusal
    # renewal, as certbot does it: new files moved into place
    second_cert, second_key = make_cert(tmp_path, "second", 2)
    os.replace(second_key, live_key)
    os.replace(second_cert, live_cert)
    wait_for(lambda: served_common_name(d.url) == "second", 30, interval=0.5,
             what="the renewed certificate to be served")
    r = requests.get(d.url + "/status.json", verify=live_cert, timeout=30)
    assert r.status_code == 200


def test_https_without_a_loadable_key_refuses_to_start(tmp_path: Any) -> None:
    import subprocess
    import sys
    cert, _ = make_cert(tmp_path, "only", 3)
    config = tmp_path / "crawld.ini"
    config.write_text(f"[web]\nhttps = on\ncert = {cert}\nkey = {tmp_path / 'missing.key'}\n")
    r = subprocess.run([sys.executable, "-m", "crawld", "serve", "--config", str(config),
                        "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot load" in r.stderr, r.stderr
