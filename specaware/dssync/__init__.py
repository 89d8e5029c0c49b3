"""DS-Sync (divide-and-shuffle synchronization) for DeepSpeed data-parallel training.

Instead of all-reducing gradients over the whole world every step, each rank steps its own replica and then
averages its **parameters** (and buffers; under bf16/fp16 the fp32 master weights) with a small group of
ranks; group membership changes every step following a schedule that is identical on all ranks, which brings
all replicas to consensus. Algorithm, attachment points and pitfalls: ``../shared/DSSYNC.md``; modules:

- :mod:`~specaware.dssync.config` - the ``dssync`` config section (:class:`DSSyncConfig`);
- :mod:`~specaware.dssync.schedule` - ``hypercube``, ``seeded-shuffle``, ``topology`` and ``hierarchical``;
- :mod:`~specaware.dssync.agreement` - every rank proves the same config and schedule at attach;
- :mod:`~specaware.dssync.groups` - only the process groups a rank joins, with the job's timeout;
- :mod:`~specaware.dssync.buckets` - flat communication buckets (flat and sharded hierarchical averages);
- :mod:`~specaware.dssync.replica` - which tensors are averaged (fp32 masters under bf16/fp16);
- :mod:`~specaware.dssync.local` - clipping norm and overflow decision per replica (no job-wide collective);
- :mod:`~specaware.dssync.checkpoint` - per-rank optimizer state and schedule position in checkpoints;
- :mod:`~specaware.dssync.compat` - the DeepSpeed settings it refuses;
- :mod:`~specaware.dssync.hook` - the hook and :func:`attach_dssync`;
- :mod:`~specaware.dssync.traffic` - which collectives run on which groups, and their bytes;
- :mod:`~specaware.dssync.launch` - a single-node gloo spawner.

Attaching it to any DeepSpeed engine in your own training loop (ZeRO stage 0, no
pipeline/tensor/sequence/expert parallelism; launched by ``deepspeed``, ``torchrun`` or
:func:`specaware.dssync.launch.spawn`)::

    import deepspeed
    import torch
    from specaware.dssync import attach_dssync, check_deepspeed_config

    ds_config = {"train_micro_batch_size_per_gpu": 32, "bf16": {"enabled": True},
                 "zero_optimization": {"stage": 0}}
    dssync = {"enabled": True, "schedule": "hierarchical", "group_size": 2,
              "topology": {"ranks_per_node": 8}, "seed": 0, "disagreement_every": 50}

    deepspeed.init_distributed()          # dist_backend="gloo" on CPU (DS_ACCELERATOR=cpu)
    check_deepspeed_config(ds_config)     # optional: refuse ZeRO >= 1 etc. before building anything
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    hook = attach_dssync(engine, dssync)  # collective; None when dssync["enabled"] is false

    for step, batch in enumerate(loader):             # each rank reads its own shard, as with all-reduce
        loss = engine(batch)
        engine.backward(loss)                         # no gradient all-reduce any more
        engine.step()                                 # optimizer step, then the group parameter average
        if step % eval_every == 0:
            if hook:
                hook.global_average()                 # evaluate the consensus model, not one replica
            evaluate(engine)
    engine.save_checkpoint("ckpt")                    # consensus model + every rank's optimizer state

``hook.disagreement()`` (max over ranks of ||theta_r - mean|| / ||mean||) is logged by the
``specaware.dssync.hook`` logger every ``disagreement_every`` steps and recorded in ``hook.disagreements``.
Without DeepSpeed, build ``DSSyncHook(ReplicaState.from_module(model), DSSyncConfig.from_dict(dssync))`` and
call ``hook.after_step()`` after each ``optimizer.step()`` (and do not wrap the model in DDP).
"""

from specaware.dssync.agreement import DSSyncMismatchError
from specaware.dssync.checkpoint import DSSyncCheckpointError
from specaware.dssync.compat import DSSyncUnsupportedError, check_deepspeed_config, check_engine
from specaware.dssync.config import DSSyncConfig, DSSyncConfigError, TopologyConfig
from specaware.dssync.hook import DSSyncCommError, DSSyncHook, attach_dssync
from specaware.dssync.replica import ReplicaState
from specaware.dssync.schedule import HierarchicalSchedule, Schedule, build_schedule

__all__ = [
    "DSSyncCheckpointError",
    "DSSyncCommError",
    "DSSyncConfig",
    "DSSyncConfigError",
    "DSSyncHook",
    "DSSyncMismatchError",
    "DSSyncUnsupportedError",
    "HierarchicalSchedule",
    "ReplicaState",
    "Schedule",
    "TopologyConfig",
    "attach_dssync",
    "build_schedule",
    "check_deepspeed_config",
    "check_engine",
]
