"""Schedule times from cron, the foreground loop, the retrain lock, secret masking."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import PersonaError
from training.mlflow_io import mask_secrets, service_version
from training.retrain import RetrainBusy, RetrainLock
from training.schedule import next_runs, run_schedule


def test_next_runs_from_cron() -> None:
    start = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday
    runs = next_runs("0 3 * * 1", start=start, count=3)
    assert [r.isoformat() for r in runs] == [
        "2026-11-23T03:00:00+00:00",
        "2026-11-30T03:00:00+00:00",
        "2026-12-07T03:00:00+00:00",
    ]
    # strictly after: a start exactly on a firing time gives the next one
    assert next_runs("*/15 * * * *", start=datetime(2026, 1, 1, 0, 15, tzinfo=UTC))[0].minute == 30


def test_next_runs_in_another_timezone() -> None:
    start = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    run = next_runs("0 3 * * *", start=start, timezone="Europe/Paris")[0]
    assert run.utcoffset() == timedelta(hours=2) and run.astimezone(UTC).hour == 1


def test_bad_cron_is_refused() -> None:
    with pytest.raises(PersonaError, match="not a valid cron"):
        next_runs("61 * * * *", start=datetime(2026, 1, 1, tzinfo=UTC))


def test_run_schedule_sleeps_until_due_and_runs() -> None:
    clock = [datetime(2026, 1, 1, 2, 59, 0, tzinfo=UTC)]
    slept: list[float] = []
    calls: list[datetime] = []
    said: list[str] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    runs = run_schedule(
        jobs={"retrain": ("0 3 * * *", lambda: calls.append(clock[0]))},
        max_runs=2,
        now=lambda: clock[0],
        sleep=sleep,
        say=said.append,
    )
    assert runs == 2
    assert calls == [datetime(2026, 1, 1, 3, tzinfo=UTC), datetime(2026, 1, 2, 3, tzinfo=UTC)]
    assert max(slept) <= 30.0  # short steps so Ctrl-C is prompt
    assert said[0] == "next run at 2026-01-01T03:00:00+00:00: retrain"


def test_run_schedule_once_now_and_failure_goes_on() -> None:
    clock = [datetime(2026, 1, 1, 0, 0, tzinfo=UTC)]

    def failing() -> None:
        raise PersonaError("features missing")

    said: list[str] = []

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    runs = run_schedule(
        jobs={"refresh": ("0 * * * *", failing)},
        once_now=True,
        max_runs=2,
        now=lambda: clock[0],
        sleep=sleep,
        say=said.append,
    )
    assert (
        runs == 2
        and said.count("refresh run 1 failed: features missing") == 1
        and "refresh run 2 failed: features missing" in said
    )


def test_run_schedule_runs_both_jobs_each_on_its_cron() -> None:
    clock = [datetime(2026, 1, 4, 23, 0, tzinfo=UTC)]  # a Sunday
    calls: list[tuple[str, datetime]] = []

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    runs = run_schedule(
        jobs={
            "retrain": ("0 3 * * 1", lambda: calls.append(("retrain", clock[0]))),
            "refresh": ("0 3 * * *", lambda: calls.append(("refresh", clock[0]))),
        },
        max_runs=4,
        now=lambda: clock[0],
        sleep=sleep,
        say=lambda _: None,
    )
    monday, tuesday = datetime(2026, 1, 5, 3, tzinfo=UTC), datetime(2026, 1, 6, 3, tzinfo=UTC)
    # both due on Monday 03:00: in the order given; then the daily refresh alone
    assert runs == 4
    assert calls == [
        ("retrain", monday),
        ("refresh", monday),
        ("refresh", tuesday),
        ("refresh", datetime(2026, 1, 7, 3, tzinfo=UTC)),
    ]


def test_lock_names_the_job_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "state" / "retrain.lock"
    with RetrainLock(path, job="refresh"), pytest.raises(RetrainBusy, match=r"another refresh is running"):
        RetrainLock(path).__enter__()


def test_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "state" / "retrain.lock"
    with RetrainLock(path):
        assert f"pid={os.getpid()}" in path.read_text()
        with (
            pytest.raises(RetrainBusy, match=r"another retrain is running \(lock .* held by pid="),
            RetrainLock(path),
        ):
            pass
    with RetrainLock(path):  # released: can be taken again
        pass


def test_lock_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "retrain.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from training.retrain import RetrainLock
            with RetrainLock({str(path)!r}):
                print("held", flush=True)
                sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RetrainBusy, match=f"pid={holder.pid}"), RetrainLock(path):
            pass
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    with RetrainLock(path):  # the other process exited: the kernel released its lock
        pass


def test_mask_secrets() -> None:
    masked = mask_secrets(
        {"crm": {"api_key": "abc", "url": "postgresql://bob:pw@db:5432/x"}, "n": 3, "token": ""}
    )
    assert masked == {"crm": {"api_key": "***", "url": "postgresql://***@db:5432/x"}, "n": 3, "token": ""}


def test_service_version() -> None:
    assert service_version("churn_v12") == ("churn", 12) and service_version("custom") == ("custom", None)


def test_deploy_files_follow_the_configured_cron(settings) -> None:
    import yaml

    root = Path(__file__).resolve().parents[2] / "deploy"
    lines = [
        ln for ln in (root / "crontab.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert len(lines) == 2
    by_job = {("retrain" if "persona retrain" in ln else "refresh"): ln for ln in lines}
    assert by_job["retrain"].startswith(settings.schedule.retrain + " ")
    assert (
        by_job["refresh"].startswith(settings.schedule.refresh + " ")
        and "persona refresh" in by_job["refresh"]
    )
    assert "persona retrain --then-refresh" in by_job["retrain"]
    for name, cron in (
        ("cronjob.yaml", settings.schedule.retrain),
        ("cronjob-refresh.yaml", settings.schedule.refresh),
    ):
        job = yaml.safe_load((root / "k8s" / name).read_text())
        assert job["kind"] == "CronJob" and job["spec"]["concurrencyPolicy"] == "Forbid"
        assert job["spec"]["schedule"] == cron
        container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        # the image's entrypoint is `persona` (Dockerfile)
        assert container["args"] == (["refresh"] if "refresh" in name else ["retrain", "--then-refresh"])


def test_schedule_command_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time

    env = {
        **os.environ,
        "PERSONA_DATA_DIR": str(tmp_path),
        "PERSONA_SCHEDULE__RETRAIN": "0 3 1 1 *",
        "PERSONA_SCHEDULE__REFRESH": "0 2 1 1 *",
        "PYTHONFAULTHANDLER": "1",
    }

    def terminal_signals() -> None:
        # Ctrl-C as a shell's child gets it: SIGINT handled by default and not blocked. A test worker's
        # own signal state (an ignored or blocked SIGINT is inherited across exec) is not the product's.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen(
        [sys.executable, "-m", "persona", "schedule"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=terminal_signals,
    )
    try:
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("next run at"):
                break
        assert any(ln.startswith("refresh '0 2 1 1 *', retrain '0 3 1 1 *' (UTC)") for ln in lines), lines
        proc.send_signal(signal.SIGINT)
        # a hang guard, not a speed check: the interpreter's own shutdown after "schedule stopped" takes
        # 3-4 s at load 4 (finalizing the LightGBM, scikit-learn, MLflow and Feast modules), and passed 60 s
        # in a fresh-clone make test sharing two cores with other work
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: where it hangs, in the failure
            out, err = proc.communicate(timeout=60)
            raise AssertionError(f"still running 240 s after SIGINT:\n{out[-2000:]}\n{err[-6000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "schedule stopped" in out
