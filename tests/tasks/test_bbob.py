"""BBOB tasks: COCO evaluates, ioh gives the optimum, and the two agree."""

from __future__ import annotations

import pytest

from centaur_hpo.tasks import bbob

pytest.importorskip("cocoex")
pytest.importorskip("ioh")


@pytest.mark.parametrize("spec", ["bbob:f1:d2:i1", "bbob:f3:d5:i2", "bbob:f15:d10:i3"])
def test_regret_is_zero_at_iohs_optimum_and_positive_elsewhere(spec: str) -> None:
    space, fn, info = bbob.make_task(spec, seed=0)
    f_opt = info["optimum"]
    at_opt = fn(dict(zip(space.names, info["x_optimum"], strict=True)), 0)
    assert at_opt.outcome == "ok"
    assert at_opt.metrics["regret"] == pytest.approx(0.0, abs=1e-8 * max(1, abs(f_opt)))
    centre = fn(space.default_config(), 1)
    assert centre.metrics["regret"] > 0 and centre.value == pytest.approx(
        f_opt + centre.metrics["regret"]
    )
    assert centre.time == bbob.SECONDS_PER_EVALUATION


def test_sphere_matches_its_closed_form() -> None:
    """f1 is the sphere: f(x) = ||x - x_opt||^2 + f_opt, checked independently of both libraries."""
    space, fn, info = bbob.make_task("bbob:f1:d5:i1", seed=0)
    x = {n: 1.0 for n in space.names}
    expected = sum((1.0 - xo) ** 2 for xo in info["x_optimum"]) + info["optimum"]
    assert fn(x, 0).value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("bbob:f25:d5:i1", "f1..f24"),
        ("bbob:f1:d7:i1", "dimensions"),
        ("bbob:f1:d5", "bbob:f<function>"),
        ("bbob:f1:d5:i99", "instances"),
    ],
)
def test_bad_specs_say_what_to_write(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bbob.parse_spec(spec)
