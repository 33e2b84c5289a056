"""The CLI is quiet and exact: Persona's own lines on stderr, other libraries' in a log file; one-line
errors that name the flag, the port or the folder; tables with thousands separators."""

from __future__ import annotations

import logging
import socket
import warnings

import pytest

from core.errors import PersonaError
from core.logs import configure_cli
from persona.cli import main


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    logging.captureWarnings(False)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "persona 0.1.0"


@pytest.mark.parametrize("verbose", [False, True])
def test_third_party_warnings_go_to_the_log_file_and_to_stderr_only_when_verbose(
    tmp_path, capsys, restore_logging, verbose
):
    path = configure_cli(data_dir=tmp_path, verbose=verbose)
    assert path == tmp_path / "logs" / "persona.log" and not path.exists()  # nothing logged, no file
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library is unhappy", FutureWarning, stacklevel=1)
    logging.getLogger("feast.repo_operations").warning("feast says something")
    logging.getLogger("serving.dispatcher").warning("CRM unreachable, retrying")
    err = capsys.readouterr().err
    assert "CRM unreachable, retrying" in err  # Persona's own line
    assert ("a library is unhappy" in err) is verbose
    assert ("feast says something" in err) is verbose
    logged = path.read_text()
    assert "a library is unhappy" in logged and "feast says something" in logged


def test_compare_and_crm_status_on_a_missing_data_dir_say_so_and_create_nothing(
    tmp_path, monkeypatch, capsys, restore_logging
):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("PERSONA_DATA_DIR", str(missing))
    for args in (["compare"], ["crm", "status"]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: data directory") and "does not exist" in err, err
        assert not missing.exists()


def test_compare_and_crm_status_before_anything_ran_create_nothing(
    tmp_path, monkeypatch, capsys, restore_logging
):
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    assert main(["compare"]) == 0
    assert "no registered models yet" in capsys.readouterr().out
    assert main(["crm", "status"]) == 0
    assert "nothing scored yet" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_demo_keeps_an_existing_data_dir_unless_fresh(tmp_path, monkeypatch, capsys, restore_logging):
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "orders.csv").write_text("order_id\n1\n")
    assert main(["demo", "--customers", "50"]) == 2
    err = capsys.readouterr().err
    assert "already holds a previous run" in err and "--fresh" in err
    assert (tmp_path / "raw" / "orders.csv").read_text() == "order_id\n1\n"
    (tmp_path / "mine.txt").write_text("not Persona's")
    assert main(["demo", "--fresh", "--customers", "50"]) == 2
    assert "mine.txt" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").exists() and (tmp_path / "raw" / "orders.csv").exists()


@pytest.mark.parametrize("args", [["demo", "--customers", "-5"], ["data", "generate", "--customers", "-5"]])
def test_a_bad_count_blames_the_flag(args, tmp_path, monkeypatch, capsys, restore_logging):
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "d"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'--customers'" in err and "-5" in err and "base.yaml" not in err
    assert not (tmp_path / "d").exists()


def test_serve_on_a_busy_port_is_one_line(monkeypatch, capsys, restore_logging):
    monkeypatch.setenv("PERSONA_API_KEYS", "a-key-long-enough-0123456789")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--host", "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: port {port} on 127.0.0.1 is already in use: stop the other server or choose another "
        "with --port (or serving.port)"
    )


def test_tags_list_is_a_table_with_full_descriptions_when_wide(capsys, restore_logging):
    from artifacts.catalog import load_catalog
    from configs.settings import load_settings

    catalog = load_catalog(load_settings())
    longest = max(catalog.tags, key=lambda t: len(t.description))
    full = " ".join(longest.description.split())
    assert len(full) > 60  # the narrow table cuts it to one line
    assert main(["tags", "list"]) == 0
    narrow = capsys.readouterr().out
    assert "description" in narrow.splitlines()[1] and longest.key in narrow
    assert full not in narrow and "…" in narrow
    assert main(["tags", "list", "--wide"]) == 0
    assert full in capsys.readouterr().out


def test_table_cells_have_thousands_separators():
    from persona.commands._common import cell

    assert cell(67058) == "67,058"
    assert cell(1234567.891) == "1,234,567.8910"
    assert cell(None) == "" and cell(float("nan")) == ""


def test_library_prints_become_log_records_even_when_a_handler_writes_to_stderr(tmp_path, restore_logging):
    import sys

    from core.logs import stderr_to_log

    configure_cli(data_dir=tmp_path, verbose=False)

    class ToCurrentStderr(logging.Handler):  # what MLflow's own handler does: write to sys.stderr
        def emit(self, record):
            sys.stderr.write(self.format(record) + "\n")

    looping = logging.getLogger("lib_prints")
    looping.addHandler(ToCurrentStderr())
    try:
        with stderr_to_log("lib_prints"):
            print("Successfully registered model 'persona-churn'.", file=sys.stderr)
    finally:
        looping.handlers.clear()
    logged = (tmp_path / "logs" / "persona.log").read_text()
    assert "Successfully registered model 'persona-churn'." in logged


def test_a_data_dir_holding_only_logs_is_not_a_previous_run(tmp_path):
    from persona.commands.demo import _prepare

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "persona.log").write_text("earlier lines\n")
    _prepare(tmp_path, fresh=False)  # no "already holds a previous run"
    assert (tmp_path / "logs" / "persona.log").read_text() == "earlier lines\n"  # kept
    (tmp_path / "state").mkdir()  # but any state is a run's
    with pytest.raises(PersonaError, match="already holds a previous run"):
        _prepare(tmp_path, fresh=False)
