"""Procedural shapes: valid solids in the canonical frame, deterministic, varied, captioned."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from engine.data.errors import InvalidShapeParams, InvalidSplit, UnknownCategory
from engine.data.procedural import (CATEGORIES, SPLIT_RANGES, generate_shape, parameter_space, sample_params,
                                    split_seeds)

SEEDS = list(range(8))
VARIETY_SEEDS = list(range(24))


def _edge_use_counts(mesh: trimesh.Trimesh) -> np.ndarray:
    _, counts = np.unique(mesh.edges_sorted, axis=0, return_counts=True)
    return counts


def test_at_least_ten_shapenet_like_categories():
    assert len(CATEGORIES) >= 10
    for name in ("chair", "table", "sofa", "lamp", "airplane", "car", "mug", "bottle", "vase"):
        assert name in CATEGORIES


@pytest.mark.parametrize("category", CATEGORIES)
def test_shapes_are_valid_solids_in_the_canonical_cube(category):
    for seed in SEEDS:
        shape = generate_shape(category, seed)
        m = shape.mesh
        assert m.is_watertight, (category, seed)
        assert m.is_winding_consistent, (category, seed)
        assert (_edge_use_counts(m) == 2).all(), (category, seed)
        assert m.volume > 0, (category, seed)  # outward-facing
        lo, hi = m.bounds
        assert np.all(lo >= -1 - 1e-9) and np.all(hi <= 1 + 1e-9), (category, seed)
        assert np.isclose(np.max(hi - lo), 2.0), (category, seed)
        np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-9)
        assert 20 <= len(m.faces) <= 6000, (category, seed, len(m.faces))
        assert shape.shape_id == f"{category}-{seed:06d}"
        assert shape.category == category and shape.seed == seed


@pytest.mark.parametrize("category", CATEGORIES)
def test_deterministic_and_seed_dependent(category):
    a = generate_shape(category, 3)
    b = generate_shape(category, 3)
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    np.testing.assert_array_equal(a.mesh.faces, b.mesh.faces)
    assert a.params == b.params and a.captions == b.captions
    c = generate_shape(category, 4)
    assert c.params != a.params


@pytest.mark.parametrize("category", CATEGORIES)
def test_params_are_json_safe_and_inside_their_space(category):
    space = parameter_space(category)
    for seed in SEEDS:
        p = generate_shape(category, seed).params
        assert json.loads(json.dumps(p)) == p
        assert set(p) == set(space)
        for k, v in p.items():
            if "range" in space[k]:
                lo, hi = space[k]["range"]
                assert lo <= v <= hi, (k, v)
            else:
                assert v in space[k], (k, v)


# The parameter whose choices change the structure most, per category.
STRUCTURE = {"chair": ["legs", "back", "arms"], "table": ["support", "top"], "sofa": ["arms", "base", "seats"],
             "bench": ["supports", "back", "seat"], "lamp": ["stem", "shade", "base"], "shelf": ["sides", "shelves"],
             "mug": ["handle", "body"], "bottle": ["section", "shoulder", "cap"], "vase": ["form", "handles"],
             "airplane": ["wing", "engines", "tail"], "car": ["body", "hubcaps", "spoiler"]}


@pytest.mark.parametrize("category", CATEGORIES)
def test_structural_variety_across_seeds(category):
    shapes = [generate_shape(category, s) for s in VARIETY_SEEDS]
    keys = STRUCTURE.get(category, [])
    assert keys, f"list the structural parameters of {category} in STRUCTURE"
    space = parameter_space(category)
    for key in keys:
        spec = space[key]
        n_options = (spec["range"][1] - spec["range"][0] + 1) if "range" in spec else len({json.dumps(c) for c in spec})
        assert len({json.dumps(s.params[key]) for s in shapes}) >= min(3, n_options), (category, key)
    combos = {json.dumps([s.params[k] for k in keys]) for s in shapes}
    assert len(combos) >= 8, (category, len(combos))
    # not one template scaled: face counts and bounding-box proportions vary
    assert len({len(s.mesh.faces) for s in shapes}) >= 6
    ratios = np.array([np.sort(s.mesh.extents) for s in shapes])
    assert np.ptp(ratios[:, 0]) > 0.1 or np.ptp(ratios[:, 1]) > 0.1


@pytest.mark.parametrize("category", [c for c in CATEGORIES if c != "bottle"])
def test_topology_differs_across_seeds(category):
    # bottles are always genus 0 (solid bodies of revolution); every other category
    # mixes shapes with and without through-holes (frames, handles, rails, arches)
    genera = {int(round(1 - generate_shape(category, s).mesh.euler_number / 2)) for s in VARIETY_SEEDS}
    assert len(genera) >= 2, (category, genera)


def _top_centroid(mesh: trimesh.Trimesh, frac: float = 0.2) -> np.ndarray:
    v = mesh.vertices
    zmax = v[:, 2].max()
    return v[v[:, 2] > zmax - frac * np.ptp(v[:, 2])].mean(axis=0)


def test_canonical_orientation_z_up_front_minus_y():
    for seed in range(6):
        # chair and sofa backs rise at +Y (behind the seat, which faces -Y)
        for cat in ("chair", "sofa"):
            m = generate_shape(cat, seed).mesh
            assert _top_centroid(m)[1] > 0.05, (cat, seed)
        # airplane: nose at -Y, tail fin (the top) at +Y
        m = generate_shape("airplane", seed, {"tail": "conventional"}).mesh
        assert _top_centroid(m, 0.1)[1] > 0.3
        # table: the top slab spans the whole footprint; the bottom (feet, base) does not reach the corners
        m = generate_shape("table", seed).mesh
        v = m.vertices
        top = v[v[:, 2] > v[:, 2].max() - 0.03]
        np.testing.assert_allclose(np.ptp(top[:, :2], axis=0), m.extents[:2], rtol=0.02)
        foot = v[v[:, 2] < v[:, 2].min() + 0.03]
        assert np.prod(np.ptp(foot[:, :2], axis=0)) < 0.95 * np.prod(m.extents[:2])
        # mug: open at the top, a ray straight down the axis meets the cavity floor well below the rim
        m = generate_shape("mug", seed).mesh
        hits, _, _ = m.ray.intersects_location([[0, 0, 2.0]], [[0, 0, -1.0]], multiple_hits=False)
        assert hits[0, 2] < m.bounds[1, 2] - 0.5


def test_captions_name_category_and_attributes():
    for category in CATEGORIES:
        firsts = set()
        for seed in VARIETY_SEEDS[:12]:
            caps = generate_shape(category, seed).captions
            assert len(caps) >= 3 and len(set(caps)) == len(caps)
            for c in caps:
                assert category in c.lower(), (category, c)
            firsts.add(caps[0])
        assert len(firsts) >= 6, (category, firsts)
    # attributes a prompt can pick are spelled out
    caps = " | ".join(generate_shape("chair", 1, {"arms": "none", "legs": "star_base"}).captions)
    assert "armless" in caps and "swivel" in caps
    caps = " | ".join(generate_shape("chair", 1, {"back": "vertical_slats", "legs": "four_straight"}).captions)
    assert "slat" in caps and "four" in caps
    caps = " | ".join(generate_shape("table", 2, {"top": "round", "support": "pedestal"}).captions)
    assert "round" in caps and "pedestal" in caps
    caps = " | ".join(generate_shape("airplane", 5, {"engines": "four_wing", "tail": "t_tail"}).captions)
    assert "four engines" in caps and "T-tail" in caps


def test_overrides_apply_and_are_validated():
    base = generate_shape("chair", 7)
    other = generate_shape("chair", 7, {"arms": "panel" if base.params["arms"] != "panel" else "none"})
    assert other.params["arms"] != base.params["arms"]
    assert {k: v for k, v in other.params.items() if k != "arms"} == {k: v for k, v in base.params.items() if k != "arms"}
    assert len(other.mesh.faces) != len(base.mesh.faces)
    assert generate_shape("mug", 0, {"handle": "none"}).mesh.euler_number == 2  # no handle: genus 0
    assert sample_params("chair", 0, {"slats": 3.0})["slats"] == 3
    with pytest.raises(InvalidShapeParams) as e:
        generate_shape("chair", 0, {"wings": 2})
    assert e.value.code == "data.invalid_params" and e.value.advice
    with pytest.raises(InvalidShapeParams):
        generate_shape("chair", 0, {"seat_height": 5.0})
    with pytest.raises(InvalidShapeParams):
        generate_shape("chair", 0, {"legs": "tentacles"})
    with pytest.raises(InvalidShapeParams):
        generate_shape("chair", 0, {"round_legs": 1})
    with pytest.raises(InvalidShapeParams):
        generate_shape("chair", -1)
    with pytest.raises(InvalidShapeParams):
        generate_shape("chair", 0, ["arms", "none"])
    with pytest.raises(UnknownCategory) as e:
        generate_shape("spaceship", 0)
    assert e.value.code == "data.unknown_category"


def test_split_seed_ranges_are_disjoint():
    n = 500
    tr, va, te = (set(split_seeds(s, n)) for s in ("train", "val", "test"))
    assert len(tr) == len(va) == len(te) == n
    assert not (tr & va) and not (tr & te) and not (va & te)
    ranges = sorted(SPLIT_RANGES.values())
    for (a0, a1), (b0, _) in zip(ranges, ranges[1:]):
        assert a1 <= b0
    assert split_seeds("test", 3) == [SPLIT_RANGES["test"][0] + i for i in range(3)]
    with pytest.raises(InvalidSplit):
        split_seeds("holdout", 3)
    with pytest.raises(InvalidSplit):
        split_seeds("val", 10**9)
