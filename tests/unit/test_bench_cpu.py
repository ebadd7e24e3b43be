"""The bench's pure helpers: /proc parsing, pid discovery, CPU per order and per input, and
the rows the drain and the CPU figures add to the table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import cpu
from bench.drain import rates
from bench.run import rows_of

NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0
   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 5472 1 0
   2: 0100007F:C306 0100007F:2384 01 00000000:00000000 03:000001C6 00000000     0        0 777 3 0
"""
NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 0000000000000000FFFF00000100007F:2384 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9999 1 0
"""  # noqa: E501


def test_stat_fields_are_read_after_a_command_name_with_spaces_and_parentheses() -> None:
    line = "4242 (java (kafka) x) S 1 4242 4242 0 -1 4194560 10 0 0 0 1500 300 70 30 20 0 42 0"
    stat = cpu.parse_stat(line)
    assert (stat.pid, stat.comm, stat.ppid) == (4242, "java (kafka) x", 1)
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime) == (1500, 300, 70, 30)
    assert stat.own == 1800
    assert stat.with_reaped == 1900


def test_the_listener_of_a_port_is_found_in_tcp_and_tcp6_but_not_its_connections() -> None:
    assert cpu.listening_inodes(NET_TCP, 9092) == {4242}  # 0x2384; 777 is a connection to it
    assert cpu.listening_inodes(NET_TCP, 5432) == {5472}
    assert cpu.listening_inodes(NET_TCP6, 9092) == {9999}
    assert cpu.listening_inodes(NET_TCP, 6066) == set()


def test_a_socket_link_gives_its_inode_and_other_links_none() -> None:
    assert cpu.socket_inode("socket:[4242]") == 4242
    assert cpu.socket_inode("/dev/null") is None
    assert cpu.socket_inode("pipe:[4242]") is None


def test_the_postmaster_tree_holds_its_backends_and_their_children_only() -> None:
    parents = {1: 0, 100: 1, 101: 100, 102: 100, 103: 102, 200: 1}
    assert sorted(cpu.descendants(100, parents)) == [100, 101, 102, 103]
    assert cpu.descendants(200, parents) == [200]


def test_ports_come_from_the_bootstrap_list_and_the_database_url() -> None:
    assert cpu.kafka_port("127.0.0.1:9092,other:9093") == 9092
    assert cpu.postgres_port("postgresql://u:p@127.0.0.1:5433/db") == 5433
    assert cpu.postgres_port("postgresql://u:p@localhost/db") == 5432


def test_cpu_per_order_is_milliseconds_of_each_component_and_the_rest_of_the_machine() -> None:
    before = {"broker": 10.0, "worker": 5.0, "driver": 1.0, "machine": 100.0}
    after = {"broker": 12.0, "worker": 9.0, "driver": 1.5, "machine": 110.0}
    got = cpu.summary(cpu.deltas_between(before, after), 1000, 20.0, {"broker": [7]})
    assert got["ms_per_unit"] == pytest.approx({"broker": 2.0, "worker": 4.0, "driver": 0.5})
    assert got["ours_ms_per_unit"] == pytest.approx(6.5)
    assert got["machine_ms_per_unit"] == pytest.approx(10.0)
    assert got["other_ms_per_unit"] == pytest.approx(3.5)


def test_no_order_completed_gives_no_figure_rather_than_a_division_by_zero() -> None:
    assert cpu.per_unit_ms({"worker": 3.0}, 0) == {"worker": None}


def test_the_drain_window_is_cut_from_the_samples_inside_the_first_and_last_output() -> None:
    samples = [
        (1.0, {"worker": 0.0}),  # start-up, before the first output
        (2.0, {"worker": 1.0}),
        (3.0, {"worker": 1.5}),
        (4.0, {"worker": 2.5}),
        (5.0, {"worker": 9.0}),  # after the last output
    ]
    t0, t1, deltas = cpu.window_of(samples, 1.5, 4.5) or (0, 0, {})
    assert (t0, t1) == (2.0, 4.0)
    assert deltas == {"worker": 1.5}
    outputs = [1.6, 2.0, 2.5, 3.0, 3.9, 4.4]
    assert cpu.count_between(outputs, t0, t1) == 4
    assert cpu.window_of(samples, 2.1, 2.9) is None


def test_the_drain_rate_runs_from_the_first_to_the_last_output() -> None:
    got = rates([10.0 + i / 100 for i in range(101)])  # 101 outputs over 1 s
    assert got["per_s"] == pytest.approx(100.0)
    assert got["steady_per_s"] == pytest.approx(100.0)
    assert rates([1.0])["per_s"] is None


def _cpu(units: int, **ms: float) -> dict[str, object]:
    return {
        "units": units,
        "wall_s": 10.0,
        "cpu_s": {k: v * units / 1000 for k, v in ms.items()},
        "ms_per_unit": ms,
        "ours_ms_per_unit": sum(ms.values()),
        "pids": {k: [1] for k in ms},
        "machine_ms_per_unit": sum(ms.values()) + 1.0,
        "other_ms_per_unit": 1.0,
    }


def test_the_table_pairs_the_drain_with_the_faust_relay_and_the_raw_relay() -> None:
    results = {
        "selected": ["baseline", "drain"],
        "baseline": {"relay": [{"msgs_per_s": 100_000.0}]},
        "drain": {
            "inputs": 1000,
            "record_bytes_mean": 428.0,
            "faust_relay": [
                {"outputs": 1000, "per_s": 1500.0, "cpu": _cpu(900, worker=0.4)},
                {"outputs": 1000, "per_s": 2500.0, "cpu": _cpu(900, worker=0.6)},
            ],
            "process_manager": {
                "outputs": 1000,
                "distinct_keys": 1000,
                "all_applied": True,
                "per_s": 500.0,
                "span_s": 2.0,
                "cpu": _cpu(950, worker=1.5, broker=0.4),
            },
            "process_manager_loop": {
                "outputs": 1000,
                "distinct_keys": 1000,
                "all_applied": True,
                "per_s": 12000.0,
                "span_s": 0.1,
            },
        },
    }
    rows = {r["figure"]: r for r in rows_of(results)}
    drain = rows["PM drain, HOT_PATH=agent: inputs/s (1 worker, modules off)"]
    assert drain["ratio"] == pytest.approx(0.25)
    assert "1000/1000 inputs applied" in drain["note"]
    assert rows["PM drain, HOT_PATH=agent vs raw relay"]["ratio"] == pytest.approx(0.005)
    loop = rows["PM drain, HOT_PATH=loop: inputs/s (1 worker, modules off)"]
    assert loop["ratio"] == pytest.approx(6.0)
    assert rows["minimal Faust table relay"]["ratio"] == pytest.approx(0.02)
    assert "before and after the PM: 1,500, 2,500" in rows["minimal Faust table relay"]["note"]
    cpu = "PM drain, HOT_PATH=agent: CPU per input"
    assert rows[f"{cpu}, Faust worker(s)"]["ratio"] == pytest.approx(3.0)
    assert rows[f"{cpu}, Kafka broker"]["baseline"] is None


def test_a_drain_that_missed_inputs_says_so() -> None:
    results = {
        "drain": {
            "inputs": 1000,
            "record_bytes_mean": 428.0,
            "faust_relay": {},
            "process_manager": {"outputs": 990, "distinct_keys": 990, "per_s": 400.0},
        }
    }
    (row, *_) = (
        r for r in rows_of(results) if r["figure"].startswith("PM drain, HOT_PATH=agent: inputs/s")
    )
    assert "ONLY 990/1000 inputs applied" in row["note"]


def _e2e(**figures: object) -> dict[str, object]:
    """An e2e scenario's results: 100 orders through 1 worker, with ``figures`` besides."""
    return {
        "workers": 1,
        "orders": 100,
        "completed": 100,
        "window": 10,
        "kafka_records_per_order": 30.0,
        "steady_orders_per_s": 50.0,
        "kafka_records_per_s": 1500.0,
        **figures,
    }


def test_each_component_gets_a_cpu_per_order_row_beside_all_of_ours() -> None:
    e2e = _e2e(
        cpu_per_order=_cpu(100, broker=4.0, postgres=1.0, worker=6.0, module_runner=3.0, driver=1.0)
    )
    rows = {r["figure"]: r for r in rows_of({"e2e1w": e2e})}
    assert rows["e2e 1w: CPU per order, Kafka broker"]["value"] == 4.0
    assert rows["e2e 1w: CPU per order, Kafka broker"]["ratio"] == pytest.approx(4 / 15)
    assert rows["e2e 1w: CPU per order, all ours"]["value"] == pytest.approx(15.0)
    assert rows["e2e 1w: CPU per order, all ours"]["baseline"] == pytest.approx(16.0)
    for label in ("PostgreSQL", "Faust worker(s)", "module runner(s)", "load driver"):
        assert f"e2e 1w: CPU per order, {label}" in rows


def test_a_pid_file_names_a_live_process_or_nothing(tmp_path: Path) -> None:
    postmaster = tmp_path / "postmaster.pid"
    postmaster.write_text(f"{os.getpid()}\n/data/cluster\n1700000000\n5432\n")
    assert cpu.pid_from_file(postmaster) == os.getpid()
    assert cpu.pid_from_file(tmp_path / "missing.pid") is None
    (tmp_path / "junk.pid").write_text("not a pid")
    assert cpu.pid_from_file(tmp_path / "junk.pid") is None


def test_the_pid_files_are_where_the_deploy_scripts_keep_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_DIR", raising=False)
    assert cpu.kafka_pidfile(tmp_path) == tmp_path / ".data/kafka/kafka.pid"
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    assert cpu.postgres_pidfile(tmp_path) == tmp_path / "d/postgres/cluster/postmaster.pid"


def test_the_slowest_hops_of_the_paced_run_get_a_row_each_against_the_raw_hop() -> None:
    paced = {
        "target_orders_per_s": 70.0,
        "achieved_orders_per_s": 69.0,
        "orders": 100,
        "completed": 100,
        "latency_p50_ms": 900.0,
        "latency_p95_ms": 1500.0,
        "latency_p99_ms": 2000.0,
        "latency_max_ms": 2100.0,
        "hops": [
            {
                "hop": "SendPackage -> PackageWasSent",
                "n": 100,
                "p50_ms": 150.0,
                "p99_ms": 420.0,
                "mean_ms": 170.0,
            },
        ],
    }
    e2e = _e2e(paced=paced)
    results = {"baseline": {"hop_latency": {"p50_ms": 7.5, "p95_ms": 9.0, "p99_ms": 11.0}}}
    rows = {r["figure"]: r for r in rows_of({**results, "e2e1w": e2e})}
    hop = rows["e2e 1w: hop SendPackage -> PackageWasSent p50"]
    assert (hop["value"], hop["baseline"]) == (150.0, 7.5)
    assert hop["ratio"] == pytest.approx(20.0)
    assert "p99 420 ms" in hop["note"]
