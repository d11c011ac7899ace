"""The reliability benchmark's tooling (scripts/bench/reliability.py, corpus.py, client.py): corpus, client, goals."""

from __future__ import annotations

import http.server
import io
import json
import multiprocessing
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from scripts.bench.client import Job, Outcome, Upload, background, exchange, in_processes, retry_pause, statuses
from scripts.bench.corpus import corpus, jpeg_promising, png
from scripts.bench.reliability import goals, is_5xx_failure, log_statuses

pytestmark = pytest.mark.bench

MANIFEST = Path(__file__).resolve().parents[1] / "artifacts" / "models" / "heart_failure" / "1.0.0" / "manifest.json"
ROW = [40, "M", "ATA", 140, 289, 0, "Normal", 172, "N", 0, "Up"]  # the first row of heart.csv
TEN_MB = 10 * 1024 * 1024  # the server's upload limit: the probes must pass it to reach the parser


@pytest.fixture(scope="module")
def cases():
    """The whole corpus, by name (built once: it compresses ~700 MB of zeros)."""
    columns = [feature["name"] for feature in json.loads(MANIFEST.read_text())["features"]]
    return {case.name: case for case in corpus(columns, ROW)}


def uploaded_file(body: bytes) -> bytes:
    """The file inside a one-part multipart body."""
    return body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]


@pytest.fixture
def no_bomb_guard(monkeypatch):
    """Let Pillow open (not decode) the bombs' headers."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)


def test_png_is_tiny_but_declares_a_huge_16_bit_image():
    data = png(4000, 4000, 16)
    image = Image.open(io.BytesIO(data))
    assert (image.size, image.mode) == ((4000, 4000), "I;16")
    assert 25_000 < len(data) < 40_000  # the issue's 31 KB file


def test_jpeg_header_promises_far_more_than_the_file_holds(no_bomb_guard):
    data = jpeg_promising(10_000, 10_000)
    assert Image.open(io.BytesIO(data)).size == (10_000, 10_000)
    assert len(data) < 4096


@pytest.mark.slow  # the corpus compresses ~700 MB of zeros: 3-9 s
def test_every_image_case_declares_the_size_and_mode_it_claims(cases, no_bomb_guard):
    checked = 0
    for case in cases.values():
        if "size" not in case.declares:
            continue
        data = uploaded_file(case.upload.body)
        image = Image.open(io.BytesIO(data))
        assert (image.size, image.mode) == (case.declares["size"], case.declares["mode"]), case.name
        assert len(data) == case.declares["bytes"], case.name
        assert getattr(image, "n_frames", 1) == case.declares.get("n_frames", 1), case.name
        checked += 1
    assert checked >= 12


@pytest.mark.slow  # the corpus compresses ~700 MB of zeros: 3-9 s
@pytest.mark.parametrize(("name", "low", "high"), [
    ("png16_4000x4000", 25_000, 40_000), ("png16_2500x2500", 9_000, 16_000),
    ("png_rgba_6300x6300", 120_000, 190_000), ("png_200k_text_chunks", 3_400_000, 3_800_000)])
def test_probe_files_have_the_sizes_of_the_issue_table(cases, name, low, high):
    assert low < cases[name].declares["bytes"] < high


@pytest.mark.slow  # the corpus compresses ~700 MB of zeros: 3-9 s
def test_text_chunk_flood_holds_200k_chunks(cases):
    assert uploaded_file(cases["png_200k_text_chunks"].upload.body).count(b"tEXt") == 200_000


@pytest.mark.slow  # the corpus compresses ~700 MB of zeros: 3-9 s
def test_big_tabular_bodies_fit_the_upload_limit_and_hold_millions_of_rows(cases):
    records, table = cases["json_10mb_3.4m_empty_objects"], cases["csv_10mb_5.2m_rows"]
    assert len(records.upload.body) < TEN_MB and records.upload.body.count(b"{}") == 3_400_000
    assert json.loads(records.upload.body)["dataframe_records"][0] == {}
    assert len(table.upload.body) < TEN_MB and table.upload.body.count(b"\n") == 5_200_001  # header + rows


@pytest.mark.slow  # the corpus compresses ~700 MB of zeros: 3-9 s
def test_json_cases_carry_the_literal_they_are_named_after(cases):
    bodies = {name: case.upload.body for name, case in cases.items()}
    assert b"NaN" in bodies["json_nan_literal"] and b"Infinity" in bodies["json_infinity_literal"]
    assert b"1e400" in bodies["json_1e400"] and b"9" * 400 in bodies["json_400_digit_integer"]
    assert b"[" * 100_000 in bodies["json_100k_nested_arrays"]
    assert [json.loads(bodies[name].replace(literal, b"1"))["dataframe_split"]["data"][0] for name, literal in (
        ("json_nan_literal", b"NaN"), ("json_1e400", b"1e400"))] == [[1, *ROW[1:]]] * 2  # a real row around it


@pytest.mark.slow  # the corpus compresses ~700 MB of zeros: 3-9 s
def test_multipart_abuse_cases(cases):
    assert cases["multipart_1000_parts"].upload.body.count(b"Content-Disposition") == 1001
    assert "boundary" not in cases["multipart_no_boundary"].upload.content_type
    assert len(cases["multipart_1mb_part_header"].upload.body) > 1_000_000
    assert b"multipart/mixed; boundary=inner" in cases["multipart_nested"].upload.body
    lying = cases["content_length_larger_than_body"]
    assert lying.declared_length == len(lying.upload.body) + 100_000
    assert cases["png16_2500x2500_two_at_once"].copies == 2


@pytest.mark.slow  # the corpus compresses ~700 MB of zeros: 3-9 s
def test_the_corpus_holds_every_case_of_the_committed_results(cases):
    committed = json.loads((MANIFEST.parents[3] / "bench" / "reliability.json").read_text())["corpus"]
    assert [row["name"] for row in committed] == list(cases)


def test_only_5xx_other_than_503_count_as_server_errors():
    assert [is_5xx_failure(s) for s in (500, 502, 503, 429, 413, "no answer")] == [True, True, False, False, False,
                                                                                    False]


def test_statuses_and_access_log_counts():
    assert statuses([Outcome(200, 1), Outcome("no answer", 2), Outcome(200, 3)]) == {"200": 2, "no answer": 1}
    log = ['127.0.0.1 "GET /health HTTP/1.1" 200 15 3ms rid=a', '127.0.0.1 "POST /predict" 503 9 1200us rid=b',
           "[INFO] Booting worker with pid: 9"]
    assert log_statuses(log) == {"200": 1, "503": 1}


def test_exchange_reports_refused_and_silent_servers_without_raising():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    assert exchange(closed_port, "GET", "/health", timeout=1).status == "refused"
    with socket.socket() as silent:  # accepts, reads, never answers: the lying-client case from the other side
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        held = []
        threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
        outcome = exchange(silent.getsockname()[1], "POST", "/predict", Upload(b"x" * 10, "text/plain"), timeout=0.3,
                           declared_length=1000)
        assert outcome.status == "no answer" and outcome.ms >= 300
        for conn, _ in held:
            conn.close()


def report(**overrides) -> dict:
    """A minimal benchmark report with one corpus row and two load levels."""
    row = {"name": "png", "status": 413, "server_cpu_s": 0.2, "oom_kills": 0}
    level = {"route": "/predict", "concurrency": 128, "req_per_s_200": 12.0, "statuses": {"200": 90, "503": 10},
             "oom_kills": 0, "shed_ms": {"n": 10, "p99": 20.0}, "health_ms": {"n": 5, "p99": 150.0},
             "latency_200_ms": {"n": 90}, "cgroup_peak_mb": 80.0}
    base = {"corpus": [row], "load": [level], "slowloris": [], "sigterm": {"failed_in_flight": 0},
            "schemathesis": {"failure_count": 0, "cases_generated": 2500}}
    return {**base, **overrides}


def test_goals_pass_when_every_figure_is_within_its_limit():
    result = goals(report())
    assert all(goal["pass"] for goal in result.values()), result


def test_goals_fail_on_an_oom_kill_a_500_or_an_unanswered_case():
    bad_rows = [{"name": "a", "status": "connection closed", "server_cpu_s": 0.3, "oom_kills": 1},
                {"name": "b", "status": 500, "server_cpu_s": 2.0, "oom_kills": 0}]
    result = goals(report(corpus=bad_rows))
    assert result["oom_kills"]["pass"] is False and result["server_errors_5xx"]["pass"] is False
    assert result["refused_cpu_s"]["value"] == 2.0 and result["refused_cpu_s"]["pass"] is False
    assert result["corpus_every_case_answered"]["value"] == ["a"]


def test_a_500_during_schemathesis_or_beside_slow_clients_fails_the_5xx_goal():
    slow = {"mode": "headers", "health_ms": {"p99": 10.0}, "health_statuses": {"200": 5},
            "predict_ms": {"p99": 10.0}, "predict_statuses": {"502": 1}}
    fuzzed = {"failure_count": 0, "cases_generated": 2500, "access_log_statuses": {"200": 9, "500": 2, "503": 4}}
    assert goals(report(slowloris=[slow]))["server_errors_5xx"]["value"] == 1
    assert goals(report(schemathesis=fuzzed))["server_errors_5xx"]["value"] == 2


def test_slow_429s_of_the_rate_limited_run_fail_the_shedding_goal_but_do_not_count_as_throughput():
    limited = {"route": "/predict", "concurrency": 4, "req_per_s_200": 99.0, "statuses": {"200": 5, "429": 20},
               "oom_kills": 0, "shed_ms": {"n": 20, "p99": 80.0}, "health_ms": {"n": 5, "p99": 10.0}}
    result = goals(report(rate_limited=limited))
    assert result["shedding_p99_ms"] == {"value": 80.0, "limit": 50.0, "pass": False}
    assert result["predict_req_per_s"]["value"] == 12.0


def test_a_case_sent_twice_is_answered_only_if_both_copies_are():
    rows = [{"name": "both", "status": [200, 413], "server_cpu_s": 0.1, "oom_kills": 0},
            {"name": "half", "status": [200, "connection closed"], "server_cpu_s": 0.1, "oom_kills": 1}]
    result = goals(report(corpus=rows))
    assert result["corpus_every_case_answered"]["value"] == ["half"]
    assert result["refused_cpu_s"]["value"] == 0.1


@pytest.mark.parametrize(("header", "pause"), [("1", 1.0), ("12", 12.0), ("30", 30.0), ("3600", 30.0), ("0", 0.0),
                                               (None, 0.0), ("soon", 0.0)])
def test_shed_clients_wait_their_retry_after_up_to_the_servers_maximum(header, pause):
    assert retry_pause(header) == pause


def test_background_clients_cycle_their_bodies_honour_retry_after_and_stop_at_their_count():
    seen: list[bytes] = []

    def serve(listener: socket.socket) -> None:
        for n in range(4):
            conn, _ = listener.accept()
            with conn:
                seen.append(conn.recv(65536).rsplit(b"\r\n\r\n", 1)[1])
                status = b"503 Busy\r\nRetry-After: 0" if n == 1 else b"200 OK"
                conn.sendall(b"HTTP/1.1 " + status + b'\r\nContent-Length: 19\r\n\r\n{"inference_ms": 2}')

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
        bodies = (Upload(b"a", "text/plain"), Upload(b"b", "text/plain"))
        found = background(listener.getsockname()[1], [Job("c", "/x", bodies, count=4)], seconds=10)["c"]
    assert [o.status for o in found] == [200, 503, 200, 200] and seen == [b"a", b"b", b"a", b"b"]
    assert found[0].inference_ms == 2.0 and statuses(found) == {"200": 3, "503": 1}


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_client_processes_answer_and_exit_under_the_reports_sigterm_handler():
    # start_report makes SIGTERM raise SystemExit; pool workers that inherited it once hung the pool's exit.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for _ in range(3):
            groups = [[Job(f"g{n}", "/health", (), 0.05, 5.0)] for n in range(4)]
            found = in_processes(server.server_address[1], groups, 0.3)
            assert sorted(found) == ["g0", "g1", "g2", "g3"]
            assert all(outcomes and {o.status for o in outcomes} == {200} for outcomes in found.values())
            assert multiprocessing.active_children() == []
    finally:
        server.shutdown()
        server.server_close()
        signal.signal(signal.SIGTERM, previous)
