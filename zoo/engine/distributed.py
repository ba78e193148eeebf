"""Multi-process training on torch.distributed: torchrun starts the processes, this joins them.

`torchrun --nproc-per-node N -m zoo run NAME ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
each process then trains a DistributedDataParallel replica (gloo on CPU, nccl on CUDA)
on its own shard of every epoch, and only rank 0 writes the run folder. Without those
variables everything here is a no-op, so single-process runs pay nothing.
"""

from __future__ import annotations

import hashlib
import os

import attrs
import torch


@attrs.frozen
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    """The process's place among torchrun's processes (one process: rank 0 of 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        size=size,
    )


def join(world: World, device_name: str) -> None:
    """Join the process group (once): nccl for CUDA devices, gloo otherwise."""
    import torch.distributed as dist

    if not world.active or dist.is_initialized():
        return
    cuda = device_name in ("cuda", "auto") and torch.cuda.is_available()
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            from zoo.core.errors import ConfigError

            raise ConfigError(
                f"process {world.local_rank} has no GPU of its own (this machine has "
                f"{torch.cuda.device_count()}): use --nproc-per-node "
                f"{torch.cuda.device_count()} or --device cpu"
            )
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")


def device_for(world: World, device: torch.device) -> torch.device:
    """Each process on a machine takes its own GPU."""
    if world.active and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def broadcast_text(world: World, text: str | None) -> str:
    """Rank 0's ``text`` on every rank (e.g. the run folder it created)."""
    import torch.distributed as dist

    if not world.active:
        return text or ""
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def replicate(modules: torch.nn.ModuleDict, device: torch.device) -> torch.nn.ModuleDict:
    """The same networks wrapped in DistributedDataParallel: gradients are averaged
    across processes in every backward pass. Modules without trainable parameters
    (e.g. BEGAN's balance term) stay as they are."""
    from torch.nn.parallel import DistributedDataParallel

    wrapped = torch.nn.ModuleDict()
    for name, module in modules.items():
        if any(p.requires_grad for p in module.parameters()):
            ids = [device.index] if device.type == "cuda" else None
            wrapped[name] = DistributedDataParallel(module, device_ids=ids)
        else:
            wrapped[name] = module
    return wrapped


def sync_state(world: World, modules: torch.nn.ModuleDict, optimizers: dict) -> None:
    """Copy rank 0's buffers (batch-norm statistics, BEGAN's k) and learning rates to
    every rank. DDP broadcasts buffers before each forward pass, but each rank's last
    pass updates its own, and an end-of-epoch hook (run on rank 0) may change both."""
    import torch.distributed as dist

    if not world.active:
        return
    for buffer in modules.buffers():
        dist.broadcast(buffer, src=0)
    rates = [[group["lr"] for group in opt.param_groups] for opt in optimizers.values()]
    box = [rates]
    dist.broadcast_object_list(box, src=0)
    for optimizer, lrs in zip(optimizers.values(), box[0], strict=True):
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr


def all_ranks_agree(world: World, ok: bool) -> bool:
    """True only if ``ok`` holds on every rank, so all ranks stop together."""
    import torch.distributed as dist

    if not world.active:
        return ok
    flag = torch.tensor([1 if ok else 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def weights_digest(modules: torch.nn.ModuleDict) -> str:
    """SHA-256 of every weight and buffer, to check that replicas agree."""
    digest = hashlib.sha256()
    for key, value in sorted(modules.state_dict().items()):
        digest.update(key.encode())
        digest.update(
            value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


def gather_text(world: World, text: str) -> list[str]:
    """Every rank's ``text``, in rank order (on every rank)."""
    import torch.distributed as dist

    if not world.active:
        return [text]
    boxes: list[str | None] = [None] * world.size
    dist.all_gather_object(boxes, text)
    return [str(box) for box in boxes]


def barrier(world: World) -> None:
    import torch.distributed as dist

    if world.active:
        dist.barrier()


def leave(world: World) -> None:
    import torch.distributed as dist

    if world.active and dist.is_initialized():
        dist.destroy_process_group()
