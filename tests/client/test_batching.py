"""A batched function (fixture `batched`, docs/writing-apps.md "Batching")
through the official `inferencesh` client: concurrent runs are one call of
the app's function, and the client sees one task per run, its own output or
error, and the per-item schema."""

import threading

import pytest

from test_client import meta


def run_all(client, texts):
    """Runs `embed` once per text from as many threads at once; the results
    (or exceptions) in the order of `texts`."""
    results = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def one(i, text):
        start.wait()
        try:
            results[i] = client.run({"app": "tests/batched", "function": "embed", "input": {"text": text}})
        except Exception as e:  # noqa: BLE001 - the test inspects it
            results[i] = e

    threads = [threading.Thread(target=one, args=(i, t)) for i, t in enumerate(texts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_concurrent_runs_are_batched_and_each_gets_its_own_output(client):
    # A worker up first, so the runs below only wait for each other.
    client.run({"app": "tests/batched", "function": "run", "input": {"text": "warm"}})
    texts = ["a", "bb", "ccc", "dddd"]
    results = run_all(client, texts)
    sizes = set()
    ids = set()
    for result, text in zip(results, texts):
        assert isinstance(result, dict), result
        assert result["status"] == 10
        assert result["input"] == {"text": text}
        output = result["output"]
        assert output["text"] == text and output["vector"][0] == len(text)
        assert output == meta({k: v for k, v in output.items() if k != "output_meta"})
        sizes.add(output["batch_size"])
        ids.add(result["id"])
    assert len(ids) == 4, "one task per run"
    # The fixture gathers for 200 ms: the four arrive together.
    assert sizes == {4}, sizes


def test_one_items_error_fails_only_its_run(client):
    results = run_all(client, ["fine", "fail"])
    assert results[0]["output"]["text"] == "fine"
    assert isinstance(results[1], RuntimeError)
    assert "ValueError: cannot embed 'fail'" in str(results[1])


def test_a_list_input_is_refused_as_for_any_function(client):
    from inferencesh import APIError

    with pytest.raises(APIError) as err:
        client.run({"app": "tests/batched", "function": "embed", "input": [{"text": "a"}]})
    assert err.value.status_code == 422
