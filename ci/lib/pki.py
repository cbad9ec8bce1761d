"""Certificates for ci/cluster and ci/node, made per run with openssl (valid two days: nothing outlives a test run)."""

from __future__ import annotations

from pathlib import Path

from procs import sh


def ca(out: Path) -> None:
    """OUT/ca.{key,crt}: the run's certificate authority."""
    out.mkdir(parents=True, exist_ok=True)
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mlflow-stack-test-ca",
       "-keyout", out / "ca.key", "-out", out / "ca.crt")  # fmt: skip


def cert(ca_dir: Path, out: Path, name: str, subject: str, alt_names: str, usage: str) -> None:
    """OUT/NAME.{key,crt} for SUBJECT (alt_names e.g. "IP:10.0.0.1,DNS:x"; usage serverAuth or clientAuth), signed by
    CA_DIR/ca.*."""
    ext = out / f"{name}.ext"
    ext.write_text(f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
                   + (f"subjectAltName={alt_names}\n" if alt_names else ""))  # fmt: skip
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", out / f"{name}.key",
       "-out", out / f"{name}.csr")  # fmt: skip
    sh("openssl", "x509", "-req", "-in", out / f"{name}.csr", "-CA", ca_dir / "ca.crt", "-CAkey", ca_dir / "ca.key",
       "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", out / f"{name}.crt")  # fmt: skip
