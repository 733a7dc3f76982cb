from __future__ import annotations

import threading

from soma.store import Store


def test_remember_and_recall(store: Store) -> None:
    assert store.recall_result("k1") is None
    result = {"message": {"role": "assistant", "content": "hé"}, "usage": [1, 2], "x": None}
    store.remember_result("k1", "model", "p1", result)
    assert store.recall_result("k1") == result


def test_first_result_wins(store: Store) -> None:
    store.remember_result("k1", "tool", None, {"n": 1})
    store.remember_result("k1", "tool", None, {"n": 2})
    assert store.recall_result("k1") == {"n": 1}


def test_results_are_scoped_by_tenant(store: Store) -> None:
    store.remember_result("k1", "commit", "p1", {"sha": "abc"}, tenant_id="A")
    assert store.recall_result("k1", tenant_id="A") == {"sha": "abc"}
    assert store.recall_result("k1") is None


def test_concurrent_remember_does_not_error(store: Store) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def work(i: int) -> None:
        try:
            barrier.wait()
            store.remember_result("race", "model", "p1", {"writer": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    kept = store.recall_result("race")
    assert kept is not None
    assert kept["writer"] in range(12)
    assert store.recall_result("race") == kept
