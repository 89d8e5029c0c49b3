"""DS-Sync: schedules, exact consensus after a hypercube period, training against the all-reduce baseline on
real AVIRIS-NG spectra, bf16 master weights, and the refusals - multi-process over gloo on the loopback.

Every multi-process test runs through :func:`specaware.dssync.launch.spawn` with a hard timeout (and a pytest
timeout on top), so a mismatched collective fails the test instead of hanging it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import training_build
from torch import nn

from specaware.dssync import (
    DSSyncConfig,
    DSSyncConfigError,
    DSSyncHook,
    DSSyncUnsupportedError,
    ReplicaState,
    build_schedule,
    check_deepspeed_config,
)
from specaware.dssync.buckets import FlatBuckets
from specaware.dssync.launch import spawn

NG_RADIANCE = Path("aviris-ng") / "ang20170323t202244_rdn_7000-7010.hdr"
SPAWN_TIMEOUT_S = 200


# ------------------------------------------------------------------------------------------------------------
# Config and schedules (no processes)


def test_config_parses_a_training_section() -> None:
    config = DSSyncConfig.from_dict(
        {
            "enabled": True,
            "group_size": 4,
            "schedule": "topology",
            "seed": 3,
            "topology": {"ranks_per_node": 8, "nodes_per_rack": 4},
            "global_average_every": 100,
            "disagreement_every": 25,
        }
    )
    assert config.enabled and config.group_size == 4 and config.schedule == "topology"
    assert config.topology is not None and config.topology.ranks_per_node == 8
    assert DSSyncConfig.from_dict(None) == DSSyncConfig()
    assert not DSSyncConfig.from_dict({}).enabled


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"group-size": 2}, "unknown key(s) group-size"),
        ({"schedule": "hypercub"}, "dssync.schedule must be one of"),
        ({"group_size": 0}, "dssync.group_size must be >= 1"),
        ({"group_size": "4"}, "dssync.group_size must be an integer"),
        ({"enabled": "yes"}, "dssync.enabled must be true or false"),
        ({"schedule": "topology"}, "needs dssync.topology"),
        ({"groups": [[[0, 1], [2, 3]]]}, "works with schedule 'seeded-shuffle'"),
        ({"disagreement_every": -1}, "dssync.disagreement_every must be >= 0"),
        ({"bucket_mb": 0}, "dssync.bucket_mb must be a positive number"),
        ({"schedule": "topology", "topology": {"ranks_per_node": 4, "nodes": [[0]]}}, "not both"),
        ({"schedule": "topology", "topology": {"racks": [[0]]}}, "needs the list of each node's ranks"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(DSSyncConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DSSyncConfig.from_dict(raw)


def averaging_matrix(partition: tuple[tuple[int, ...], ...], world: int) -> np.ndarray:
    """The linear map one round of group averages applies to the stacked replicas."""
    matrix = np.zeros((world, world))
    for group in partition:
        for i in group:
            matrix[i, list(group)] = 1.0 / len(group)
    return matrix


@pytest.mark.parametrize(
    "world, size, rounds", [(4, 2, 2), (8, 2, 3), (8, 4, 2), (16, 4, 2), (32, 4, 3), (64, 8, 2)]
)
def test_hypercube_period_composes_the_exact_global_mean(world: int, size: int, rounds: int) -> None:
    schedule = build_schedule(world, DSSyncConfig(group_size=size))
    assert len(schedule.partitions) == rounds
    assert all(len(group) == size for partition in schedule.partitions for group in partition)
    product = np.eye(world)
    for step in range(rounds):
        product = averaging_matrix(schedule.partition(step), world) @ product
    np.testing.assert_allclose(product, np.full((world, world), 1.0 / world), atol=1e-12)
    if size == 2:  # the classic pairs i <-> i XOR 2^(t mod log2 W)
        for step in range(2 * rounds):
            assert schedule.group_of(5 % world, step) == tuple(
                sorted((5 % world, (5 % world) ^ (1 << (step % rounds))))
            )


def test_hypercube_rejects_sizes_that_are_not_powers_of_two() -> None:
    with pytest.raises(DSSyncConfigError, match="power-of-two"):
        build_schedule(12, DSSyncConfig(group_size=2))
    with pytest.raises(DSSyncConfigError, match="power-of-two"):
        build_schedule(8, DSSyncConfig(group_size=3))
    with pytest.raises(DSSyncConfigError, match="larger than the world"):
        build_schedule(4, DSSyncConfig(group_size=8))


def test_seeded_shuffle_uses_a_fixed_seeded_set_of_partitions() -> None:
    config = DSSyncConfig(group_size=4, schedule="seeded-shuffle", num_partitions=6, seed=11)
    schedule = build_schedule(16, config)
    assert schedule == build_schedule(16, config)
    assert schedule.partitions != build_schedule(
        16, DSSyncConfig(group_size=4, schedule="seeded-shuffle", seed=12)
    )
    assert len(schedule.partitions) == 6
    for partition in schedule.partitions:
        assert sorted(r for group in partition for r in group) == list(range(16))
    picks = [schedule.index(step) for step in range(600)]
    assert set(picks) == set(range(6))
    assert len(schedule.groups()) <= 6 * 4  # bounded, not a fresh partition per step
    product = np.eye(16)
    for step in range(200):
        product = averaging_matrix(schedule.partition(step), 16) @ product
    np.testing.assert_allclose(product, np.full((16, 16), 1 / 16), atol=1e-6)


def test_seeded_shuffle_accepts_explicit_partitions_and_rejects_disconnected_ones() -> None:
    explicit = {"schedule": "seeded-shuffle", "groups": [[[0, 1], [2, 3, 4, 5]], [[0, 2, 4], [1, 3, 5]]]}
    schedule = build_schedule(6, DSSyncConfig.from_dict(explicit))
    assert schedule.partitions == (((0, 1), (2, 3, 4, 5)), ((0, 2, 4), (1, 3, 5)))
    with pytest.raises(DSSyncConfigError, match="never mixes"):
        build_schedule(
            4, DSSyncConfig.from_dict({"schedule": "seeded-shuffle", "groups": [[[0, 1], [2, 3]]]})
        )
    with pytest.raises(DSSyncConfigError, match="exactly once"):
        build_schedule(
            4, DSSyncConfig.from_dict({"schedule": "seeded-shuffle", "groups": [[[0, 1], [1, 3]]]})
        )
    with pytest.raises(DSSyncConfigError, match="never mixes"):
        build_schedule(8, DSSyncConfig(group_size=2, schedule="seeded-shuffle", num_partitions=1))


def test_topology_alternates_intra_node_and_rail_groups_within_and_across_racks() -> None:
    topology = {"ranks_per_node": 4, "nodes_per_rack": 2}
    config = DSSyncConfig.from_dict({"schedule": "topology", "group_size": 2, "topology": topology})
    schedule = build_schedule(32, config)  # 8 nodes of 4 ranks, 4 racks of 2 nodes

    def node(rank: int) -> int:
        return rank // 4

    kinds = []
    for step in range(40):
        partition = schedule.partition(step)
        assert sorted(r for group in partition for r in group) == list(range(32))
        if step % 2 == 0:
            assert partition == tuple(tuple(range(n * 4, n * 4 + 4)) for n in range(8))
            continue
        for group in partition:
            assert len({r % 4 for r in group}) == 1  # one rail: the same local index
            assert len({node(r) for r in group}) == len(group)  # one rank per node
        racks = {len({node(r) // 2 for r in group}) for group in partition}
        kinds.append("within" if racks == {1} else "across")
        assert racks in ({1}, {2})
    assert kinds == ["within", "across"] * 10
    product = np.eye(32)  # not exact per period like the hypercube, but geometric mixing
    for step in range(81):
        product = averaging_matrix(schedule.partition(step), 32) @ product
    np.testing.assert_allclose(product, np.full((32, 32), 1 / 32), atol=1e-6)


def test_topology_explicit_map_and_single_node() -> None:
    nodes = {"nodes": [[0, 2, 4], [1, 3, 5]], "racks": [[0, 1]]}
    schedule = build_schedule(6, DSSyncConfig.from_dict({"schedule": "topology", "topology": nodes}))
    assert schedule.partition(0) == ((0, 2, 4), (1, 3, 5))
    assert schedule.partition(1) == ((0, 1), (2, 3), (4, 5))
    single = build_schedule(
        4, DSSyncConfig.from_dict({"schedule": "topology", "topology": {"ranks_per_node": 4}})
    )
    assert single.partitions == (((0, 1, 2, 3),),)
    with pytest.raises(DSSyncConfigError, match="exactly once"):
        build_schedule(
            6, DSSyncConfig.from_dict({"schedule": "topology", "topology": {"nodes": [[0, 1], [2]]}})
        )


def test_each_rank_joins_few_groups_at_1024_ranks_without_creating_them() -> None:
    flat = build_schedule(1024, DSSyncConfig(group_size=2))
    assert len(flat.groups()) == 5120  # what a job-wide new_group per group would cost at attach
    assert {len(flat.groups_of(rank)) for rank in (0, 5, 511, 1023)} == {10}
    assert list(flat.groups_of(5)) == [group for group in flat.groups() if 5 in group]
    hierarchical = build_schedule(
        1024,
        DSSyncConfig.from_dict(
            {"schedule": "hierarchical", "group_size": 2, "topology": {"ranks_per_node": 8}}
        ),
    )
    joined = hierarchical.groups_of(13)  # node 1, local rank 5
    assert joined[0] == tuple(range(8, 16))  # the intra-node group first, then one rail group per round
    assert len(joined) == 1 + 7 and all(len(group) == 2 for group in joined[1:])
    assert all({rank % 8 for rank in group} == {5} for group in joined[1:])
    assert set(joined) <= set(hierarchical.groups())


@pytest.mark.parametrize("world, per_node, size", [(4, 2, 2), (16, 4, 2), (32, 2, 4)])
def test_hierarchical_period_composes_the_exact_global_mean(world: int, per_node: int, size: int) -> None:
    config = {"schedule": "hierarchical", "group_size": size, "topology": {"ranks_per_node": per_node}}
    schedule = build_schedule(world, DSSyncConfig.from_dict(config))
    product = np.eye(world)
    for step in range(len(schedule.across.partitions)):
        # One step: every rank ends with the mean over all ranks of the nodes of its node group.
        matrix = np.zeros((world, world))
        for rank in range(world):
            rails = [schedule.rail_group(r, step) for r in schedule.node_group(rank)]
            members = sorted(
                {member for rail in rails for node in rail for member in schedule.node_group(node)}
            )
            assert len(members) == per_node * size
            matrix[rank, members] = 1.0 / len(members)
        product = matrix @ product
    np.testing.assert_allclose(product, np.full((world, world), 1.0 / world), atol=1e-12)


def test_hierarchical_needs_equal_nodes_and_enough_of_them() -> None:
    uneven = {"schedule": "hierarchical", "topology": {"nodes": [[0, 1, 2], [3]]}}
    with pytest.raises(DSSyncConfigError, match="same number of ranks on every node"):
        build_schedule(4, DSSyncConfig.from_dict(uneven))
    with pytest.raises(DSSyncConfigError, match="larger than the 2 nodes"):
        build_schedule(
            4,
            DSSyncConfig.from_dict(
                {"schedule": "hierarchical", "group_size": 4, "topology": {"ranks_per_node": 2}}
            ),
        )
    with pytest.raises(DSSyncConfigError, match="'hierarchical' needs dssync.topology"):
        DSSyncConfig.from_dict({"schedule": "hierarchical"})


@pytest.mark.parametrize(
    "ds_config, setting",
    [
        ({"zero_optimization": {"stage": 1}}, "ZeRO stage 1 (set zero_optimization.stage to 0)"),
        ({"zero_optimization": {"stage": 3}}, "ZeRO stage 3"),
        ({"tensor_parallel": {"autotp_size": 2}}, "tensor_parallel.autotp_size=2"),
        ({"sequence_parallel_size": 2}, "sequence_parallel_size=2"),
        ({"compile": {"deepcompile": True}}, "compile.deepcompile"),
    ],
)
def test_deepspeed_config_refusals_name_the_setting(ds_config: dict[str, Any], setting: str) -> None:
    with pytest.raises(DSSyncUnsupportedError, match=setting.replace("(", r"\(").replace(")", r"\)")):
        check_deepspeed_config(ds_config)
    check_deepspeed_config({"zero_optimization": {"stage": 0}, "bf16": {"enabled": True}})


def test_buckets_group_by_communication_dtype_and_cap_their_size() -> None:
    tensors = [
        torch.ones(10),
        torch.ones(5, dtype=torch.bfloat16),
        torch.ones(30),
        torch.ones(3, dtype=torch.float64),
    ]
    buckets = FlatBuckets(tensors, bucket_bytes=100)
    layout = [(b.flat.dtype, b.flat.numel(), len(b.tensors)) for b in buckets.buckets]
    # bf16 travels in an fp32 bucket with the first fp32 tensor; the 30-element tensor exceeds 100 bytes alone.
    assert layout == [(torch.float32, 15, 2), (torch.float32, 30, 1), (torch.float64, 3, 1)]
    assert buckets.nbytes == 15 * 4 + 30 * 4 + 3 * 8
    buckets.buckets[0].flat.fill_(0.5)
    buckets.buckets[0].unpack()
    assert tensors[1].dtype == torch.bfloat16 and bool((tensors[1] == 0.5).all())
    with pytest.raises(TypeError, match="floating-point"):
        FlatBuckets([torch.ones(2, dtype=torch.int64)], 100)


# ------------------------------------------------------------------------------------------------------------
# Multi-process workers (module level, so spawned processes can unpickle them)


def _flat(state: ReplicaState) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in state.averaged])


def _consensus_worker(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per config: distinct replicas, one schedule period of plain averaging (no updates) vs the mean."""
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    calls: list[list[int]] = []
    create = dist.new_group

    def counting_new_group(ranks: list[int], *args: Any, **kwargs: Any) -> Any:
        calls.append(list(ranks))
        return create(ranks, *args, **kwargs)

    dist.new_group = counting_new_group
    results = []
    for config in configs:
        torch.manual_seed(rank)
        # 87 floats: an odd count, so the hierarchical schedule's buckets carry shard padding.
        model = nn.Sequential(nn.Linear(4, 7), nn.BatchNorm1d(7), nn.Linear(7, 3))
        with torch.no_grad():
            model[1].running_mean.normal_()
        state = ReplicaState.from_module(model)
        mean = _flat(state)
        dist.all_reduce(mean)
        mean /= world
        calls.clear()
        hook = DSSyncHook(state, DSSyncConfig.from_dict({"enabled": True, "disagreement_every": 0, **config}))
        calls_at_attach = len(calls)
        period = len(hook.schedule.partitions)
        planned = [hook.schedule.partition(step) for step in range(3 * period)]
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, planned)
        before = hook.disagreement()
        errors = []
        for _ in range(period):
            hook.average()
            errors.append(float((_flat(state) - mean).abs().max()))
        results.append(
            {
                "same_schedule": all(other == planned for other in gathered),
                "created": hook.groups.created,
                "calls_at_attach": calls_at_attach,
                "calls_after": len(calls),
                "rounds": period,
                "errors": errors,
                "scale": float(mean.abs().max()),
                "before": before,
                "after": hook.disagreement(),
                "batches_tracked": int(model[1].num_batches_tracked),
            }
        )
    results.append(_global_average_every(rank))
    dist.destroy_process_group()
    return results


def _global_average_every(rank: int) -> dict[str, Any]:
    """``global_average_every=3``: steps 1-2 are group averages (one is not yet the mean), step 3 global."""
    torch.manual_seed(100 + rank)
    state = ReplicaState.from_module(nn.Linear(4, 4))
    hook = DSSyncHook(
        state, DSSyncConfig(enabled=True, group_size=2, global_average_every=3, disagreement_every=3)
    )
    trace = []
    for _ in range(3):
        hook.after_step()
        trace.append(hook.disagreement())
    return {"trace": trace, "step": hook.step, "logged": hook.disagreements}


def _quiet_deepspeed() -> None:
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)


def _training_worker(header: str, steps: int, checkpoint_dir: str) -> dict[str, Any]:
    """All-reduce baseline, DS-Sync (hypercube pairs) and the gradient-only counter-example, same data."""
    from specaware.dssync import attach_dssync
    from specaware.dssync.demo import evaluate, load_spectra, make_engine, replica_disagreement, train
    from specaware.dssync.groups import ProcessGroups

    _quiet_deepspeed()
    spectra = load_spectra(Path(header))
    bands, rank = spectra.shape[1], dist.get_rank()
    settings = {"steps": steps, "micro_batch": 8, "measure_every": 10}

    baseline = train(make_engine(bands, lr=3e-3, micro_batch=8), spectra, **settings)

    engine = make_engine(bands, lr=3e-3, micro_batch=8)
    hook = attach_dssync(
        engine, {"enabled": True, "group_size": 2, "schedule": "hypercube", "disagreement_every": 5}
    )
    assert hook is not None
    dssync = train(engine, spectra, **settings)
    engine.save_checkpoint(checkpoint_dir, tag="final")  # DS-Sync averages globally first
    saved_equals_consensus = True
    if rank == 0:
        saved = torch.load(Path(checkpoint_dir) / "final" / "mp_rank_00_model_states.pt", weights_only=False)
        live = engine.module.state_dict()
        saved_equals_consensus = all(torch.equal(saved["module"][k], live[k]) for k in live)

    # The counter-example: gradients (not parameters) averaged within the same kind of shuffled groups.
    shuffled = build_schedule(dist.get_world_size(), DSSyncConfig(group_size=2, schedule="seeded-shuffle"))
    shuffled_groups = ProcessGroups(shuffled.groups_of(rank), dist.get_world_size())
    rounds = [0]

    def average_gradients_in_group(gradient_engine: Any) -> None:
        group = shuffled.group_of(rank, rounds[0])
        rounds[0] += 1
        for param in gradient_engine.module.parameters():
            dist.all_reduce(param.grad, group=shuffled_groups.handle(group))
            param.grad.div_(len(group))

    gradient_engine = make_engine(bands, lr=3e-3, micro_batch=8)
    gradient_engine.enable_backward_allreduce = False
    gradient_only = train(gradient_engine, spectra, **settings, before_step=average_gradients_in_group)

    return {
        "baseline_loss": baseline.final_loss,
        "baseline_disagreements": [d for _, d in baseline.disagreements],
        "dssync_replica_loss": dssync.final_loss,
        "dssync_disagreements": [d for _, d in dssync.disagreements],
        "hook_disagreements": hook.disagreements,
        "hook_steps": hook.step,
        "hook_groups": hook.groups.created,
        "allreduce_off": not engine.enable_backward_allreduce,
        "after_checkpoint": replica_disagreement(engine),
        "consensus_loss": evaluate(engine, spectra),
        "saved_equals_consensus": saved_equals_consensus,
        "gradient_only_loss": gradient_only.final_loss,
        "gradient_only_disagreements": [d for _, d in gradient_only.disagreements],
    }


def _bf16_worker(header: str, steps: int) -> dict[str, Any]:
    """bf16 at ZeRO 0: DS-Sync averages the fp32 masters and refreshes the bf16 model weights from them."""
    from specaware.dssync import attach_dssync
    from specaware.dssync.demo import evaluate, load_spectra, make_engine, replica_disagreement, train

    _quiet_deepspeed()
    spectra = load_spectra(Path(header))
    engine = make_engine(spectra.shape[1], lr=3e-3, micro_batch=8, bf16=True)
    hook = attach_dssync(engine, {"enabled": True, "group_size": 2, "disagreement_every": 0})
    assert hook is not None
    initial = evaluate(engine, spectra)
    result = train(engine, spectra, steps=steps, micro_batch=8, measure_every=steps)
    masters_fp32 = all(master.dtype == torch.float32 for _, master in hook.replica.copies)
    refreshed = all(torch.equal(model.data, master.to(model.dtype)) for model, master in hook.replica.copies)
    model_bf16 = all(p.dtype == torch.bfloat16 for p in engine.module.parameters())
    masters_before = replica_disagreement(engine)
    hook.global_average()
    masters_after = replica_disagreement(engine)
    lp = torch.cat([p.detach().float().reshape(-1) for p in engine.module.parameters()])
    lp_max, lp_min = lp.clone(), lp.clone()
    dist.all_reduce(lp_max, op=dist.ReduceOp.MAX)
    dist.all_reduce(lp_min, op=dist.ReduceOp.MIN)
    return {
        "optimizer": type(engine.optimizer).__name__,
        "masters_fp32": masters_fp32,
        "model_bf16": model_bf16,
        "refreshed": refreshed,
        "masters_before": masters_before,
        "masters_after": masters_after,
        "lp_identical": bool(torch.equal(lp_max, lp_min)),
        "initial_loss": initial,
        "final_loss": evaluate(engine, spectra),
        "train_loss": result.losses,
    }


def _refusal_worker() -> dict[str, Any]:
    """ZeRO stage 1 is refused with the documented error; a disabled config installs nothing."""
    from specaware.dssync import attach_dssync
    from specaware.dssync.demo import make_engine

    _quiet_deepspeed()
    zero = make_engine(16, lr=1e-3, micro_batch=4, zero_stage=1)
    try:
        attach_dssync(zero, {"enabled": True})
        message = ""
    except DSSyncUnsupportedError as error:
        message = str(error)
    plain = make_engine(16, lr=1e-3, micro_batch=4)
    disabled = attach_dssync(plain, {"enabled": False, "group_size": 2})
    return {
        "message": message,
        "disabled_is_none": disabled is None,
        "allreduce_kept": plain.enable_backward_allreduce,
    }


def _step_collectives_worker(header: str) -> dict[str, Any]:
    """Collectives per step by group: all-reduce baseline, then DS-Sync fp32/bf16 (clipping on), flat and
    hierarchical, then DS-Sync with DeepSpeed's own (job-wide) clipping norm put back."""
    from specaware.dssync import attach_dssync
    from specaware.dssync.demo import load_spectra, make_engine
    from specaware.dssync.traffic import CollectiveLog

    _quiet_deepspeed()
    log = CollectiveLog()
    spectra = load_spectra(Path(header))
    shard = spectra[dist.get_rank() :: dist.get_world_size()][:64]

    def steps(engine: Any, count: int) -> list[list[tuple[str, tuple[int, ...]]]]:
        """(collective, group) of every call, per step."""
        dtype = next(engine.module.parameters()).dtype
        per_step = []
        for step in range(count):
            batch = shard[step * 8 : step * 8 + 8].to(dtype)
            log.on = True
            loss = (engine(batch).float() - batch.float()).pow(2).mean()
            engine.backward(loss)
            engine.step()
            log.on = False
            per_step.append([(call.name, call.ranks) for call in log.take()])
        return per_step

    result: dict[str, Any] = {"allreduce": steps(make_engine(spectra.shape[1], lr=1e-3, micro_batch=8), 2)}
    variants = {
        "fp32": ({"group_size": 2}, False),
        "bf16": ({"group_size": 2}, True),
        "hierarchical": ({"schedule": "hierarchical", "topology": {"ranks_per_node": 2}}, True),
        "measured": ({"group_size": 2, "disagreement_every": 2}, False),
    }
    for name, (dssync, bf16) in variants.items():
        engine = make_engine(spectra.shape[1], lr=1e-3, micro_batch=8, bf16=bf16, clipping=1.0)
        attach_dssync(engine, {"enabled": True, "disagreement_every": 0, **dssync})
        result[name] = steps(engine, 4)
    engine.clip_fp32_gradients = type(engine).clip_fp32_gradients.__get__(engine)  # DeepSpeed's own
    result["deepspeed_clipping"] = steps(engine, 1)
    return result


def _resume_worker(header: str, checkpoint_dir: str, export_dir: str) -> dict[str, Any]:
    """8 steps straight vs 4 steps, checkpoint, a fresh engine resumed from it, 4 more; fp32 and bf16."""
    from specaware.dssync import attach_dssync
    from specaware.dssync.demo import load_spectra, make_engine, train

    _quiet_deepspeed()
    spectra = load_spectra(Path(header))
    rank, world = dist.get_rank(), dist.get_world_size()
    settings = {"micro_batch": 8, "measure_every": 0}
    dssync = {"enabled": True, "group_size": 2, "disagreement_every": 0}
    result: dict[str, Any] = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        folder = str(Path(checkpoint_dir) / precision)

        def engine(bf16: bool = bf16) -> Any:
            made = make_engine(spectra.shape[1], lr=3e-3, micro_batch=8, bf16=bf16, clipping=1.0)
            attach_dssync(made, dssync)
            return made

        straight = engine()
        train(straight, spectra, steps=4, **settings)
        straight.save_checkpoint(folder, tag="step4")
        train(straight, spectra, steps=8, start_step=4, **settings)

        resumed = engine()
        resumed.load_checkpoint(folder)
        train(resumed, spectra, steps=8, start_step=4, **settings)
        a, b = straight.dssync_hook, resumed.dssync_hook
        moments = straight.optimizer.state_dict()
        moments = moments.get("optimizer_state_dict", moments)["state"][0]["exp_avg"].reshape(-1)
        spread = moments.clone()
        dist.all_reduce(spread, op=dist.ReduceOp.MAX)
        result[precision] = {
            "equal": all(
                torch.equal(x, y) for x, y in zip(a.replica.averaged, b.replica.averaged, strict=True)
            ),
            "model_equal": all(
                torch.equal(x, y)
                for x, y in zip(
                    straight.module.state_dict().values(), resumed.module.state_dict().values(), strict=True
                )
            ),
            "steps": (a.step, b.step),
            "moments_differ_between_ranks": not torch.equal(spread, moments),
            "rank_file": (Path(folder) / "step4" / f"dssync_rank{rank:05d}.pt").is_file(),
        }

    # save_16bit_model writes the consensus (bf16 of the mean of the fp32 masters), not rank 0's replica.
    masters = torch.cat([t.detach().reshape(-1).double() for t in resumed.dssync_hook.replica.averaged])
    mean = masters.clone()
    dist.all_reduce(mean)
    mean /= world
    own = torch.cat([p.detach().reshape(-1).double() for p in resumed.module.parameters()])
    resumed.save_16bit_model(export_dir, "consensus.bin")
    if rank == 0:
        saved = torch.load(Path(export_dir) / "consensus.bin", weights_only=True)
        flat = torch.cat([saved[name].reshape(-1).double() for name, _ in resumed.module.named_parameters()])
        # bf16 rounding (2^-8 relative) plus the fp32 summation error of the average.
        tolerance = 2**-8 * mean.abs() + 1e-6 * float(mean.abs().max())
        result["export_within_rounding"] = bool(((flat - mean).abs() <= tolerance).all())
        result["export_is_own_replica"] = torch.equal(flat, own)
    return result


def _failure_worker(
    configs: list[dict[str, Any]], timeout_s: float, started: Any, reported: Any
) -> dict[str, str]:
    """Two failures in one job (timeout ``timeout_s``), each returned as its error message ("" if none).

    ``mismatch``: attach with this rank's entry of ``configs``. ``timeout``: rank 1 never joins step 0's
    average, so rank 0 must fail after the job's timeout, naming the step and the group. Every other rank
    stays alive until rank 0 has set ``reported`` (a multiprocessing Event, outside the communicator), so no
    peer's exit can end rank 0's wait first, however slow the machine. ``started`` (a multiprocessing
    Barrier) holds every rank until all have imported torch, so the short timeout cannot expire in the
    rendezvous of a slow start.
    """
    from datetime import timedelta

    started.wait(120)
    dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    rank = dist.get_rank()
    torch.manual_seed(0)
    result = {"mismatch": "", "timeout": "averaged"}
    try:
        DSSyncHook(ReplicaState.from_module(nn.Linear(3, 3)), DSSyncConfig(**configs[rank]))
    except Exception as error:  # noqa: BLE001 - the message is the result
        result["mismatch"] = f"{type(error).__name__}: {error}"
    hook = DSSyncHook(
        ReplicaState.from_module(nn.Linear(3, 3)),
        DSSyncConfig(enabled=True, group_size=2, disagreement_every=0),
    )
    if rank == 1:  # alive but absent: only a timeout can end rank 0's wait
        result["timeout"] = "absent"
    elif rank == 0:
        try:
            hook.average()
        except Exception as error:  # noqa: BLE001 - the message is the result
            result["timeout"] = f"{type(error).__name__}: {error}"
        reported.set()
    else:
        hook.average()
    if rank != 0 and not reported.wait(120):
        result["timeout"] = "rank 0 never reported"
    return result


def _sleep_forever() -> None:
    time.sleep(3600)


# ------------------------------------------------------------------------------------------------------------
# Multi-process tests


@pytest.fixture(scope="module")
def radiance(realdata: Path) -> Path:
    path = realdata / NG_RADIANCE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


HIERARCHICAL_2_PER_NODE = {"schedule": "hierarchical", "group_size": 2, "topology": {"ranks_per_node": 2}}


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "world, groups_by_config",
    [
        (4, [({"group_size": 2}, 2), ({"group_size": 4}, 0), (HIERARCHICAL_2_PER_NODE, 2)]),
        (8, [({"group_size": 2}, 3), ({"group_size": 4}, 2), (HIERARCHICAL_2_PER_NODE, 3)]),
    ],
)
def test_one_schedule_period_without_updates_gives_every_replica_the_global_mean(
    world: int, groups_by_config: list[tuple[dict[str, Any], int]]
) -> None:
    configs = [config for config, _ in groups_by_config]
    per_rank = spawn(_consensus_worker, world, configs, timeout_s=SPAWN_TIMEOUT_S)
    for results in per_rank:
        periodic = results.pop()
        assert periodic["step"] == 3 and periodic["trace"][0] > 1e-3 and periodic["trace"][2] < 1e-7
        assert periodic["logged"] == [(3, periodic["trace"][2])]
        for (_, groups), result in zip(groups_by_config, results, strict=True):
            assert result["same_schedule"]
            # Each rank creates only its own groups: one per round (hierarchical: its node group and one
            # rail group per node-level round); a whole-world group reuses the default group.
            assert result["created"] == groups
            assert result["calls_at_attach"] == groups and result["calls_after"] == groups  # never again
            assert result["before"] > 0.1
            assert result["errors"][-1] <= 1e-6 * result["scale"]
            assert result["after"] < 1e-6
            assert result["batches_tracked"] == 0  # integer buffers are not averaged
            if result["rounds"] > 1:
                assert result["errors"][-2] > 1e-3 * result["scale"]  # not already the mean one round early


@pytest.mark.timeout(240)
def test_deepspeed_training_tracks_allreduce_and_gradient_only_averaging_diverges(
    radiance: Path, tmp_path: Path
) -> None:
    steps = 60
    results = spawn(_training_worker, 4, str(radiance), steps, str(tmp_path), timeout_s=SPAWN_TIMEOUT_S)
    first = results[0]
    assert first["allreduce_off"] and first["hook_steps"] == steps and first["hook_groups"] == 2
    assert max(first["baseline_disagreements"]) < 1e-6  # all-reduce keeps identical replicas

    # DS-Sync: replicas differ (no hidden all-reduce) but stay close, and the loss tracks the baseline.
    dssync = first["dssync_disagreements"]
    assert 1e-4 < max(dssync) < 0.03
    assert dssync[-1] <= 1.5 * dssync[0]
    assert [step for step, _ in first["hook_disagreements"]] == list(range(5, steps + 1, 5))
    baseline = first["baseline_loss"]
    assert first["consensus_loss"] <= 1.2 * baseline + 0.01
    assert all(r["dssync_replica_loss"] <= 1.3 * baseline + 0.01 for r in results)

    # The checkpoint holds the consensus model: identical replicas, saved weights equal to them.
    assert first["after_checkpoint"] < 1e-7
    assert all(r["saved_equals_consensus"] for r in results)
    assert len({r["consensus_loss"] for r in results}) == 1

    # Averaging only gradients in shuffled groups: replicas random-walk apart.
    gradient_only = first["gradient_only_disagreements"]
    assert gradient_only[-1] > 10 * dssync[-1]
    assert gradient_only[-1] > 2 * gradient_only[0]
    assert np.mean([r["gradient_only_loss"] for r in results]) > baseline


@pytest.mark.timeout(240)
def test_bf16_averages_fp32_master_weights_and_refreshes_the_bf16_model(radiance: Path) -> None:
    results = spawn(_bf16_worker, 4, str(radiance), 30, timeout_s=SPAWN_TIMEOUT_S)
    for result in results:
        assert result["optimizer"] == "FP16_UnfusedOptimizer"  # DeepSpeed 0.19.8's bf16 path at ZeRO 0
        assert result["masters_fp32"] and result["model_bf16"]
        assert result["refreshed"]  # bf16 weights == bf16(averaged fp32 masters) after every step
        assert result["masters_before"] > 1e-5
        assert result["masters_after"] < 1e-7
        assert result["lp_identical"]
        assert result["final_loss"] < 0.5 * result["initial_loss"]


@pytest.mark.timeout(240)
def test_zero_stage_one_is_refused_with_the_documented_error() -> None:
    (result,) = spawn(_refusal_worker, 1, timeout_s=SPAWN_TIMEOUT_S)
    assert "ZeRO stage 1 (set zero_optimization.stage to 0)" in result["message"]
    assert "DS-Sync needs plain data parallelism at ZeRO stage 0" in result["message"]
    assert result["disabled_is_none"] and result["allreduce_kept"]


@pytest.mark.timeout(240)
def test_no_collective_spans_the_job_in_steady_state(radiance: Path) -> None:
    results = spawn(_step_collectives_worker, 4, str(radiance), timeout_s=SPAWN_TIMEOUT_S)
    world = (0, 1, 2, 3)
    for rank, result in enumerate(results):
        # The counter sees the job-wide gradient all-reduce of plain data parallelism...
        assert all(("all_reduce", world) in step for step in result["allreduce"])
        # ...and none under DS-Sync, fp32 or bf16 with clipping on: only the rank's pair, one bucket each.
        for name in ("fp32", "bf16"):
            for step, calls in enumerate(result[name]):
                pair = tuple(sorted((rank, rank ^ (1 << (step % 2)))))
                assert calls == [("all_reduce", pair)], (name, step, calls)
        # Hierarchical on 2 "nodes" x 2: reduce-scatter in the node, the shard over the rail, all-gather.
        node, rail = (rank & ~1, rank | 1), tuple(sorted((rank, rank ^ 2)))
        for calls in result["hierarchical"]:
            assert calls == [
                ("reduce_scatter_single", node),
                ("all_reduce", rail),
                ("all_gather_single", node),
            ]
        # The disagreement metric, when asked for (every 2nd step), is the only job-wide traffic.
        measured = [[group for _, group in calls if group == world] for calls in result["measured"]]
        assert [len(groups) > 0 for groups in measured] == [False, True, False, True]
        # DeepSpeed's own clipping norm is a job-wide all-reduce: what make_step_local removes.
        assert ("all_reduce", world) in result["deepspeed_clipping"][0]


@pytest.mark.timeout(240)
def test_a_resumed_dssync_run_equals_the_uninterrupted_one(radiance: Path, tmp_path: Path) -> None:
    results = spawn(
        _resume_worker,
        4,
        str(radiance),
        str(tmp_path / "ckpt"),
        str(tmp_path / "export"),
        timeout_s=SPAWN_TIMEOUT_S,
    )
    for result in results:
        for precision in ("fp32", "bf16"):
            run = result[precision]
            assert run["rank_file"] and run["steps"] == (8, 8)
            assert run["moments_differ_between_ranks"]  # rank 0's optimizer state alone would be wrong
            assert run["equal"] and run["model_equal"], precision
    # The bf16 export is the consensus to bf16 rounding, not rank 0's own replica.
    assert results[0]["export_within_rounding"]
    assert not results[0]["export_is_own_replica"]


@pytest.fixture(scope="module")
def failures() -> list[dict[str, str]]:
    """One 4-rank job (timeout 4 s, far below gloo's 30 min default): a config mismatch, then a timeout."""
    configs = [{"enabled": True, "group_size": 2, "seed": 0}] * 2 + [
        {"enabled": True, "group_size": 2, "seed": 1, "schedule": "seeded-shuffle"},
        {"enabled": True, "group_size": 2, "seed": 0},
    ]
    context = mp.get_context("spawn")
    return spawn(_failure_worker, 4, configs, 4.0, context.Barrier(4), context.Event(), timeout_s=150)


@pytest.mark.timeout(180)
def test_ranks_with_different_configs_fail_at_attach_naming_the_ranks(failures: list[dict[str, str]]) -> None:
    for result in failures:  # every rank fails, none hangs
        message = result["mismatch"]
        assert message.startswith("DSSyncMismatchError: DS-Sync config differs between ranks: ranks [2]")
        assert "schedule" in message and "seed" in message and "rank 2: " in message


@pytest.mark.timeout(180)
def test_a_missing_partner_fails_after_the_job_timeout_naming_step_and_group(
    failures: list[dict[str, str]],
) -> None:
    messages = [result["timeout"] for result in failures]
    assert messages[1] == "absent" and messages[2] == messages[3] == "averaged"
    assert messages[0].startswith("DSSyncCommError: DS-Sync step 0: group average on rank 0 in group [0, 1]")
    assert "timeout 0:00:04" in messages[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-product build (AVIRIS-NG L2 on its real band grid, 64-pixel tiles) to pretrain on."""
    return training_build(tmp_path_factory, [("aviris-ng", "L2", 128, 128, 5)])


@pytest.mark.timeout(420)
def test_torchrun_launches_dssync_pretraining_and_resumes_it(corpus: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    root = Path(__file__).resolve().parents[1]
    shipped = root / "pipelines" / "configs" / "pretrain_tiny_dssync.yaml"
    settings = yaml.safe_load(shipped.read_text())
    assert settings["dssync"]["enabled"] and settings["dssync"]["schedule"] == "hierarchical"
    settings.update(text="placeholder", batch_size=4, warmup_steps=1, log_every=1, checkpoint_every=2)
    settings["dssync"]["disagreement_every"] = 1
    config = tmp_path / "pretrain.yaml"
    config.write_text(yaml.safe_dump(settings))
    output = tmp_path / "run"

    def launch(steps: int) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "specaware.cli", "pretrain", "--config", str(config), "--data", str(corpus),
            "--output", str(output), "--steps", str(steps), "--no-progress",
        ]  # fmt: skip
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
        return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=400)

    first = launch(4)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    tag = output / "checkpoints" / "step000004"
    assert sorted(path.name for path in tag.glob("dssync_rank*.pt")) == [
        "dssync_rank00000.pt",
        "dssync_rank00001.pt",
    ]
    assert torch.load(tag / "dssync_rank00001.pt", weights_only=False)["step"] == 4
    resumed = launch(6)  # continues from the step-4 checkpoint, schedule position and optimizers included
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = [line.split(",") for line in (output / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert [int(row[header.index("step")]) for row in rows] == [1, 2, 3, 4, 5, 6]
    assert all(row[header.index("disagreement")] != "" for row in rows)
    assert (
        torch.load(output / "checkpoints" / "step000006" / "dssync_rank00000.pt", weights_only=False)["step"]
        == 6
    )
    assert (output / "model.pt").is_file()


def test_spawn_times_out_instead_of_hanging() -> None:
    with pytest.raises(TimeoutError):
        spawn(_sleep_forever, 1, timeout_s=3)
