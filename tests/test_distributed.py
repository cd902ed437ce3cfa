"""Distributed helpers and objectives under DDP: two gloo processes on CPU (loopback only).

The gradients of the objectives that gather across ranks (SimCLR, Barlow Twins, VICReg) under
DDP with each rank holding half of the batch must equal those of one process over the whole
batch. Batch norm inside the projection heads normalises with each rank's own batch (as with
per-GPU BN), which would differ from the single-process statistics; the comparison therefore
runs the objectives in eval mode, where those BN layers use their (identical) running
statistics, so that any difference comes from the loss and the gather alone. The losses'
own normalisations (Barlow Twins' standardisation, VICReg's variance and covariance) always
use batch statistics and are computed over the gathered batch.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from pyxfer.objectives import collectives
from pyxfer.objectives.base import Objective, create_objective
from pyxfer.pluginmanager import registry

WORLD = 2
N, SIZE = 8, 8  # images in the whole batch, image side
GATHERED = ("simclr", "barlow_twins", "vicreg")
SMALL: dict[str, dict] = {
    "simclr": {"hidden_dim": 16, "proj_dim": 8},
    "moco_v2": {"hidden_dim": 16, "proj_dim": 8, "queue_size": 32},
    "byol": {"hidden_dim": 16, "proj_dim": 8},
    "barlow_twins": {"hidden_dim": 16, "proj_dim": 8},
    "vicreg": {"hidden_dim": 16, "proj_dim": 8},
    "dino": {"hidden_dim": 16, "bottleneck_dim": 8, "out_dim": 16, "n_local": 2},
    "dae": {"channels": 3, "image_size": SIZE, "decoder_width": 4},
    "vae": {"channels": 3, "image_size": SIZE, "latent_dim": 4, "decoder_width": 4},
    "gan": {"channels": 3, "image_size": SIZE, "latent_dim": 4, "generator_width": 4},
    "mae": {"decoder_dim": 8, "decoder_depth": 1, "decoder_heads": 2},
}


def view_objectives() -> list[str]:
    """Registered objectives trained on views of unlabelled images (adaptation objectives,
    which consume labelled source + unlabelled target, have their own tests)."""
    reg = registry("objectives")
    return [n for n in reg.list() if reg.get(n).metadata.get("consumes", "views") == "views"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread-pool contention on busy machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyBackbone(nn.Module):
    """conv -> ReLU -> global average pool, no batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.num_features = 8
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))


def stand_in(name: str) -> nn.Module:
    """A tiny backbone for objective ``name``: a real ViT for ``requires = "vit"`` (MAE)."""
    if getattr(registry("objectives").get(name).factory, "requires", None) == "vit":
        from pyxfer.backbone import create_backbone

        return create_backbone(
            "vit_tiny", img_size=SIZE, patch_size=4, depth=1, embed_dim=8, num_heads=2
        )
    return TinyBackbone()


def build(name: str) -> Objective:
    torch.manual_seed(0)
    return create_objective(name, stand_in(name), **SMALL.get(name, {}))


def whole_batch(num_views: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(N, 3, SIZE, SIZE, generator=g) for _ in range(num_views)]


def grads(obj: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: p.grad.detach().clone() for name, p in obj.named_parameters() if p.grad is not None
    }


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        result: dict[str, torch.Tensor] = {}
        result["rank"] = torch.tensor(collectives.rank())
        result["world"] = torch.tensor(collectives.world_size())
        # uneven gather: rank 0 holds 3 rows, rank 1 holds 2
        local = (torch.arange(6.0).view(3, 2) + 10 * rank)[: 3 - rank].requires_grad_()
        gathered = collectives.gather_with_grad(local)
        weights = torch.arange(10.0).view(5, 2)
        (gathered * weights).sum().backward()
        result["gathered"], result["gather_grad"] = gathered.detach(), local.grad
        result["offset"] = torch.tensor(collectives.gather_offset(local.shape[0]))
        result["no_grad_gather"] = collectives.gather(local)

        rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        for name in GATHERED:
            obj = build(name).eval()
            ddp = DDP(obj)
            out_ = ddp([v[rows] for v in whole_batch()])
            out_["loss"].backward()
            for key, g in grads(obj).items():
                result[f"{name}/{key}"] = g

        # MoCo: the keys of both ranks enter both ranks' queues
        moco = build("moco_v2")
        views = [v[rows] for v in whole_batch()]
        moco(views)["loss"].backward()
        moco.on_step_end(1, 1)
        result["moco_queue"] = moco.queue.clone()
        result["moco_ptr"] = moco.queue_ptr.clone()

        # every registered objective runs a DDP step (GAN: both players)
        for name in view_objectives():
            obj = build(name)
            multi = len(obj.players) > 1
            ddp = DDP(obj, find_unused_parameters=multi)
            views = [v[rows] for v in whole_batch(max(1, obj.num_views))]
            for player in obj.players:
                obj.zero_grad(set_to_none=True)
                torch.manual_seed(rank)
                loss = (ddp(views, player=player) if multi else ddp(views))["loss"]
                loss.backward()
                result[f"ddp/{name}/{player}/loss"] = loss.detach()
                result[f"ddp/{name}/{player}/grad"] = torch.cat(
                    [g.flatten() for g in grads(obj).values()]
                )
            obj.on_step_end(1, 1)
        save_file({k: v.contiguous() for k, v in result.items()}, f"{out}/rank{rank}.safetensors")
        dist.barrier()  # no rank tears gloo down while another's messages are still in flight
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, torch.Tensor]]:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    out = tmp_path_factory.mktemp("ddp")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [load_file(Path(out) / f"rank{r}.safetensors") for r in range(WORLD)]


def test_helpers_without_a_process_group() -> None:
    assert not collectives.is_initialized()
    assert collectives.rank() == 0 and collectives.world_size() == 1
    x = torch.randn(3, 2, requires_grad=True)
    assert collectives.gather_with_grad(x) is x
    assert torch.equal(collectives.gather(x), x) and not collectives.gather(x).requires_grad
    assert collectives.gather_offset(3) == 0


def test_gather_with_grad_across_two_processes(ranks: list[dict[str, torch.Tensor]]) -> None:
    rows = torch.cat([torch.arange(6.0).view(3, 2), (torch.arange(6.0).view(3, 2) + 10)[:2]])
    weights = torch.arange(10.0).view(5, 2)
    for r, res in enumerate(ranks):
        assert int(res["rank"]) == r and int(res["world"]) == WORLD
        assert torch.equal(res["gathered"], rows)
        assert torch.equal(res["no_grad_gather"], rows)
        # both ranks computed the same loss sum(rows * weights): each receives the sum over
        # ranks of the gradient of its own rows, i.e. WORLD * weights[its rows]
        mine = weights[:3] if r == 0 else weights[3:]
        assert torch.equal(res["gather_grad"], WORLD * mine)
    assert [int(res["offset"]) for res in ranks] == [0, 3]


@pytest.mark.parametrize("name", GATHERED)
def test_ddp_gradients_equal_one_process_on_the_whole_batch(
    ranks: list[dict[str, torch.Tensor]], name: str
) -> None:
    obj = build(name).eval()
    obj(whole_batch())["loss"].backward()
    expected = grads(obj)
    assert expected
    # tolerance relative to the largest gradient: some (the last biases before a shift-
    # invariant loss) are zero up to rounding
    scale = max(g.abs().max().item() for g in expected.values())
    for res in ranks:
        got = {k.split("/", 1)[1]: v for k, v in res.items() if k.startswith(f"{name}/")}
        assert got.keys() == expected.keys()
        for key, g in expected.items():
            assert torch.allclose(got[key], g, rtol=1e-4, atol=1e-5 * scale + 1e-8), (name, key)
    # the comparison can fail: the gradient of half the batch alone is different
    half = build(name).eval()
    half([v[: N // 2] for v in whole_batch()])["loss"].backward()
    assert any(not torch.allclose(g, expected[k], rtol=1e-3) for k, g in grads(half).items())


def test_moco_enqueues_the_keys_of_every_rank(ranks: list[dict[str, torch.Tensor]]) -> None:
    assert torch.equal(ranks[0]["moco_queue"], ranks[1]["moco_queue"])
    assert int(ranks[0]["moco_ptr"]) == N  # N // WORLD keys from each rank
    moco = build("moco_v2")
    with torch.no_grad():  # the key encoder has not moved from its copy before the first step
        keys = nn.functional.normalize(
            moco.projector_momentum(moco.backbone_momentum(whole_batch()[1])), dim=1
        )
    assert torch.allclose(ranks[0]["moco_queue"][:, :N], keys.T, atol=1e-6)


def test_every_objective_runs_under_ddp(ranks: list[dict[str, torch.Tensor]]) -> None:
    names = view_objectives()
    for name in names:
        players = build(name).players
        for player in players:
            key = f"ddp/{name}/{player}"
            losses = [res[f"{key}/loss"] for res in ranks]
            assert all(torch.isfinite(v) for v in losses), key
            # DDP averaged the gradients: both ranks hold the same ones
            assert torch.allclose(ranks[0][f"{key}/grad"], ranks[1][f"{key}/grad"]), key


def _shard_worker(rank: int, port: int, store_paths: list[str], out: str) -> None:
    """Three epochs of a loader over each sharded store; which images and shards this rank
    read."""
    from pyxfer.data import load_dataset

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        for j, path in enumerate(store_paths):
            _shard_epochs(load_dataset(f"packed:{path}"), Path(out, f"shards{rank}-{j}.json"))
        dist.barrier()  # no rank tears gloo down while another's messages are still in flight
    finally:
        dist.destroy_process_group()


def _shard_epochs(store, out: Path) -> None:
    import json

    import numpy as np

    from pyxfer.engine.loader import FusedLoader

    result = []
    for epoch in range(3):
        store._shards.opened.clear()
        loader = FusedLoader(store, 4, None, size=6, seed=3, epoch=epoch, threads=1)
        order = loader.epoch_indices()
        # what the loader thread runs, in this thread: the shards opened are those read
        for b in range(len(loader)):
            loader.make_batch(order[b * 4 : (b + 1) * 4], epoch)
        opened = sorted(store._shards.opened)
        with loader:
            got = torch.cat([batch.indices for batch in loader]).tolist()
        result.append({"indices": got, "order": order.tolist(), "opened": opened})
    out.write_text(json.dumps(result))
    assert np.asarray(result[0]["indices"]).size == 12


def test_each_rank_reads_its_own_shards_and_all_images_are_covered(tmp_path) -> None:
    """2 gloo processes over a store of 6 shards of 4 images, raw and compressed (JPEG): per
    epoch every image once, each rank 3 whole shards (reading only those), a new split of the
    shards each epoch."""
    import json

    import numpy as np

    from pyxfer.data import ImageStore, pack, pack_jpeg

    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    rng = np.random.default_rng(0)
    store = ImageStore(rng.integers(0, 256, (24, 6, 6, 3), dtype=np.uint8), np.arange(24) % 3)
    paths = [
        str(pack(store, tmp_path / "sh", size=6, shard_size=4, progress=False)),
        str(pack_jpeg(store, tmp_path / "sh.px", shard_size=4, threads=1, progress=False)),
    ]
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_shard_worker, args=(_free_port(), paths, str(tmp_path)), nprocs=WORLD, join=True)
    for j in range(len(paths)):
        ranks = [json.loads((tmp_path / f"shards{r}-{j}.json").read_text()) for r in range(WORLD)]
        _check_coverage(ranks)


def _check_coverage(ranks: list[list[dict]]) -> None:
    splits = []
    for epoch in range(3):
        got = [ranks[r][epoch] for r in range(WORLD)]
        assert all(g["indices"] == g["order"] for g in got)  # the thread gives the order
        a, b = (set(g["indices"]) for g in got)
        assert len(a) == len(b) == 12 and not a & b and a | b == set(range(24))
        shards = [set(g["opened"]) for g in got]
        assert [len(s) for s in shards] == [3, 3] and not shards[0] & shards[1]
        for g, s in zip(got, shards, strict=True):  # read only the shards of its images
            assert {i // 4 for i in g["indices"]} == s
        splits.append(shards[0])
    assert len({frozenset(s) for s in splits}) > 1  # the shards are dealt anew each epoch
