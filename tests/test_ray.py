"""Ray Data scale-out on a real local Ray cluster: the same detections as one process, the lock
checked on every worker, and one summary that counts every image.

The cluster is a real ``ray.init`` on this machine (2 CPUs, one actor per CPU at most); the
model is the trained Detectron2 fixture. A worker's environment is made to differ from the lock
the way a moved model meets it: the lock is data written here and edited (one package version),
the running environment is this one, unpatched. Nothing of Ray is mocked.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import tomllib

from safepredict import EnvironmentMismatchError, SafePredictor
from safepredict.lock import write_lock
from safepredict.lock.lockfile import HEADER

N = 12  # validation images: enough for two actors to share, few enough for 2 CPUs


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2, logging_level="warning")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def sr(ray_cluster):
    """The integration module (imported once Ray is up, as a user's driver would)."""
    from safepredict.integrations import ray as integration

    return integration


@pytest.fixture(scope="module")
def node_id(ray_cluster) -> str:
    return ray_cluster.get_runtime_context().get_node_id()


@pytest.fixture(scope="module")
def images(d2_fixture) -> list[Path]:
    return [Path(p) for p in d2_fixture.dataset.val_images[:N]]


@pytest.fixture(scope="module")
def predictor(d2_fixture) -> SafePredictor:
    return SafePredictor.from_checkpoint(d2_fixture.checkpoint, class_names=d2_fixture.class_names)


@pytest.fixture(scope="module")
def expected(predictor, images) -> dict[str, object]:
    """Single-process SafePredictor results, keyed as predict_images names a listed file."""
    return {p.as_posix(): predictor.predict(p) for p in images}


@pytest.fixture(scope="module")
def lock(d2_fixture, tmp_path_factory) -> Path:
    """A real lock of this environment, pinning the fixture's weights and training config."""
    out = tmp_path_factory.mktemp("lock") / "safepredict.lock"
    write_lock(out, weights=d2_fixture.checkpoint, config=d2_fixture.config)
    return out


@pytest.fixture(scope="module")
def numpy_lock(lock, tmp_path_factory) -> Path:
    """The same lock as another machine with numpy 1.0.0 would have written it."""
    doc = tomllib.loads(lock.read_text())
    doc["packages"]["numpy"]["version"] = "1.0.0"
    out = tmp_path_factory.mktemp("other-machine") / "safepredict.lock"
    out.write_text(HEADER + tomli_w.dumps(doc))
    return out


def _by_image(results: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in results:
        out.setdefault(r["image_id"], []).append(r)
    return out


def _assert_same(expected_dets, boxes, scores, labels) -> None:
    assert len(boxes) == len(expected_dets)
    np.testing.assert_allclose(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), expected_dets.boxes, atol=1e-3)
    np.testing.assert_allclose(np.asarray(scores, dtype=np.float32), expected_dets.scores, atol=1e-5)
    assert list(labels) == expected_dets.labels.tolist()


# --------------------------------------------------------------------------- parity


def test_two_actors_give_single_process_results_image_for_image(
    sr, d2_fixture, images, expected, lock, node_id, tmp_path
):
    out = tmp_path / "preds.json"
    started = time.monotonic()
    summary = sr.predict_images(
        d2_fixture.checkpoint,
        [str(p) for p in images],
        out,
        actors=2,
        batch_size=3,
        lock=lock,
        on_env_mismatch="error",
        class_names=d2_fixture.class_names,
        threads=1,
        progress=False,
    )
    elapsed = time.monotonic() - started
    results = json.loads(out.read_text())
    got = _by_image(results)
    assert sum(len(d) for d in expected.values()) == len(results) > 0
    for name, dets in expected.items():
        mine = got.get(name, [])
        coco = dets.to_coco(name)
        _assert_same(
            dets,
            [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in mine)],
            [r["score"] for r in mine],
            [r["category_id"] for r in mine],
        )
        np.testing.assert_allclose([r["bbox"] for r in mine], [r["bbox"] for r in coco], atol=1e-3)

    # One summary that counts every image, merged from both actors, on this one node.
    assert summary.complete and summary.images == summary.inputs == summary.rows == N
    assert len(summary.actors) == 2
    assert sum(a["images"] for a in summary.actors) == N
    assert summary.monitor["images_total"] == N  # the monitors' own counters, merged
    assert summary.detections == len(results) == summary.monitor["detections_total"]
    assert summary.empty == sum(d.is_empty() for d in expected.values())
    assert set(summary.nodes) == {node_id}
    assert summary.nodes[node_id]["environment"] == "matches the lock"
    assert summary.environment == () and summary.refusals == ()
    assert {a["threads"] for a in summary.actors} == {1}
    text = summary.describe()
    assert f"ray: {N} image(s) on 2 actor(s) on 1 node(s)" in text and node_id in text
    print(f"\n{text}\n({N} images, 2 actors, {elapsed:.1f} s including actor start-up)")


def test_bytes_and_arrays_columns_give_the_same_detections(sr, ray_cluster, d2_fixture, images, expected, predictor):
    from PIL import Image

    rows = [{"name": p.name, "bytes": p.read_bytes(), "rgb": np.asarray(Image.open(p).convert("RGB"))} for p in images]
    ds = ray_cluster.data.from_items(rows)

    run = sr.predict_dataset(
        ds, d2_fixture.checkpoint, column="bytes", kind="bytes", key_column="name", class_names=d2_fixture.class_names
    )
    by_name = {r["name"]: r for r in run.dataset.take_all()}
    assert run.summary().images == N
    run.close()
    for p in images:  # the framework's own loader decoded the bytes: exactly the path's results
        r = by_name[p.name]
        _assert_same(expected[p.as_posix()], r["boxes"], r["scores"], r["labels"])
        assert r["error"] is None and (r["height"], r["width"]) == expected[p.as_posix()].image_size

    # Arrays are taken in the declared colour (RGB by default, as ray.data.read_images gives them).
    run = sr.predict_dataset(ds, d2_fixture.checkpoint, column="rgb", key_column="name")
    by_name = {r["name"]: r for r in run.dataset.take_all()}
    run.close()
    for row in rows:
        want = predictor.predict(row["rgb"], "RGB")
        r = by_name[row["name"]]
        _assert_same(want, r["boxes"], r["scores"], r["labels"])


def test_parquet_holds_ragged_detections_and_the_key(sr, d2_fixture, images, expected, tmp_path):
    import pyarrow.parquet as pq

    folder = tmp_path / "images"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "preds.parquet"
    summary = sr.predict_images(d2_fixture.checkpoint, folder, out, class_names=d2_fixture.class_names, progress=False)
    table = pq.read_table(out)
    assert table.num_rows == N == summary.images and summary.complete
    assert {"image_id", "path", *sr.OUTPUT_COLUMNS} <= set(table.column_names)
    by_name = {p.name: expected[p.as_posix()] for p in images}
    for row in table.to_pylist():
        want = by_name[row["image_id"]]
        _assert_same(want, row["boxes"], row["scores"], row["labels"])
        assert row["names"] == want.names and row["path"] == str((folder / row["image_id"]).resolve())
    # Any number of detections per image, in one column.
    assert sorted(len(b) for b in table.column("boxes").to_pylist()) == sorted(len(d) for d in by_name.values())


def test_the_map_step_uses_the_installed_rays_current_api(sr, ray_cluster, d2_fixture):
    """``compute=ActorPoolStrategy(size=n)`` and named resources: no deprecated argument of Ray 2.5x."""
    import warnings

    ds = ray_cluster.data.from_items([{"path": "unused.png"}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = sr.predict_dataset(ds, d2_fixture.checkpoint, actors=2, num_gpus=0, batch_size=4)
    run.close()
    assert not [w for w in caught if "deprecat" in str(w.message).lower()], [str(w.message) for w in caught]


# --------------------------------------------------------------------------- the lock on every worker


def test_error_policy_refuses_naming_the_node_and_the_package(sr, d2_fixture, images, numpy_lock, node_id, tmp_path):
    out = tmp_path / "preds.json"
    with pytest.raises(EnvironmentMismatchError) as info:
        sr.predict_images(
            d2_fixture.checkpoint,
            [str(p) for p in images],
            out,
            lock=numpy_lock,
            on_env_mismatch="error",
            class_names=d2_fixture.class_names,
            progress=False,
        )
    message = str(info.value)
    assert node_id in message and socket.gethostname() in message
    assert "packages.numpy: locked 1.0.0, found " + np.__version__ in message
    assert info.value.expected == {"packages.numpy": "1.0.0"}
    assert info.value.found == {f"{node_id}:packages.numpy": np.__version__}
    assert not out.exists() and not list(tmp_path.iterdir())  # no half-written results


def test_warn_policy_runs_and_the_summary_names_the_node(
    sr, d2_fixture, images, expected, numpy_lock, node_id, tmp_path
):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "preds.json"
    summary = sr.predict_images(
        d2_fixture.checkpoint,
        [*map(str, images), str(broken)],
        out,
        lock=numpy_lock,
        on_env_mismatch="warn",
        on_error="record",
        class_names=d2_fixture.class_names,
        progress=False,
    )
    results = _by_image(json.loads(out.read_text()))
    assert sum(map(len, results.values())) == sum(map(len, expected.values()))
    # Every image counted: the unreadable one as failed.
    assert summary.images == N + 1 == summary.inputs == summary.rows and summary.failed == 1 and summary.complete
    [finding] = summary.environment
    assert finding["key"] == "packages.numpy" and finding["node_id"] == node_id
    assert finding["locked"] == "1.0.0" and finding["found"] == np.__version__ and not finding["refused"]
    assert finding["hostname"] == socket.gethostname()
    assert summary.nodes[node_id]["environment"] == "DIFFERS from the lock"
    text = summary.describe()
    assert f"packages.numpy: locked 1.0.0, found {np.__version__} on node {node_id}" in text
    print("\n" + text)


# --------------------------------------------------------------------------- without a cluster


def test_summaries_merge_counters_of_actors_on_many_nodes(sr):
    def actor(node, images, empty, hist_bin, findings, env=None):
        hist = [0] * 100
        hist[hist_bin] = images - empty
        return {
            "node_id": node,
            "hostname": f"host-{node}",
            "actor": f"{node}-a{images}",
            "images": images,
            "failed": 0,
            "empty": empty,
            "detections": 2 * (images - empty),
            "best_score_hist": hist,
            "environment": env,
            "monitor": {
                "images_total": images,
                "images_empty_total": empty,
                "detections_total": 2 * (images - empty),
                "detections_by_class_total": {"red": images - empty, "blue": images - empty},
                "findings_total": findings,
                "score_threshold": 0.5,
                "reference_empty_rate": 0.1,
            },
        }

    mismatch = {"key": "torch.cuda", "locked": "12.1", "found": "12.4", "rule": "minor", "requirement": "12.1.*"}
    state = {
        "actors": [
            actor("n1", 10, 2, 80, {"monitor.input_brightness": 1}, {"ok": True, "mismatches": []}),
            actor("n1", 6, 0, 90, {}, {"ok": True, "mismatches": []}),
            actor("n2", 4, 4, 0, {"monitor.empty_streak": 1}, {"ok": False, "mismatches": [mismatch]}),
        ],
        "refusals": [],
    }
    summary = sr.summarize(state, inputs=20)
    assert summary.images == 20 and summary.complete and summary.empty == 6
    assert summary.monitor["detections_by_class_total"] == {"red": 14, "blue": 14}
    assert summary.input_findings == {"monitor.input_brightness": 1}
    assert summary.score_findings == {"monitor.empty_streak": 1}
    assert summary.nodes["n1"]["actors"] == 2 and summary.nodes["n1"]["images"] == 16
    assert summary.nodes["n2"]["environment"] == "DIFFERS from the lock"
    assert [(f["node_id"], f["key"]) for f in summary.environment] == [("n2", "torch.cuda")]
    assert 0.80 <= summary.median_best_score <= 0.91
    assert not sr.summarize(state, inputs=21).complete
    assert "INCOMPLETE" in sr.summarize(state, inputs=21).describe()


def test_safepredict_works_without_ray_and_the_integration_says_what_to_install():
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import safepredict, safepredict.integrations, safepredict.lock, safepredict.monitor\n"
        "from safepredict.errors import FrameworkNotInstalled\n"
        "try:\n"
        "    import safepredict.integrations.ray\n"
        "except FrameworkNotInstalled as exc:\n"
        "    print('refused:', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "refused:" in proc.stdout and "pip install 'safepredict[ray]'" in proc.stdout, proc.stdout + proc.stderr
