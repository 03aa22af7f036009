"""Run ``airflow-reclaim serve --self-signed`` as a real process, and helpers to talk to it.

Each server runs in its own process group on 127.0.0.1, with a throwaway ``AIRFLOW_HOME`` and
its connections in ``AIRFLOW_CONN_<ID>`` environment variables. Stopping sends SIGTERM to the
whole group, then SIGKILL if the group is still alive, and it also runs when a test fails.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "reclaim"
"""Example Reclaim bodies with made-up people and ids, kept in the repository."""

CONN_ID = "reclaim_http"
DEMO_CONN_ID = "reclaim_demo"
HTTP_CONN_ID = "other_http"

# Seconds to wait until /reclaim/health responds. Importing Airflow takes a few seconds.
STARTUP_TIMEOUT_SECONDS = 60
# Seconds between SIGTERM and SIGKILL when stopping a server.
STOP_TIMEOUT_SECONDS = 15


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free when this function ran.

    The socket is closed before the server binds the port, so another process could take it
    first. Each test run starts only a few servers, so the race is accepted.
    """
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_command() -> list[str]:
    """Return the command that runs ``airflow-reclaim`` from this virtual environment."""
    script = Path(sys.executable).parent / "airflow-reclaim"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "airflow_provider_reclaim.cli.main"]


@dataclass(frozen=True)
class ReceiverEnvironment:
    """Secrets, connections and paths shared by the servers and CLI runs of one test module.

    :param home: The ``AIRFLOW_HOME`` of every process.
    :param inbox_url: SQLAlchemy URL of the inbox that the ``reclaim_webhook`` connections use.
    :param secret: Current webhook secret of :data:`CONN_ID` and :data:`DEMO_CONN_ID`.
    :param previous_secret: Older secret that :data:`CONN_ID` still accepts.
    :param http_password: Password of the ``http`` connection :data:`HTTP_CONN_ID`.
    """

    home: Path
    inbox_url: str
    secret: str
    previous_secret: str
    http_password: str

    @property
    def inbox_path(self) -> Path:
        """Path of the SQLite inbox file."""
        return Path(self.inbox_url.removeprefix("sqlite:///"))

    def variables(self) -> dict[str, str]:
        """Return the process environment: this one without Airflow settings, plus the test's."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
        reclaim_connection = {
            "conn_type": "reclaim_webhook",
            "password": self.secret,
            "extra": {"inbox_url": self.inbox_url, "previous_secrets": [self.previous_secret]},
        }
        demo_connection = {
            "conn_type": "reclaim_webhook",
            "password": self.secret,
            "extra": {"inbox_url": self.inbox_url},
        }
        http_connection = {
            "conn_type": "http",
            "host": "127.0.0.1",
            "login": "user",
            "password": self.http_password,
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(reclaim_connection),
                f"AIRFLOW_CONN_{DEMO_CONN_ID.upper()}": json.dumps(demo_connection),
                f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}": json.dumps(http_connection),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env


def make_environment(directory: Path) -> ReceiverEnvironment:
    """Create ``AIRFLOW_HOME`` under ``directory`` and return fresh random secrets for it."""
    home = directory / "airflow_home"
    home.mkdir(parents=True, exist_ok=True)
    return ReceiverEnvironment(
        home=home,
        inbox_url=f"sqlite:///{directory / 'inbox' / 'reclaim_inbox.db'}",
        secret=f"current-{secrets.token_hex(16)}",
        previous_secret=f"previous-{secrets.token_hex(16)}",
        http_password=f"http-{secrets.token_hex(16)}",
    )


@dataclass
class ReceiverProcess:
    """One ``airflow-reclaim serve --self-signed`` process on 127.0.0.1.

    :param environment: Connections and paths the server runs with.
    :param workdir: Directory for the certificate and the log file.
    :param port: TCP port on 127.0.0.1.
    """

    environment: ReceiverEnvironment
    workdir: Path
    port: int = field(default_factory=find_free_port)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cert_dir(self) -> Path:
        return self.workdir / "tls"

    @property
    def certfile(self) -> Path:
        return self.cert_dir / "reclaim-receiver.crt"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.port}.log"

    def webhook_url(self, conn_id: str = CONN_ID) -> str:
        return f"{self.base_url}/reclaim/webhooks/{conn_id}"

    def start(self) -> ReceiverProcess:
        """Start the server in a new process group and wait until ``/reclaim/health`` returns 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            *cli_command(),
            "serve",
            "--self-signed",
            "--cert-dir",
            str(self.cert_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                command,
                env=self.environment.variables(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the receiver exited with code {self.process.returncode} during startup:\n{self.log_text()}"
                )
            if self.certfile.exists():
                try:
                    response = requests.get(
                        f"{self.base_url}/reclaim/health", verify=str(self.certfile), timeout=2
                    )
                    if response.status_code == 200:
                        return
                except requests.RequestException as error:
                    last_error = error
            time.sleep(0.2)
        raise TimeoutError(
            f"the receiver did not answer /reclaim/health within {STARTUP_TIMEOUT_SECONDS} s "
            f"(last error: {last_error}):\n{self.log_text()}"
        )

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self) -> int | None:
        """Send SIGTERM to the process group, then SIGKILL if it is still running, and return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is not None:
            # Already stopped, for example by kill(). Its group id may belong to someone else by now.
            return self.process.returncode

        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL the whole process group at once, as a crash or an OOM kill would, and return the exit code."""
        self._signal_group(signal.SIGKILL)
        return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def log_text(self) -> str:
        """Return everything the server wrote to stdout and stderr so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class ReceiverFactory:
    """Start servers for one test and stop every one of them at teardown."""

    def __init__(self, environment: ReceiverEnvironment, workdir: Path) -> None:
        self.environment = environment
        self.workdir = workdir
        self.started: list[ReceiverProcess] = []

    def start(self) -> ReceiverProcess:
        """Start a new server with the factory's environment and certificate directory."""
        receiver = ReceiverProcess(self.environment, self.workdir)
        self.started.append(receiver)
        return receiver.start()

    def stop_all(self) -> None:
        for receiver in self.started:
            receiver.stop()


def fixture_body(name: str, meeting_id: str | None = None) -> bytes:
    """Return the exact bytes of a shared Reclaim fixture, optionally with another meeting id.

    The meeting id is replaced in the raw bytes, so whitespace and escapes stay as in the file.
    """
    body = (FIXTURES_DIR / name).read_bytes()
    if meeting_id is None:
        return body
    original = json.loads(body)["meeting"]["meeting_id"].encode("utf-8")
    assert body.count(original) == 1, f"{name} must name its meeting id once"
    return body.replace(original, meeting_id.encode("utf-8"))


def copy_fixture(name: str, directory: Path) -> Path:
    """Copy a shared fixture into ``directory`` and return the copy's path."""
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(FIXTURES_DIR / name, directory / name))


def event_headers(body: bytes, signature: str | None) -> dict[str, str]:
    """Return the headers Reclaim sends with ``body``: content type, api version, type and signature.

    :param body: A JSON event body. The api version and type headers are left out when the
        body is not a JSON object or lacks the field.
    :param signature: Value of ``x-reclaim-signature-256``, or None to leave the header out.
    """
    headers = {"Content-Type": "application/json"}
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        if isinstance(parsed.get("api_version"), str):
            headers["x-reclaim-api-version"] = parsed["api_version"]
        if isinstance(parsed.get("type"), str):
            headers["x-reclaim-webhook-type"] = parsed["type"]
    if signature is not None:
        headers["x-reclaim-signature-256"] = signature
    return headers


@dataclass(frozen=True)
class RawResponse:
    """Status and parsed JSON body of a response read with ``http.client``."""

    status: int
    payload: Any


def post_raw(
    receiver: ReceiverProcess,
    path: str,
    body: bytes,
    headers: Sequence[tuple[str, str | bytes]],
    content_length: int | None = None,
) -> RawResponse:
    """POST with ``http.client``, which can repeat a header and send raw non-ASCII header bytes.

    :param receiver: The server to send to, over TLS verified with its certificate.
    :param path: Request path, such as ``/reclaim/webhooks/reclaim_http``.
    :param body: Bytes sent after the headers.
    :param headers: Header names and values, in order. A name may repeat. A bytes value is sent as is.
    :param content_length: ``Content-Length`` to declare. The default is ``len(body)``.
    """
    context = ssl.create_default_context(cafile=str(receiver.certfile))
    connection = http.client.HTTPSConnection("127.0.0.1", receiver.port, context=context, timeout=30)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body) if content_length is None else content_length))
        connection.endheaders(body)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()

    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw
    return RawResponse(response.status, payload)
