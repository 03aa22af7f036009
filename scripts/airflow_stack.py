"""
Run a real Airflow deployment (API server, scheduler, DAG processor, triggerer) for end-to-end tests.

``AirflowStack`` builds a throwaway ``AIRFLOW_HOME`` with a SQLite metadata database and the
``LocalExecutor``, starts each Airflow component as its own process group, and talks to the public
REST API (``/api/v2``) on 127.0.0.1. Use it as a context manager or from a pytest fixture::

    @pytest.fixture(scope="module")
    def airflow_stack(tmp_path_factory):
        with AirflowStack(tmp_path_factory.mktemp("airflow")) as stack:
            yield stack

The stack never imports Airflow into the calling process. Everything goes through subprocesses and HTTP, so a
test runs the provider the way a deployment runs it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

#: Components ``start()`` launches by default, in start order.
ALL_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")

#: DAG run states after which the scheduler no longer changes the run.
TERMINAL_DAG_RUN_STATES = frozenset({"success", "failed"})

#: Environment variables that would point the child processes at another Airflow installation.
_INHERITED_AIRFLOW_PREFIXES = ("AIRFLOW__", "AIRFLOW_HOME", "AIRFLOW_CONFIG")

_AUTH_USERNAME = "e2e"


class AirflowStackError(RuntimeError):
    """Raised when an Airflow component fails to start, or a wait on the stack times out."""


def find_free_port() -> int:
    """
    Return a TCP port on 127.0.0.1 that was free when this function ran.

    The socket is closed before the caller binds the port, so another process could take it first.
    This race is accepted because each test run starts only a few servers.
    """
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """
    Write a self-signed certificate and its private key for 127.0.0.1 and localhost.

    The certificate is its own CA, so passing its path as the trust store is enough for the harness, the
    Airflow task workers (which trust ``[api] ssl_cert``) and any other client in the test.

    :param directory: Directory to write the certificate and key into. It is created if missing.
    :return: The certificate path and the private key path.
    """
    from airflow_provider_reclaim.receiver.tls import write_self_signed_certificate

    paths = write_self_signed_certificate(directory, hosts=("127.0.0.1", "localhost"))
    return Path(paths.certfile), Path(paths.keyfile)


class AirflowStack:
    """
    A throwaway Airflow deployment whose components run as separate process groups on 127.0.0.1.

    :param home: Empty or missing directory to use as ``AIRFLOW_HOME``. Logs, the SQLite database,
        ``plugins/`` and (unless ``dags_folder`` is given) ``dags/`` live here.
    :param dags_folder: Directory the DAG processor reads. Defaults to ``<home>/dags``. Files in
        ``dag_files`` are copied into it.
    :param dag_files: DAG files to copy into the DAGs folder before the components start.
    :param plugin_files: Plugin files to copy into ``<home>/plugins`` before the components start.
    :param env: Extra environment variables for every Airflow process, for example ``AIRFLOW_CONN_...``
        connections or ``AIRFLOW__SECTION__KEY`` overrides. They are applied after the harness settings.
    :param ssl_cert: PEM certificate for the API server. With ``ssl_key`` it switches the API server and the
        execution API to HTTPS. The harness and the task workers use this file as their trust store, so it
        must be self-signed and name IP 127.0.0.1 (``make_self_signed_cert`` writes one).
    :param ssl_key: PEM private key for ``ssl_cert``.
    :param components: Airflow commands to start, a subset of ``ALL_COMPONENTS``. A test that only
        needs the REST API or plugins can start ``("api-server",)`` alone.
    :param all_admins: Set ``[core] simple_auth_manager_all_admins``. When ``True``, every request is an
        admin request, with or without a token. When ``False``, the harness creates user ``e2e`` with the
        admin role and fetches a token for it with its password.
    :param parallelism: ``[core] parallelism``. The ``LocalExecutor`` forks this many worker processes when
        the scheduler starts, so keep it small on small machines.
    :param start_timeout: Seconds to wait for ``db migrate`` and for the components to report healthy.
    """

    def __init__(
        self,
        home: Path | str,
        *,
        dags_folder: Path | str | None = None,
        dag_files: Iterable[Path | str] = (),
        plugin_files: Iterable[Path | str] = (),
        env: Mapping[str, str] | None = None,
        ssl_cert: Path | str | None = None,
        ssl_key: Path | str | None = None,
        components: Sequence[str] = ALL_COMPONENTS,
        all_admins: bool = True,
        parallelism: int = 4,
        start_timeout: float = 180.0,
    ) -> None:
        unknown = set(components) - set(ALL_COMPONENTS)
        if unknown:
            raise ValueError(
                f"Invalid Airflow components {sorted(unknown)}. Expected a subset of {ALL_COMPONENTS}"
            )
        if "api-server" not in components:
            raise ValueError("components must include 'api-server', because every helper uses the REST API")
        if (ssl_cert is None) != (ssl_key is None):
            raise ValueError("ssl_cert and ssl_key must be given together")

        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve() if dags_folder else self.home / "dags"
        self.plugins_folder = self.home / "plugins"
        self.logs_folder = self.home / "logs"
        self.ssl_cert = Path(ssl_cert).resolve() if ssl_cert else None
        self.ssl_key = Path(ssl_key).resolve() if ssl_key else None
        self.components = tuple(components)
        self.all_admins = all_admins
        self.parallelism = parallelism
        self.start_timeout = start_timeout
        self.port = find_free_port()
        self.scheme = "https" if self.ssl_cert else "http"
        self.base_url = f"{self.scheme}://127.0.0.1:{self.port}"

        #: Seconds from ``start()`` until every component reported healthy, set by ``start()``.
        self.startup_seconds: float | None = None

        self._dag_files = [Path(path) for path in dag_files]
        self._plugin_files = [Path(path) for path in plugin_files]
        self._extra_env = dict(env or {})
        self._password = secrets.token_urlsafe(16)
        self._processes: dict[str, subprocess.Popen] = {}
        self._log_handles: list[Any] = []
        self._client: httpx.Client | None = None
        self._token: str | None = None
        self._started = False

        self.home.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.plugins_folder.mkdir(parents=True, exist_ok=True)
        self.logs_folder.mkdir(parents=True, exist_ok=True)
        self.env = self._build_env()

    def _airflow_settings(self) -> dict[str, str]:
        """Return the ``AIRFLOW__SECTION__KEY`` settings every component shares."""
        from cryptography.fernet import Fernet

        settings = {
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            # The API server, the scheduler and the task workers sign and check each other's JWTs, and the
            # triggerer decrypts trigger kwargs, so every process needs the same keys. Setting them here
            # keeps them independent of the airflow.cfg that the first command writes.
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(self.all_admins),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{_AUTH_USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            # Task workers reach the execution API through this URL. Airflow derives the same value from
            # [api] base_url when it is unset, so this only makes the URL visible in one place.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
            # The local bundle lists the DAGs folder only every refresh_interval seconds (300 by default),
            # and the DAG processor checks whether a refresh is due every bundle_refresh_check_interval
            # seconds (5). Together they bound how long a new DAG file waits before it is parsed.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            # Within this window the DAG processor skips writing a changed DAG, and the API server serves
            # its cached copy (30 s by default). Tests that rewrite a DAG file need the change at once.
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
            # Files that did not change are parsed again after this many seconds. Changed files are parsed
            # on the next pass anyway, so the default of 30 s only costs CPU when lowered.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
            # Component logs are files, so terminal colour codes would only clutter them.
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        }
        if self.ssl_cert and self.ssl_key:
            # The api-server command reads these as flag defaults, and the Task SDK client of each worker
            # adds [api] ssl_cert to its trust store so that it accepts the self-signed certificate.
            settings["AIRFLOW__API__SSL_CERT"] = str(self.ssl_cert)
            settings["AIRFLOW__API__SSL_KEY"] = str(self.ssl_key)
        return settings

    def _build_env(self) -> dict[str, str]:
        """Return the process environment for Airflow commands, without any inherited Airflow settings."""
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(_INHERITED_AIRFLOW_PREFIXES)
        }
        env["AIRFLOW_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        # Keep the task workers' HTTP client from sending execution API calls to a proxy from the
        # environment: every server of the stack is on 127.0.0.1.
        for key in ("NO_PROXY", "no_proxy"):
            env[key] = ",".join(filter(None, [env.get(key), "127.0.0.1", "localhost"]))
        env.update(self._airflow_settings())
        env.update(self._extra_env)
        return env

    def write_dag(self, filename: str, source: str) -> Path:
        """
        Write a DAG file into the DAGs folder atomically.

        The file is written under a temporary name without a ``.py`` suffix and then renamed, so the DAG
        processor never parses a partly written file.

        :param filename: File name inside the DAGs folder, for example ``"my_dag.py"``.
        :param source: Python source of the DAG file.
        :return: Path of the written file.
        """
        return self._write_atomically(self.dags_folder / filename, source)

    def write_plugin(self, filename: str, source: str) -> Path:
        """
        Write a plugin file into ``<home>/plugins``.

        Airflow loads plugins when a component starts, so plugins must be written before ``start()``.

        :param filename: File name inside the plugins folder, for example ``"probe.py"``.
        :param source: Python source defining an ``AirflowPlugin`` subclass.
        :return: Path of the written file.
        """
        if self._started:
            raise AirflowStackError(
                f"Plugin {filename!r} was written after start(); the running components will not load it. "
                "Write plugins before start()."
            )
        return self._write_atomically(self.plugins_folder / filename, source)

    @staticmethod
    def _write_atomically(path: Path, source: str) -> Path:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(source)
        temporary.replace(path)
        return path

    def _copy_files(self) -> None:
        for path in self._dag_files:
            shutil.copy2(path, self.dags_folder / path.name)
        for path in self._plugin_files:
            shutil.copy2(path, self.plugins_folder / path.name)
        if not self.all_admins:
            (self.home / "passwords.json").write_text(json.dumps({_AUTH_USERNAME: self._password}))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Self:
        """
        Migrate the metadata database, start the components and wait until all of them are healthy.

        If any step fails, the processes started so far are stopped before the error propagates.

        :return: This stack, so that ``stack = AirflowStack(...).start()`` works.
        """
        if self._started:
            raise AirflowStackError("The stack was already started")
        self._started = True
        atexit.register(self.stop)
        started_at = time.monotonic()

        try:
            self._copy_files()
            self._migrate_database()
            for component in self.components:
                self._start_component(component)
            self._wait_until_healthy(started_at + self.start_timeout)
        except BaseException:
            self.stop()
            raise

        self.startup_seconds = time.monotonic() - started_at
        log.info("Airflow stack at %s is healthy after %.1f s", self.base_url, self.startup_seconds)
        return self

    def _airflow_command(self, *args: str) -> list[str]:
        # The interpreter running the tests is the one with Airflow and the provider installed.
        return [sys.executable, "-m", "airflow", *args]

    def _migrate_database(self) -> None:
        log_path = self.logs_folder / "db-migrate.log"
        started_at = time.monotonic()
        with log_path.open("wb") as log_file:
            result = subprocess.run(
                self._airflow_command("db", "migrate"),
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=self.start_timeout,
                check=False,
            )
        if result.returncode != 0:
            raise AirflowStackError(
                f"'airflow db migrate' failed with exit code {result.returncode}:\n{self.log_tail('db-migrate')}"
            )
        log.info("Migrated the metadata database in %.1f s", time.monotonic() - started_at)

        # SQLite's default rollback journal makes every writer block all readers. Write-ahead logging lets
        # the five or more processes of the stack read while one of them writes. The mode is stored in the
        # database file, so setting it once is enough.
        with closing(sqlite3.connect(self.home / "airflow.db")) as connection:
            connection.execute("PRAGMA journal_mode=WAL")

    def _start_component(self, component: str) -> None:
        args = [component]
        if component == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.port)]
            if self.ssl_cert and self.ssl_key:
                args += ["--ssl-cert", str(self.ssl_cert), "--ssl-key", str(self.ssl_key)]
        elif component in ("scheduler", "triggerer"):
            # Without this flag each of them serves logs on a fixed port (8793 and 8794), so two stacks on
            # one machine would collide. The API server reads task logs from local files instead.
            args.append("--skip-serve-logs")

        log_file = (self.logs_folder / f"{component}.log").open("ab")
        self._log_handles.append(log_file)
        process = subprocess.Popen(
            self._airflow_command(*args),
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own process group, so stop() can signal the component together with its children
            # (LocalExecutor workers, task supervisors, the triggerer's runner process).
            start_new_session=True,
            # The function only makes one system call, so the thread-safety risk of preexec_fn is small.
            preexec_fn=_make_parent_death_signal_setter(),  # noqa: PLW1509
        )
        self._processes[component] = process
        log.info("Started airflow %s with pid %d", component, process.pid)

    def _wait_until_healthy(self, deadline: float) -> None:
        expected = {"metadatabase"} | {
            {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}[name]
            for name in self.components
            if name != "api-server"
        }
        last_problem = "no response yet"
        while time.monotonic() < deadline:
            self._raise_if_exited()
            try:
                response = self.client.get("/api/v2/monitor/health", timeout=5)
            except httpx.TransportError as error:
                last_problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    health = response.json()
                    unhealthy = {
                        name: (health.get(name) or {}).get("status")
                        for name in expected
                        if (health.get(name) or {}).get("status") != "healthy"
                    }
                    if not unhealthy:
                        return
                    last_problem = f"components not healthy yet: {unhealthy}"
                else:
                    last_problem = f"HTTP {response.status_code}: {response.text[:200]}"
            time.sleep(0.5)

        raise AirflowStackError(
            f"Airflow stack at {self.base_url} timed out: not healthy within {self.start_timeout:.0f} s "
            f"({last_problem}).\n{self.format_log_tails()}"
        )

    def _raise_if_exited(self) -> None:
        for component, process in self._processes.items():
            code = process.poll()
            if code is not None:
                raise AirflowStackError(
                    f"airflow {component} exited with code {code}.\n{self.log_tail(component)}"
                )

    def stop(self, timeout: float = 15.0) -> None:
        """
        Stop every process group that this stack started.

        Each group gets SIGTERM, and a group that still has live processes after ``timeout`` seconds gets
        SIGKILL. Signalling the group rather than the leader also stops the LocalExecutor workers and task
        processes. Calling ``stop()`` again does nothing.

        :param timeout: Seconds to wait after SIGTERM before sending SIGKILL.
        """
        atexit.unregister(self.stop)
        if self._client is not None:
            self._client.close()
            self._client = None

        groups = {component: process.pid for component, process in self._processes.items()}
        stopping_at = time.monotonic()
        for component, pgid in groups.items():
            if _signal_group(pgid, signal.SIGTERM):
                log.info("Sent SIGTERM to airflow %s (process group %d)", component, pgid)

        deadline = time.monotonic() + timeout
        for component, pgid in groups.items():
            self._wait_or_kill(component, pgid, deadline, timeout)

        if groups:
            log.info(
                "Stopped %d Airflow process groups in %.1f s", len(groups), time.monotonic() - stopping_at
            )
        self._processes.clear()
        for handle in self._log_handles:
            handle.close()
        self._log_handles.clear()

    def _wait_or_kill(self, component: str, pgid: int, deadline: float, timeout: float) -> None:
        if _wait_for_group_exit(self._processes[component], pgid, deadline):
            return
        log.warning(
            "airflow %s (process group %d) still running %.0f s after SIGTERM; sending SIGKILL",
            component,
            pgid,
            timeout,
        )
        _signal_group(pgid, signal.SIGKILL)
        if not _wait_for_group_exit(self._processes[component], pgid, time.monotonic() + 5):
            log.error("Process group %d of airflow %s survived SIGKILL", pgid, component)

    def stop_component(self, component: str, timeout: float = 15.0) -> None:
        """
        Stop one running component's process group, as :meth:`stop` does for all of them.

        :param component: A component this stack started, such as ``"triggerer"``.
        :param timeout: Seconds to wait after SIGTERM before sending SIGKILL.
        """
        process = self._processes[component]
        if _signal_group(process.pid, signal.SIGTERM):
            log.info("Sent SIGTERM to airflow %s (process group %d)", component, process.pid)
        self._wait_or_kill(component, process.pid, time.monotonic() + timeout, timeout)
        del self._processes[component]

    def start_component(self, component: str) -> None:
        """
        Start one component again after :meth:`stop_component`, and wait until it reports healthy.

        :param component: One of the stack's components.
        """
        if component in self._processes:
            raise ValueError(f"airflow {component} is already running")
        if component not in self.components:
            raise ValueError(f"{component!r} is not one of this stack's components {self.components}")
        self._start_component(component)
        self._wait_until_healthy(time.monotonic() + self.start_timeout)

    def log_path(self, component: str) -> Path:
        """
        Return the path of a component's combined stdout and stderr log.

        :param component: One of ``ALL_COMPONENTS`` or ``"db-migrate"``.
        """
        return self.logs_folder / f"{component}.log"

    def log_tail(self, component: str, lines: int = 40) -> str:
        """
        Return the last lines of a component's log, headed by the component name.

        :param component: One of ``ALL_COMPONENTS`` or ``"db-migrate"``.
        :param lines: Maximum number of lines to return.
        """
        path = self.log_path(component)
        if not path.exists():
            return f"----- {component}: no log file at {path}"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join([f"----- last {len(tail)} lines of {path}", *tail])

    def format_log_tails(self, lines: int = 40) -> str:
        """
        Return the last lines of every started component's log, for a failure message.

        :param lines: Maximum number of lines per component.
        """
        return "\n".join(self.log_tail(component, lines) for component in self.components)

    @property
    def client(self) -> httpx.Client:
        """An ``httpx.Client`` bound to the API server, trusting ``ssl_cert`` when HTTPS is on."""
        if self._client is None:
            verify: ssl.SSLContext | bool = True
            if self.ssl_cert:
                verify = ssl.create_default_context(cafile=str(self.ssl_cert))
            # trust_env=False: proxy variables from the environment must never redirect loopback traffic.
            self._client = httpx.Client(base_url=self.base_url, verify=verify, timeout=30, trust_env=False)
        return self._client

    def get_token(self) -> str:
        """
        Return a JWT for the public REST API from the simple auth manager, fetched once and cached.

        With ``all_admins`` the token comes from ``GET /auth/token``, which needs no credentials. Otherwise
        it comes from ``POST /auth/token`` with user ``e2e`` and the password the harness generated.
        """
        if self._token is None:
            if self.all_admins:
                response = self.client.get("/auth/token")
            else:
                response = self.client.post(
                    "/auth/token", json={"username": _AUTH_USERNAME, "password": self._password}
                )
            _raise_for_status(response)
            self._token = response.json()["access_token"]
        return self._token

    def api_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """
        Send an authenticated request to the API server and return the response without checking it.

        :param method: HTTP method.
        :param path: Path on the API server, for example ``"/api/v2/dags"``.
        :param kwargs: Passed to ``httpx.Client.request`` (``json``, ``params``, ...).
        """
        headers = {"Authorization": f"Bearer {self.get_token()}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def api_get(self, path: str, **params: Any) -> Any:
        """
        Send an authenticated GET request and return the decoded JSON body.

        :param path: Path on the API server, for example ``"/api/v2/dags"``.
        :param params: Query parameters.
        :raises httpx.HTTPStatusError: If the response status is 400 or higher.
        """
        response = self.api_request("GET", path, params=params)
        _raise_for_status(response)
        return response.json()

    def _api_get_all(self, path: str, items_key: str, **params: Any) -> list[dict[str, Any]]:
        """Return every item of a paginated list endpoint, following ``offset`` up to ``total_entries``."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.api_get(path, offset=len(items), limit=100, **params)
            items.extend(page[items_key])
            if not page[items_key] or len(items) >= page["total_entries"]:
                return items

    def dag(self, dag_id: str) -> dict[str, Any]:
        """
        Return the DAG as ``GET /api/v2/dags/{dag_id}`` describes it.

        :param dag_id: DAG id.
        """
        return self.api_get(f"/api/v2/dags/{dag_id}")

    def import_errors(self) -> list[dict[str, Any]]:
        """Return the DAG import errors the DAG processor recorded (``filename`` and ``stack_trace``)."""
        return self._api_get_all("/api/v2/importErrors", "import_errors")

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """
        Wait until the DAG processor has parsed the DAG and the API server returns it.

        :param dag_id: DAG id.
        :param timeout: Seconds to wait.
        :return: The DAG from ``GET /api/v2/dags/{dag_id}``.
        :raises AirflowStackError: On timeout, with the recorded import errors and the DAG processor log.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.api_request("GET", f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            if response.status_code != 404:
                _raise_for_status(response)
            self._raise_if_exited()
            time.sleep(0.5)

        raise AirflowStackError(
            f"DAG {dag_id!r} was not parsed within {timeout:.0f} s. "
            f"Import errors: {json.dumps(self.import_errors(), indent=2)}\n{self.log_tail('dag-processor')}"
        )

    def unpause(self, dag_id: str) -> dict[str, Any]:
        """
        Unpause a DAG and ask the DAG processor to parse its file again.

        The DAG processor registers asset watcher triggers only for DAGs that are not paused, and it does so
        while parsing. Without the parse request, the watchers of a newly unpaused DAG would start only
        after the next scheduled parse, up to ``[dag_processor] min_file_process_interval`` seconds later.

        :param dag_id: DAG id.
        :return: The updated DAG.
        """
        response = self.api_request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        _raise_for_status(response)
        dag = response.json()

        details = self.dag(dag_id)
        reparse = self.api_request("PUT", f"/api/v2/parseDagFile/{details['file_token']}")
        _raise_for_status(reparse)
        return dag

    def asset(self, name: str) -> dict[str, Any] | None:
        """
        Return the asset with this exact name, or ``None`` if no parsed DAG defines it.

        :param name: Asset name.
        :return: The asset, with ``watchers`` (``name`` and ``trigger_id`` of each registered watcher)
            and ``last_asset_event``.
        """
        # name_pattern is a case-insensitive substring match, so the exact match is picked here.
        for asset in self._api_get_all("/api/v2/assets", "assets", name_pattern=name):
            if asset["name"] == name:
                return asset
        return None

    def wait_for_asset_watchers(self, name: str, count: int = 1, timeout: float = 60.0) -> dict[str, Any]:
        """
        Wait until ``count`` watchers of the asset are registered as triggers.

        The DAG processor registers watchers only while the DAG that schedules on the asset is unpaused.
        A registered watcher runs in the triggerer about one second later.

        :param name: Asset name.
        :param count: Number of watchers to wait for.
        :param timeout: Seconds to wait.
        :return: The asset.
        :raises AirflowStackError: On timeout, with the DAG processor and triggerer logs.
        """
        deadline = time.monotonic() + timeout
        asset = None
        watchers = None
        while time.monotonic() < deadline:
            asset = self.asset(name)
            if asset is not None:
                watchers = len(asset["watchers"]) if "watchers" in asset else self._count_asset_triggers(name)
                if watchers >= count:
                    return asset
            self._raise_if_exited()
            time.sleep(0.5)

        raise AirflowStackError(
            f"Asset {name!r} did not get {count} registered watcher(s) within {timeout:.0f} s "
            f"(watchers: {watchers}). Is the DAG scheduled on it unpaused?\n"
            f"{self.log_tail('dag-processor')}\n{self.log_tail('triggerer')}"
        )

    def _count_asset_triggers(self, name: str) -> int:
        """Count the asset's registered triggers in the metadata database.

        Airflow 3.1's REST API does not list an asset's watchers, so the harness reads the
        ``asset_trigger`` association table of its own SQLite database instead.
        """
        query = "SELECT count(*) FROM asset_trigger JOIN asset ON asset.id = asset_trigger.asset_id WHERE asset.name = ?"
        with closing(sqlite3.connect(self.home / "airflow.db", timeout=10)) as connection:
            return connection.execute(query, (name,)).fetchone()[0]

    def trigger_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """
        Create a manual DAG run with a logical date of now.

        :param dag_id: DAG id.
        :param conf: Run configuration passed as ``dag_run.conf``.
        :return: The created DAG run.
        """
        body = {"logical_date": datetime.now(timezone.utc).isoformat(), "conf": dict(conf or {})}
        response = self.api_request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        _raise_for_status(response)
        return response.json()

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """
        Return every run of a DAG, oldest first.

        :param dag_id: DAG id.
        :return: DAG runs as the API returns them, with ``dag_run_id``, ``state``, ``run_type``,
            ``run_after``, ``conf`` and more.
        """
        return self._api_get_all(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs", order_by="run_after")

    def wait_for_dag_run(
        self, dag_id: str, *, state: str = "success", timeout: float = 90.0
    ) -> dict[str, Any]:
        """
        Wait until a run of the DAG reaches ``state``.

        :param dag_id: DAG id.
        :param state: Expected DAG run state.
        :param timeout: Seconds to wait.
        :return: The first run found in ``state``.
        :raises AirflowStackError: If a run ends in another terminal state, or on timeout. The message
            contains the runs, their task instances and the component logs.
        """
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.dag_runs(dag_id)
            for run in runs:
                if run["state"] == state:
                    return run
                if run["state"] in TERMINAL_DAG_RUN_STATES:
                    raise AirflowStackError(
                        f"DAG run {run['dag_run_id']} of {dag_id!r} ended in state {run['state']!r}, "
                        f"expected {state!r}.\n{self._describe_runs(dag_id, runs)}"
                    )
            self._raise_if_exited()
            time.sleep(0.5)

        raise AirflowStackError(
            f"No run of {dag_id!r} reached state {state!r} within {timeout:.0f} s.\n"
            f"{self._describe_runs(dag_id, runs)}"
        )

    def _describe_runs(self, dag_id: str, runs: list[dict[str, Any]]) -> str:
        lines = [f"Runs of {dag_id!r}: {len(runs)}"]
        for run in runs:
            lines.append(f"  {run['dag_run_id']}: {run['state']} ({run['run_type']})")
            for ti in self.task_instances(dag_id, run["dag_run_id"]):
                lines.append(f"    {ti['task_id']}[{ti['map_index']}]: {ti['state']}")
        lines.append(self.format_log_tails())
        return "\n".join(lines)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """
        Return every task instance of a DAG run, including each expanded instance of a mapped task.

        :param dag_id: DAG id.
        :param run_id: DAG run id.
        :return: Task instances with ``task_id``, ``map_index`` (-1 for unmapped tasks), ``state``,
            ``try_number`` and more, ordered by task id and map index.
        """
        instances = self._api_get_all(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances"
        )
        return sorted(instances, key=lambda ti: (ti["task_id"], ti["map_index"]))

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[str]:
        """
        Return the ``event`` text of each message in one task try's log.

        :param dag_id: DAG id.
        :param run_id: DAG run id.
        :param task_id: Task id.
        :param try_number: Try number, starting at 1.
        :param map_index: Map index of a mapped task instance, or -1 for an unmapped task.
        """
        body = self.api_get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            map_index=map_index,
            full_content=True,
        )
        # Lines that Airflow cannot parse as structured messages come back as plain strings.
        return [line if isinstance(line, str) else line.get("event", "") for line in body["content"]]

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """
        Return the value of one XCom entry as the API returns it without ``deserialize``.

        A value that a task returns as JSON types (``int``, ``str``, ``list``, ``dict``) compares equal to
        the result. Other types come back in Airflow's serialized form.

        :param dag_id: DAG id.
        :param run_id: DAG run id.
        :param task_id: Task id.
        :param key: XCom key. Task return values use ``"return_value"``.
        :param map_index: Map index of a mapped task instance, or -1 for an unmapped task.
        :raises httpx.HTTPStatusError: With status 404 if the entry does not exist.
        """
        entry = self.api_get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            map_index=map_index,
        )
        return entry["value"]


def _make_parent_death_signal_setter() -> Callable[[], None] | None:
    """
    Return a ``preexec_fn`` that makes Linux send SIGTERM to the child when its parent thread exits.

    atexit handlers do not run when the test process is killed by a signal, for example by a CI timeout.
    With this setting the component still gets SIGTERM and shuts its own children down. Linux sends the
    signal when the thread that started the child exits, so start a stack from a thread that lives as long
    as the stack. Returns ``None`` on other systems.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    # Resolved in the parent, so the child runs no dynamic loading between fork and exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return set_parent_death_signal


def _raise_for_status(response: httpx.Response) -> None:
    """Raise ``httpx.HTTPStatusError`` with the response body in the message."""
    if response.is_error:
        raise httpx.HTTPStatusError(
            f"{response.request.method} {response.request.url} returned HTTP {response.status_code}: "
            f"{response.text[:1000]}",
            request=response.request,
            response=response,
        )


def _signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send a signal to a process group and return whether the group still existed."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _live_group_members(pgid: int) -> list[int]:
    """
    Return the ids of processes in a process group that are not zombies.

    Reads ``/proc``, because ``os.killpg(pgid, 0)`` also succeeds for zombies, which stay until their
    parent reaps them. Orphans are reparented to PID 1, and a container's PID 1 may never reap them.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces, so split after its closing one.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _wait_for_group_exit(leader: subprocess.Popen, pgid: int, deadline: float) -> bool:
    """Return whether the leader was reaped and no other live process remained in its group by the deadline."""
    while True:
        # Reaping the leader here keeps it from lingering as a zombie in its own group.
        leader.poll()
        if leader.returncode is not None and not _live_group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
