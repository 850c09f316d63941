"""Starting `smtp_peer` processes and reading what they accepted."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost that is its own CA: (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carepath test peer")])
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
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "peer-cert.pem", folder / "peer-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class SmtpPeer:
    process: subprocess.Popen[str]
    port: int
    log: Path
    cert: Path | None

    def url(self, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"smtp://127.0.0.1:{self.port}" + (f"?{params}" if params else "")

    def accepted(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_peer(folder: Path, *, starttls: bool, attempts: int = 3) -> SmtpPeer:
    """A peer process on a free loopback port, ready when this returns.

    The port is found free, then bound by the child: another process may take it
    in between, so a peer that does not come up is started again on a new port.
    """
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "accepted.jsonl"
    cert_args: list[str] = []
    cert = None
    if starttls:
        cert, key = self_signed_certificate(folder)
        cert_args = ["--cert", str(cert), "--key", str(key)]
    for _ in range(attempts):
        port = free_port()
        command = [sys.executable, "-m", "tests.support.smtp_peer", "--port", str(port)]
        command += ["--log", str(log), *cert_args]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        if process.stdout.readline().strip() == "ready":
            return SmtpPeer(process, port, log, cert)
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
    raise RuntimeError(f"the SMTP peer did not start in {attempts} attempts")
