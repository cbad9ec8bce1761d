"""backend.type=mysql for real: the chart's server config (charts/mlflow-stack/ci/mysql-external-values.yaml, rendered
with `helm template`) against a throwaway MariaDB from the machine's Debian packages, over TLS (verify-full: a
self-signed CA, the server requires secure transport).

The rendered containers run as the kubelet would (env and Secrets resolved from the same render, an existing Secret for
the database password): the db-upgrade init container (it writes PyMySQL's option file and runs `mlflow db upgrade`),
then `mlflow server` with the chart's args and env. Tracking and registry data (experiment, run with params and metrics, model version with an alias) are read
back after a restart of the server. Only the cluster parts are rewritten: the database host, the pod's /tmp option file
and the CA bundle path, the port and the artifact destination.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from harness import REPO, Proc, free_port, wait_until
from test_chart_metadata import CHART, helm, run_rendered

SCENARIO = CHART / "ci" / "mysql-external-values.yaml"
DB_HOST = "mariadb.databases.svc.cluster.local:3306"
PASSWORD = "mysql-test-Pa55word"


@contextlib.contextmanager
def start_mariadb() -> Iterator[tuple[int, Path]]:
    """A MariaDB on 127.0.0.1 (TLS required, certificate for 127.0.0.1) with database mlflow_tracking and user
    mlflow_app (no SUPER); yields (port, CA file). Binary logging on, as on most production servers (MySQL 8's default,
    replicas, point-in-time backups): then MLflow's migration 1bd49d398cd23 (CREATE TRIGGER) needs
    log_bin_trust_function_creators=1 (error 1419 without it; docs/chart.md). As root mariadbd needs --user=root;
    stopped by the PID we started."""
    if not shutil.which("mariadbd", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")):
        pytest.fail("mariadbd not found: run `make setup` (ci/setup-python.sh installs mariadb-server)")
    root = Path(tempfile.mkdtemp(prefix="mlflow-stack-mariadb-"))
    data, sock, port = root / "data", root / "mysqld.sock", free_port()
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(root / "key.pem"), "-out", str(root / "ca.pem")],
                   check=True, capture_output=True)  # fmt: skip
    init = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
                           "--skip-test-db", *as_root], capture_output=True, text=True)  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr
    proc = Proc(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                 "--bind-address=127.0.0.1", f"--pid-file={root / 'mariadbd.pid'}", f"--log-bin={root / 'binlog'}", "--log-bin-trust-function-creators=1", "--innodb-flush-log-at-trx-commit=0",
                 f"--ssl-cert={root / 'ca.pem'}", f"--ssl-key={root / 'key.pem'}", "--require-secure-transport=ON", *as_root],
                root / "mariadbd.log")  # fmt: skip

    def sql(statement: str) -> str:
        out = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-N", "-e", statement],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    try:
        wait_until(lambda: sql("SELECT 1") is not None, 60, "mariadbd", proc)
        sql("CREATE DATABASE mlflow_tracking CHARACTER SET utf8mb4; "
            f"CREATE USER 'mlflow_app'@'%' IDENTIFIED BY '{PASSWORD}'; "
            "GRANT ALL ON mlflow_tracking.* TO 'mlflow_app'@'%'")  # fmt: skip
        yield port, root / "ca.pem"
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_mysql_backend_as_rendered(tmp_path: Path) -> None:
    rr = run_rendered()
    docs = [d for d in yaml.safe_load_all(helm(tmp_path, "template", "mlflow", str(CHART), "-n", "ml", "-f", str(SCENARIO))) if d]
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlflow-mysql"},  # the user's existing Secret
                 "data": {"password": base64.b64encode(PASSWORD.encode()).decode()}})  # fmt: skip
    generated = rr.generated_secrets(docs)  # what the credentials hook creates: the bundled object store's S3 keys
    assert not [s for s in generated if s["metadata"]["name"].endswith("-mysql")], "a MySQL password is generated"
    docs += generated
    pod = rr.find(docs, "Deployment", "server")["spec"]["template"]["spec"]
    server_c = pod["containers"][0]
    uri = next(a for a in server_c["args"] if a.startswith("--backend-store-uri=")).split("=", 1)[1]
    assert uri.startswith(f"mysql+pymysql://mlflow_app@{DB_HOST}/mlflow_tracking?"), uri
    assert PASSWORD not in yaml.safe_dump([d for d in docs if d["kind"] != "Secret"]), "the password left the Secret"

    with start_mariadb() as (port, ca):
        option_file = tmp_path / "mlflow-mysql.cnf"
        mappings = [(DB_HOST, f"127.0.0.1:{port}"), ("/tmp/mlflow-mysql.cnf", str(option_file)),
                    ("/etc/ssl/certs/ca-certificates.crt", str(ca))]  # fmt: skip

        def rewrite(text: str) -> str:
            for old, new in mappings:
                text = text.replace(old, new)
            return text

        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}

        def env_of(container: dict) -> dict[str, str]:
            return {**base_env, **rr.resolve_env(container, docs, rewrite), "HOME": str(tmp_path)}

        assert [c["name"] for c in pod["initContainers"]] == ["db-upgrade"]  # no basic auth on MySQL (the chart refuses it)
        for init in pod["initContainers"]:  # db-upgrade: writes the option file, waits for the database, `mlflow db upgrade`
            out = subprocess.run([*init["command"], *map(rewrite, init["args"])], env=env_of(init), cwd=tmp_path,
                                 capture_output=True, text=True, timeout=600)  # fmt: skip
            assert out.returncode == 0, f"{init['name']}: {out.stdout}\n{out.stderr}"
        assert option_file.stat().st_mode & 0o077 == 0, "the option file with the password is readable by others"
        import sqlalchemy

        db_uri = rewrite(next(e["value"] for e in pod["initContainers"][0]["env"] if e["name"] == "DB_URI"))
        with sqlalchemy.create_engine(db_uri).connect() as conn:  # the chart's URI: TLS, the CA checked
            assert conn.execute(sqlalchemy.text("SHOW SESSION STATUS LIKE 'Ssl_version'")).one()[1].startswith("TLS")
        other_ca = tmp_path / "other-ca.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-keyout", str(tmp_path / "other-key.pem"), "-out", str(other_ca)], check=True, capture_output=True)  # fmt: skip
        with pytest.raises(sqlalchemy.exc.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
            sqlalchemy.create_engine(db_uri.replace(str(ca), str(other_ca))).connect()

        env = env_of(server_c)
        http_port = free_port()
        args = rr.local_server_args(server_c["args"], http_port, tmp_path, rewrite)
        url = f"http://127.0.0.1:{http_port}"

        def start_server(n: int) -> Proc:
            proc = Proc([*server_c["command"], *args], tmp_path / f"server{n}.log", env)
            wait_until(lambda: rr.request(url + "/health") == 200, 300, "mlflow server", proc)
            return proc

        from mlflow import MlflowClient

        server = start_server(0)
        try:
            client = MlflowClient(url)
            exp = client.create_experiment("mysql-check")
            run = client.create_run(exp, run_name="on-mariadb")
            client.log_param(run.info.run_id, "backend", "mysql")
            for step, value in enumerate([0.5, 0.25, 0.125]):
                client.log_metric(run.info.run_id, "loss", value, step=step)
            client.set_terminated(run.info.run_id)
            client.create_registered_model("mysql-model")
            version = client.create_model_version("mysql-model", f"runs:/{run.info.run_id}/model", run.info.run_id)
            client.set_registered_model_alias("mysql-model", "champion", version.version)
        finally:
            server.stop()
        server = start_server(1)
        try:
            client = MlflowClient(url)
            assert client.get_experiment_by_name("mysql-check").experiment_id == exp
            got = client.get_run(run.info.run_id)
            assert got.info.status == "FINISHED" and got.data.params == {"backend": "mysql"}, got
            assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.5, 0.25, 0.125]
            champion = client.get_model_version_by_alias("mysql-model", "champion")
            assert (champion.version, champion.run_id) == (version.version, run.info.run_id)
        finally:
            server.stop()
    assert "Access denied" not in (tmp_path / "server1.log").read_text()
