"""Hot reload: a champion promoted in the MLflow registry while requests run is served within the poll
interval, and every answer comes from exactly one model set (never a mix of old and new versions)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from artifacts.registry import CHAMPION, KINDS, client, model_name
from configs.settings import load_settings
from serving.reload import Reloader, registry_fingerprint

POLL = 0.2


class VersionedScorer:
    """A model set as the service holds it: built once from the registry, never changed afterwards.
    Its answer reads the versions model by model, slowly, so a set mutated in place would show a mix."""

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        c = client(settings)
        self.versions = {}
        for kind in ("segments", "churn"):
            mv = c.get_model_version_by_alias(model_name(settings, kind), CHAMPION)
            self.versions[kind] = str(mv.version)

    def score(self) -> dict[str, str]:
        out = {}
        for kind, version in self.versions.items():
            out[kind] = version
            time.sleep(0.001)
        return out


@pytest.fixture
def registry(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=str(tmp_path / "data"))
    c = client(settings)
    for kind in ("segments", "churn"):
        name = model_name(settings, kind)
        c.create_registered_model(name)
        for _ in range(2):
            c.create_model_version(name, source=str(tmp_path / kind))
        c.set_registered_model_alias(name, CHAMPION, "1")
    return settings, c


def test_a_promotion_is_served_within_the_poll_interval_and_no_answer_mixes_sets(registry) -> None:  # type: ignore[no-untyped-def]
    settings, c = registry
    reloader = Reloader(
        fingerprint=lambda: registry_fingerprint(settings),
        build=lambda: VersionedScorer(settings),
        poll_seconds=POLL,
    )
    assert reloader.check() is True
    first = reloader.current
    assert first is not None and first.value.versions == {"segments": "1", "churn": "1"}
    assert reloader.check() is False  # nothing changed: no rebuild, same set
    assert reloader.current is first

    stop = threading.Event()
    answers: list[tuple[str, dict[str, str], dict[str, str]]] = []
    errors: list[BaseException] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                model_set = reloader.current  # what the service does: read the set once per request
                answers.append((model_set.id, dict(model_set.value.versions), model_set.value.score()))
            except BaseException as exc:  # noqa: BLE001 - any failed request fails the test
                errors.append(exc)

    poller = threading.Thread(target=reloader.run, args=(stop,), daemon=True)
    clients = [threading.Thread(target=loop, daemon=True) for _ in range(4)]
    for t in (poller, *clients):
        t.start()
    time.sleep(0.3)
    for kind in ("segments", "churn"):  # a retrain promotes model by model
        c.set_registered_model_alias(model_name(settings, kind), CHAMPION, "2")
    promoted = time.monotonic()
    deadline = promoted + 30  # generous: the machine is shared; the poll interval is 0.2 s
    while time.monotonic() < deadline:
        current = reloader.current
        if current.value.versions == {"segments": "2", "churn": "2"}:
            break
        time.sleep(0.02)
    served_after = time.monotonic() - promoted
    time.sleep(0.3)
    stop.set()
    for t in (poller, *clients):
        t.join(timeout=10)

    assert not errors, errors[:3]
    assert reloader.current.value.versions == {"segments": "2", "churn": "2"}, reloader.last_error
    assert served_after < 30
    # every answer equals the set it was taken from, and the new set answered after the swap
    assert answers and all(versions == answer for _, versions, answer in answers)
    seen = {tuple(sorted(answer.items())) for _, _, answer in answers}
    assert (("churn", "1"), ("segments", "1")) in seen
    assert (("churn", "2"), ("segments", "2")) in seen
    # one set id per version set (the id names what the set was built from)
    by_id: dict[str, set[tuple]] = {}
    for set_id, versions, _ in answers:
        by_id.setdefault(set_id, set()).add(tuple(sorted(versions.items())))
    assert all(len(v) == 1 for v in by_id.values()), by_id


def test_a_set_that_fails_to_build_keeps_the_old_one_serving(registry) -> None:  # type: ignore[no-untyped-def]
    settings, c = registry
    broken = {"now": False}

    def build() -> VersionedScorer:
        if broken["now"]:
            raise RuntimeError("the new champion's artifact is missing")
        return VersionedScorer(settings)

    reloader = Reloader(fingerprint=lambda: registry_fingerprint(settings), build=build, poll_seconds=POLL)
    assert reloader.check()
    old = reloader.current
    broken["now"] = True
    c.set_registered_model_alias(model_name(settings, "churn"), CHAMPION, "2")
    assert reloader.check() is False
    assert reloader.current is old
    assert "artifact is missing" in (reloader.last_error or "")
    broken["now"] = False  # fixed: the next poll swaps it in
    assert reloader.check() is True
    assert reloader.current.value.versions["churn"] == "2" and reloader.last_error is None


def test_the_fingerprint_follows_aliases_and_the_catalog_files(registry) -> None:  # type: ignore[no-untyped-def]
    settings, c = registry
    before = registry_fingerprint(settings)
    assert registry_fingerprint(settings) == before
    assert dict(before[0]) == {k: ("1" if k in ("segments", "churn") else None) for k in KINDS}
    cut = Path(settings.path(settings.tags.cutpoints))
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_text("{}")
    assert registry_fingerprint(settings) != before  # new cut points (persona tags fit)
    after_cut = registry_fingerprint(settings)
    c.set_registered_model_alias(model_name(settings, "churn"), CHAMPION, "2")
    assert registry_fingerprint(settings) != after_cut
