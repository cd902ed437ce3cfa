"""The package layout: moved modules keep their old import paths for one release, one copy of
each shared piece (argument checks, the per-class mean, the figures), imports in one direction.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import numpy as np
import pytest

# old module -> (new module(s), names that must be the very same objects)
MOVED = {
    "pyxfer.objective": (
        ("pyxfer.objectives.base",),
        ["CONSUMES", "Objective", "create_objective", "list_objectives", "objective_consumes"],
    ),
    "pyxfer.adaptation": (
        ("pyxfer.objectives.adaptation", "pyxfer._checks"),
        [
            "AdaptationObjective",
            "AdaptationOutputs",
            "DomainDiscriminator",
            "GradientReversal",
            "adaptation_objective_names",
            "check_int",
            "check_number",
            "dann_coefficient",
            "domain_adversarial_loss",
            "entropy",
            "grad_reverse",
        ],
    ),
    "pyxfer.heads": (
        ("pyxfer.objectives.heads",),
        ["ConvDecoder", "PredictionHead", "ProjectionHead", "check_image_shape", "image_spec"],
    ),
    "pyxfer.distributed": (
        ("pyxfer.objectives.collectives", "pyxfer.engine.dist"),
        ["gather", "gather_offset", "gather_with_grad", "is_initialized", "rank", "world_size"],
    ),
    "pyxfer.validators": (
        ("pyxfer.transfer.selection",),
        ["VALIDATORS", "ValidationData", "create_validator", "run_validators", "format_results"],
    ),
    "pyxfer.loader": (("pyxfer.engine.loader",), ["Batch", "FusedLoader"]),
    "pyxfer.evaluate.plots": (
        ("pyxfer.report.plots",),
        ["PROJECTIONS", "plot_confusion", "plot_feature_map", "project_2d"],
    ),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_re_exports_the_moved_names(old: str) -> None:
    news, names = MOVED[old]
    shim = importlib.import_module(old)
    homes = [importlib.import_module(n) for n in news]
    for name in names:
        home = next(m for m in homes if name in vars(m))
        assert getattr(shim, name) is vars(home)[name], (old, name)
    assert "Moved" in (shim.__doc__ or "") and news[0] in (shim.__doc__ or "")


def test_the_objective_host_package_resolves_its_names_lazily() -> None:
    import pyxfer
    import pyxfer.objectives as objectives
    from pyxfer.objectives.adaptation import AdaptationObjective
    from pyxfer.objectives.base import Objective

    assert objectives.Objective is Objective is pyxfer.Objective
    assert objectives.AdaptationObjective is AdaptationObjective
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = objectives.nothing


def _package_imports(package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports (at the top or inside functions)."""
    pkg = importlib.import_module(package)
    graph: dict[str, set[str]] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        name = f"{package}.{info.name}"
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        tree = ast.parse(Path(spec.origin).read_text())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith(package + "."):
                    deps.add(node.module)
                elif node.module == package:
                    deps.update(f"{package}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith(package + "."))
        graph[name] = deps - {name}
    return graph


def test_zeroshot_imports_in_one_direction() -> None:
    graph = _package_imports("pyxfer.zeroshot")
    assert graph["pyxfer.zeroshot._base"] == set()  # the lowest module
    # no cycle: repeatedly remove modules that import nothing left
    left = {m: {d for d in deps if d in graph} for m, deps in graph.items()}
    while left:
        leaves = [m for m, deps in left.items() if not deps & set(left)]
        assert leaves, f"import cycle among {sorted(left)}"
        for m in leaves:
            del left[m]


def test_one_check_features_for_evaluation_and_zero_shot() -> None:
    from pyxfer._checks import check_features
    from pyxfer.evaluate import knn_accuracy
    from pyxfer.zeroshot import ESZSL

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    x = (np.eye(3)[y] * 5 + rng.integers(0, 2, (30, 3))).astype(np.int64)
    # integer features are features (evaluation refused them, zero-shot took them)
    as_int = knn_accuracy(x, y, x, y, k=5)
    as_float = knn_accuracy(x.astype(np.float32), y, x.astype(np.float32), y, k=5)
    assert as_int.top1 == as_float.top1 > 0.9
    # the detailed message of the zero-shot check now serves evaluation too
    bad = x.astype(np.float32)
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"train_feats: expected finite values.*row 4"):
        knn_accuracy(bad, y, x, y)
    # the class table's errors describe the table, not a feature matrix
    with pytest.raises(ValueError, match=r"class_descriptions: .*\(num_classes, num_attributes\)"):
        ESZSL(gamma=1, lam=1).fit(x.astype(float), y, np.ones(3))
    # empty sets pass where evaluation accepts them; zero-width features never do
    assert check_features(np.zeros((0, 4)), "f", dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="f: expected a non-empty array"):
        check_features(np.zeros((3, 0)), "f")
    with pytest.raises(ValueError, match="f: expected a non-empty array"):
        check_features(np.zeros((0, 4)), "f", min_rows=1)
    with pytest.raises(ValueError, match="f: expected real numbers"):
        check_features(np.ones((2, 2), bool), "f")


def test_one_mean_per_class_accuracy() -> None:
    import pyxfer.evaluate as evaluate
    import pyxfer.zeroshot as zeroshot

    assert zeroshot.mean_per_class_accuracy is evaluate.mean_per_class_accuracy
    f = evaluate.mean_per_class_accuracy
    # any class ids, a mean over the classes present
    assert f([3, 3, 3, 7], [3, 3, 7, 7]) == pytest.approx((2 / 3 + 1) / 2)
    # classes=: only those, each must have images
    assert f([0, 0, 1, 2], [0, 1, 1, 0], classes=[0, 1]) == pytest.approx((1 / 2 + 1) / 2)
    with pytest.raises(ValueError, match=r"classes: class\(es\) \[5\] have no images"):
        f([0, 1], [0, 1], classes=[0, 5])
    with pytest.raises(ValueError, match=r"y_true: expected class ids in \[0, 2\)"):
        f([0, 2], [0, 1], 2)
    assert np.isnan(f([], []))
    # the former zero-shot name keeps its signature (classes third) for one release
    assert zeroshot.per_class_accuracy([0, 0, 1, 2], [0, 1, 1, 0], [0, 1]) == pytest.approx(0.75)
    # the per-class array keeps its name in evaluate
    recall = evaluate.per_class_accuracy([0, 0, 1], [0, 1, 1], 3)
    np.testing.assert_allclose(recall, [0.5, 1, np.nan])


def test_one_set_of_figures(tmp_path: Path) -> None:
    import pyxfer.evaluate as evaluate
    from pyxfer.report import plots

    assert evaluate.plot_confusion is plots.plot_confusion
    assert evaluate.plot_feature_map is plots.plot_feature_map
    # the report's figure and the file eval writes are the same drawing
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    path = plots.plot_confusion(y, p, ["a", "b", "c"], tmp_path / "cm.png", title="t", dpi=100)
    assert path.read_bytes() == plots.confusion_matrix(y, p, ["a", "b", "c"], title="t", dpi=100)


def test_env_rank_reads_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyxfer.engine.dist import env_rank

    monkeypatch.delenv("RANK", raising=False)
    assert env_rank() == 0
    monkeypatch.setenv("RANK", "3")
    assert env_rank() == 3
