"""A single-node Apache Kafka broker (KRaft, broker + controller) on loopback, for the test tier.

Same surface as ``EmbeddedBroker`` (``.bootstrap``, ``.port``, context manager), plus
``restart()``: the data directory outlives ``stop()``, so a restarted broker has every
topic, message and committed offset (Tansu keeps them in memory and cannot do this).

The jars are fetched once by ``make kafka-jars`` (Maven, infra/kafka/pom.xml) into
``.distillwatch/kafka-lib/``; nothing is downloaded here. Needs a Java 17+ runtime.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from string import Template

from jobs.embedded_broker import BrokerStartError, free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
INFRA_DIR = ROOT / "infra" / "kafka"
DEFAULT_LIB_DIR = ROOT / ".distillwatch" / "kafka-lib"
LIB_DIR_ENV = "DW_TEST_KAFKA_LIB"  # another jar directory, e.g. a shared cache in CI
JVM_OPTS = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            "-Dlog4j2.statusLoggerLevel=OFF"]  # log4j2 is on the classpath but unused: silence its missing-config note


class KafkaNotInstalled(BrokerStartError):
    """The jars or a Java runtime are missing; the message says how to get them."""


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise KafkaNotInstalled("Apache Kafka needs a Java 17+ runtime: no `java` on PATH and JAVA_HOME is not set "
                                "(install openjdk-17-jre-headless)")
    return found


def find_lib_dir(lib_dir: Path | None = None) -> Path:
    lib = lib_dir or Path(os.environ.get(LIB_DIR_ENV) or DEFAULT_LIB_DIR)
    if not any(lib.glob("kafka_2.13-*.jar")) or not any(lib.glob("kafka-clients-*.jar")):
        raise KafkaNotInstalled(f"no Apache Kafka jars in {lib}: run `make kafka-jars` once (needs Maven and access "
                                f"to Maven Central), or point {LIB_DIR_ENV} at a directory holding them")
    return lib


def check_installed(lib_dir: Path | None = None) -> tuple[str, Path]:
    """(java, jar directory), or KafkaNotInstalled naming what is missing."""
    return find_java(), find_lib_dir(lib_dir)


def _cluster_id() -> str:
    # Kafka's format: a UUID as unpadded URL-safe base64 (what `kafka-storage random-uuid` prints).
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _metadata_brokers(port: int, timeout_s: float = 1.0) -> int:
    """Brokers listed in a Metadata (v4) response from 127.0.0.1:port; OSError while it does not answer.

    A KRaft broker lists itself only once it is unfenced, i.e. ready to create topics and serve clients.
    """
    client_id = b"distillwatch-probe"
    # Request header v1 (api_key 3 = Metadata, version 4, correlation id, client id), then
    # topics = null (all) and allow_auto_topic_creation = false.
    body = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">ib", -1, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        head = _recv_exact(sock, 4)
        (size,) = struct.unpack(">i", head)
        payload = _recv_exact(sock, size)
    correlation_id, _throttle_ms, n_brokers = struct.unpack(">iii", payload[:12])
    if correlation_id != 1:
        raise OSError(f"unexpected Metadata response (correlation id {correlation_id})")
    return int(n_brokers)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed by the broker")
        buf += chunk
    return buf


class ApacheKafkaBroker:
    """An Apache Kafka process on loopback. ``stop()`` keeps the data; leaving the context manager
    also deletes the data directory when this object created it (no ``data_dir`` given)."""

    def __init__(self, port: int | None = None, log_path: Path | None = None, *, data_dir: Path | None = None,
                 lib_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self._owns_data_dir = data_dir is None
        self.data_dir = data_dir
        self.log_path = log_path
        self.lib_dir = lib_dir
        self._proc: subprocess.Popen[bytes] | None = None  # named like EmbeddedBroker's (bench reads its pid)
        self.start_seconds: list[float] = []  # how long each start took, for reports

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 90.0) -> ApacheKafkaBroker:
        """Start (formatting the data directory on first use) and wait until it serves metadata."""
        if self.running:
            return self
        t0 = time.monotonic()
        java, lib = check_installed(self.lib_dir)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="dw-kafka-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or self.data_dir / "broker.log"
        config = self._write_config()
        classpath = f"{lib}{os.sep}*"
        logging_opt = f"-Dlog4j.configuration={(INFRA_DIR / 'log4j.properties').as_uri()}"
        with open(log_path, "ab") as log:
            if not (self.data_dir / "kafka-logs" / "meta.properties").exists():
                formatted = subprocess.run(
                    [java, *JVM_OPTS, logging_opt, "-cp", classpath, "kafka.tools.StorageTool", "format",
                     f"--cluster-id={_cluster_id()}",  # one token: an id may start with "-"
                     "--config", str(config)],
                    stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False)
                if formatted.returncode != 0:
                    raise BrokerStartError(f"formatting the Kafka data directory failed ({formatted.returncode}); "
                                           f"see {log_path}:\n{_tail(log_path)}")
            self._proc = subprocess.Popen(
                [java, *JVM_OPTS, logging_opt, "-cp", classpath, "kafka.Kafka", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.data_dir,
            )
        try:
            self._wait_ready(timeout_s, log_path)
        except BaseException:
            self.stop()
            raise
        self.start_seconds.append(time.monotonic() - t0)
        return self

    def _write_config(self) -> Path:
        assert self.data_dir is not None
        template = Template((INFRA_DIR / "server.properties").read_text())
        text = template.substitute(port=self.port, controller_port=self.controller_port,
                                   log_dir=self.data_dir / "kafka-logs")
        path = self.data_dir / "server.properties"
        path.write_text(text)
        return path

    def _wait_ready(self, timeout_s: float, log_path: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerStartError(f"Apache Kafka exited with status {self._proc.returncode} before serving "
                                       f"{self.bootstrap}; see {log_path}:\n{_tail(log_path)}")
            with contextlib.suppress(OSError, struct.error):
                if _metadata_brokers(self.port) >= 1:
                    return
            time.sleep(0.1)
        raise BrokerStartError(f"Apache Kafka did not serve metadata on {self.bootstrap} within {timeout_s:.0f}s; "
                               f"see {log_path}:\n{_tail(log_path)}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Shut down cleanly (SIGTERM: the log is flushed), SIGKILL after ``timeout_s``. The data stays."""
        proc, self._proc = self._proc, None
        stop_process_group(proc, timeout_s)

    def restart(self, down_s: float = 0.0, timeout_s: float = 90.0) -> ApacheKafkaBroker:
        """Stop, stay down ``down_s`` seconds, start again on the same ports and data directory."""
        self.stop()
        time.sleep(down_s)
        return self.start(timeout_s)

    def close(self) -> None:
        self.stop()
        if self._owns_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> ApacheKafkaBroker:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def apache_kafka(data_dir: Path | None = None, log_path: Path | None = None) -> Iterator[ApacheKafkaBroker]:
    with ApacheKafkaBroker(data_dir=data_dir, log_path=log_path) as broker:
        yield broker
