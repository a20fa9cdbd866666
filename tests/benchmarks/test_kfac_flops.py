"""benchmarks/kfac_flops.py: the layer-by-layer counts equal torch's flop counter on real steps."""

from __future__ import annotations

import pytest

from benchmarks.kfac_flops import count, counted_by_torch, kfac_over_sgd, layer_shapes
from benchmarks.kfac_step_time import build


@pytest.mark.parametrize(("model", "batch"), [("digits-ae", 64), ("cnn", 32)])
def test_counts_match_torch_flop_counter(model: str, batch: int) -> None:
    net, x, _, _, _ = build(model, batch)
    f = count(layer_shapes(net, x))
    torch_sgd, torch_kfac = counted_by_torch(model, batch)
    assert f.forward + f.backward == pytest.approx(torch_sgd, rel=1e-9)
    # K-FAC also multiplies a few vectors (trust-region dots, bias columns): within 2%.
    ours = f.forward + f.backward + f.fisher_backward + f.statistics + f.precondition
    assert ours == pytest.approx(torch_kfac, rel=0.02)


def test_amortizing_statistics_lowers_the_floor_towards_one() -> None:
    net, x, _, _, _ = build("digits-ae", 512)
    f = count(layer_shapes(net, x))
    floors = [kfac_over_sgd(f, every, 10, outputs_only=False) for every in (1, 2, 5, 10, 10**9)]
    assert floors == sorted(floors, reverse=True)
    assert floors[0] > 2.5 and floors[-1] > 1.0
    assert kfac_over_sgd(f, 1, 10, outputs_only=True) < floors[0]
