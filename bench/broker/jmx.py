"""The local broker through JMX: its request counts, a logger's level, its JFR recordings."""

from __future__ import annotations

import collections
import socket
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Broker:
    def __init__(self, pid: int, port: int = 9999) -> None:
        self.pid, self.port = pid, port
        self.classes = Path(tempfile.mkdtemp(prefix="broker-jmx-"))
        subprocess.run(
            ["javac", "-d", str(self.classes), *map(str, HERE.glob("*.java"))], check=True
        )
        if not self._listening():
            self._jcmd(
                "ManagementAgent.start",
                f"jmxremote.port={port}",
                f"jmxremote.rmi.port={port}",
                "jmxremote.authenticate=false",
                "jmxremote.ssl=false",
                "jmxremote.host=127.0.0.1",
            )

    @classmethod
    def local(cls) -> Broker:
        found = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True)
        pids = found.stdout.split()
        if len(pids) != 1:
            raise SystemExit(f"expected one local broker (make up), found pids {pids}")
        return cls(int(pids[0]))

    def requests(self) -> collections.Counter[str]:
        """Requests completed since the broker started, by request type (all versions)."""
        counts: collections.Counter[str] = collections.Counter()
        for line in self._java(
            "Mbeans", "kafka.network:type=RequestMetrics,name=RequestsPerSec,*", "Count"
        ).splitlines():
            props, count = line.split("\t")
            keys = dict(kv.split("=", 1) for kv in props.split(","))
            counts[keys["request"]] += int(count)
        return counts

    def log_level(self, logger: str, level: str) -> None:
        self._java("Level", logger, level)

    def record(self, name: str, to: Path) -> None:
        self._jcmd("JFR.start", f"name={name}", "settings=profile", f"filename={to}")

    def stop_recording(self, name: str) -> None:
        self._jcmd("JFR.stop", f"name={name}")

    def _listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def _jcmd(self, *args: str) -> None:
        subprocess.run(["jcmd", str(self.pid), *args], check=True, capture_output=True)

    def _java(self, main: str, *args: str) -> str:
        return subprocess.run(
            ["java", "-cp", str(self.classes), main, str(self.port), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
