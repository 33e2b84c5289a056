"""`persona features apply` and `persona features materialize` through the real CLI entry point."""

from __future__ import annotations

from tests.feast_support import feature_table, write_tables


def test_apply_then_materialize_prints_a_summary(data_dir, monkeypatch, capsys):
    from persona.cli import main

    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    write_tables(
        data_dir / "features",
        {
            "customer_transactions": feature_table(
                "customer_transactions",
                [("P1", "2025-01-01", 1), ("P1", "2025-01-31", 2), ("P2", "2025-01-31", 3)],
            ),
            "customer_engagement": feature_table("customer_engagement", [("P1", "2025-01-31", 4)]),
        },
    )
    assert main(["features", "apply"]) == 0
    out = capsys.readouterr().out
    assert "applied 4 feature views, 8 feature services to project 'persona'" in out
    assert "customer_leads: no feature table yet" in out
    assert (data_dir / "feast" / "registry.db").is_file()

    assert main(["features", "materialize", "--end", "2025-02-10"]) == 0
    out = capsys.readouterr().out
    assert "materialized 3 rows up to 2025-02-10 00:00 UTC into sqlite" in out
    assert "customer_transactions: 2 rows" in out
    assert "customer_profile: skipped (no feature table)" in out

    assert main(["features", "materialize", "--end", "2025-02-10"]) == 0
    assert "materialized 0 rows" in capsys.readouterr().out


def test_materialize_before_apply_exits_2_with_a_hint(data_dir, monkeypatch, capsys):
    from persona.cli import main

    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    assert main(["features", "materialize"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "hint: run `persona features apply`" in err


def test_apply_without_tables_exits_2_naming_the_file(data_dir, monkeypatch, capsys):
    from persona.cli import main

    monkeypatch.setenv("PERSONA_DATA_DIR", str(data_dir))
    assert main(["features", "apply"]) == 2
    err = capsys.readouterr().err
    assert "feature table not found" in err and "customer_transactions.parquet" in err
