"""predict_many: worker processes and overlapped decoding give exactly the serial outputs, in order.

Real trained fixtures of both frameworks; the serial reference runs in this process with the
same intra-op thread count (1, tests/conftest.py) as each worker, so outputs are bit-identical.
No test here times anything: speed is measured in benchmarks/.
"""

from __future__ import annotations

import numpy as np
import pytest

from safepredict import SafePredictor
from safepredict.workers import WorkerPlan, default_plan


def _same(a, b) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.fixture(params=["detectron2", "mmdet"])
def fixture(request):
    return request.getfixturevalue("d2_fixture" if request.param == "detectron2" else "mmdet_fixture")


@pytest.mark.parametrize("workers", [0, 2], ids=["in process", "2 worker processes"])
def test_predict_many_equals_the_serial_path_in_order(fixture, workers):
    images = fixture.dataset.val_images[:10]
    p = SafePredictor.from_checkpoint(fixture.checkpoint)
    serial = [p.predict(path) for path in images]
    assert sum(len(d) for d in serial) > 0
    seen = p.monitor.snapshot()["images_total"]
    many = list(p.predict_many(images, workers=workers, threads=1, chunk_size=3))
    assert len(many) == len(images)
    for ours, theirs in zip(many, serial, strict=True):
        _same(ours, theirs)
    # The caller's monitor saw every image, whichever process predicted it.
    snap = p.monitor.snapshot()
    assert snap["images_total"] == seen + len(images)
    assert snap["input_images_total"] == 2 * len(images)  # the images themselves reached the monitor


def test_arrays_in_either_colour_order(d2_fixture):
    import cv2

    images = [cv2.imread(str(path)) for path in d2_fixture.dataset.val_images[:4]]
    p = SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False)
    rgb = [image[:, :, ::-1] for image in images]
    for bgr_det, rgb_det in zip(
        p.predict_many(images, "BGR", workers=2), p.predict_many(rgb, "RGB", workers=0), strict=True
    ):
        _same(bgr_det, rgb_det)


def test_a_stream_is_read_as_it_is_predicted_not_drained(d2_fixture):
    """An endless generator (a camera) with worker processes: only a bounded window is read ahead."""
    import itertools

    from safepredict.workers import IN_FLIGHT

    paths = d2_fixture.dataset.val_images[:4]
    pulled = []

    def camera():
        for path in itertools.cycle(paths):
            pulled.append(path)
            yield path

    p = SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False)
    expected = [p.predict(path) for path in paths]
    stream = p.predict_many(camera(), workers=2, threads=1, chunk_size=2)
    got = list(itertools.islice(stream, 6))
    for i, ours in enumerate(got):
        _same(ours, expected[i % len(paths)])
    # 6 results taken: at most the window of IN_FLIGHT chunks per worker (and the chunk being cut) beyond.
    assert len(pulled) <= 6 + (IN_FLIGHT * 2 + 1) * 2, len(pulled)
    stream.close()


def test_a_bad_input_in_a_worker_raises_the_typed_error(d2_fixture, tmp_path):
    from safepredict.errors import InputError

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    p = SafePredictor.from_checkpoint(d2_fixture.checkpoint, monitor=False)
    with pytest.raises(InputError, match=r"broken\.png"):
        list(p.predict_many([d2_fixture.dataset.val_images[0], broken], workers=1))


def test_default_plan():
    assert default_plan("cuda:0").workers == 0
    assert default_plan("cpu", images=1).workers == 0  # a model build costs more than one image
    many = default_plan("cpu", images=10_000)
    assert many.workers >= 1 and many.threads == 1
    assert "worker process" in WorkerPlan(workers=2, threads=1).describe()
