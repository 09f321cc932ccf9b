"""Gradient flow through each module of trained runs, at step 0 and at the end (docs/claims.md).

    python tests/benchmarks/gradient_flow.py RUN_DIR [RUN_DIR ...] [--json OUT]

For each run folder (written by `rrsis-bench run`): the method is rebuilt from the run's config with the
run's seed, exactly as the run built it before its first step ("step 0"), and loaded from
``checkpoints/last`` ("end"). On one fixed training batch (batch 8, the first batch of the train split
shuffled with generator seed 0, the run's transforms) it reports, per module group:

- ``grad_norm``: the L2 norm of the gradient of the method's training loss;
- for a method with a contrastive term (``contrastive_weight`` > 0): ``mask_grad_norm``, the same
  with the contrastive weight set to 0 (the mask loss alone), so the contrastive share is visible;
- ``weight_change``: ||θ_end − θ_0|| / ||θ_0|| over the group's trainable parameters;

the loss terms, and how open each language gate is (``gates``: see :func:`gate_stats`). Groups:
each top-level module, each stage of a ModuleList (``fusions.2``), and
the parts of a FIANet fusion (``fusions.2.object_position.object_attention``) and of a VLBA. ``--json``
appends one JSON object per run to OUT (docs/figures/gradient-flow.jsonl).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from rrsis_bench import tasks
from rrsis_bench.data.pipeline import TransformedDataset, build_encoder, collate
from rrsis_bench.engine import checkpoint as ckpt
from rrsis_bench.engine.trainer import seed_everything
from rrsis_bench.nn.text import build_tokenizer

BATCH = 8
# Children whose own children are reported one by one (FIAM's parts, a VLBA's two directions).
SPLIT_PARTS = ("object_position",)


def group_of(name: str) -> str:
    """``fusions.2.object_position.object_attention.q.weight`` → ``fusions.2.object_position.object_attention``;
    ``fusions.2.context.out.0.weight`` → ``fusions.2.context``; ``decoder.vlba.1.gate…`` → ``decoder.vlba.1``;
    ``backbone.blocks.3…`` → ``backbone``."""
    parts = name.split(".")
    if parts[0] in ("fusions", "stage_norms", "gates") and len(parts) > 2:
        depth = 4 if parts[2] in SPLIT_PARTS and len(parts) > 4 else 3
        return ".".join(parts[:depth]) if parts[0] == "fusions" else ".".join(parts[:2])
    if parts[0] == "tmem" and len(parts) > 2:
        return ".".join(parts[:2])
    if parts[0] == "decoder" and len(parts) > 3 and parts[1] == "vlba":
        return ".".join(parts[:3])
    return parts[0]


def fixed_batch(cfg: dict, model) -> dict:
    train = tasks.load_split(cfg["data"], "train")
    encode = build_encoder(build_tokenizer(model.spec.tokenizer), cfg["data"], train)
    dataset = TransformedDataset(train, tasks.make_transform(model, cfg["data"], encode, with_gt=False))
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    return next(iter(loader))


def gradient_norms(model, batch: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Per-group L2 norms of the loss gradient, and the loss terms, in train mode (BN statistics restored)."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model.zero_grad(set_to_none=True)
    terms = model.loss(model(batch), batch)
    terms["loss"].backward()
    squares: dict[str, float] = defaultdict(float)
    for name, param in model.named_parameters():
        if param.grad is not None:
            squares[group_of(name)] += float(param.grad.detach().double().pow(2).sum())
    model.zero_grad(set_to_none=True)
    model.load_state_dict(state)  # the forward moved batch-norm running statistics
    return ({k: math.sqrt(v) for k, v in squares.items()},
            {k: float(v.detach()) for k, v in terms.items()})


def weight_change(initial: dict[str, torch.Tensor], model) -> dict[str, float]:
    moved, size = defaultdict(float), defaultdict(float)
    for name, param in model.named_parameters():
        if param.requires_grad:
            moved[group_of(name)] += float((param.detach() - initial[name]).double().pow(2).sum())
            size[group_of(name)] += float(initial[name].double().pow(2).sum())
    return {k: math.sqrt(moved[k]) / math.sqrt(size[k]) if size[k] else float("nan") for k in moved}


def gate_stats(model, batch: dict) -> dict[str, dict[str, float]]:
    """How open each language gate is on the batch (eval mode): for every LAVT language gate
    (``x * tanh(MLP(x))``), the mean |tanh(MLP(x))| and the RMS of its output relative to the RMS of
    ``x``; for FIANet's OPAB position map (``sigmoid(conv([mean, max]))``), its mean and its std over
    the pixels (0.5 with std 0 = the position words say nothing)."""
    from rrsis_bench.nn.lavt import LanguageGate

    stats: dict[str, dict[str, float]] = {}
    hooks = []

    def gate_hook(name):
        def hook(module, inputs, output):
            x = inputs[0]
            factor = module.gate(x)
            stats[name] = {"mean_abs_gate": float(factor.abs().mean()),
                           "relative_rms": float(output.pow(2).mean().sqrt() / x.pow(2).mean().sqrt().clamp_min(1e-12))}
        return hook

    def spatial_hook(name):
        def hook(module, inputs, output):
            prob = torch.sigmoid(output).flatten(1)
            stats[name] = {"mean": float(prob.mean()), "std_over_pixels": float(prob.std(dim=1).mean())}
        return hook

    for name, module in model.named_modules():
        if isinstance(module, LanguageGate):
            hooks.append(module.register_forward_hook(gate_hook(name)))
        elif name.endswith("object_position.spatial"):
            hooks.append(module.register_forward_hook(spatial_hook(name)))
    try:
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
        model.train()
    return stats


def measure_state(model, batch: dict) -> dict:
    norms, terms = gradient_norms(model, batch)
    out = {"grad_norm": norms, "terms": terms, "gates": gate_stats(model, batch),
           "total_grad_norm": math.sqrt(sum(v * v for v in norms.values()))}
    weight = float(getattr(model, "contrastive_weight", 0.0))
    if weight > 0:
        model.contrastive_weight = 0.0
        try:
            mask_norms, _ = gradient_norms(model, batch)
        finally:
            model.contrastive_weight = weight
        out["mask_grad_norm"] = mask_norms
        out["mask_total_grad_norm"] = math.sqrt(sum(v * v for v in mask_norms.values()))
    return out


def measure(run_dir: Path) -> dict:
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "checkpoints" / tasks.CONFIG_FILE), resolve=True)
    record = json.loads((run_dir / "record.json").read_text())
    seed_everything(int(config["seed"]), True)
    tasks.build_strategy(config.get("strategy"))  # the run builds its strategy first: same RNG draws
    model = tasks.build_method(config["method"])
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    batch = fixed_batch(config, model)
    start = measure_state(model, batch)
    ckpt.load_weights(run_dir / "checkpoints" / "last", model, "cpu")
    end = measure_state(model, batch)
    return {"run": str(run_dir), "run_id": record.get("run_id"), "method": config["method"]["name"],
            "overrides": (record.get("setting") or {}).get("overrides"), "seed": config["seed"],
            "code": record.get("code", {}).get("git_sha"), "batch": BATCH,
            "step0": start, "end": end, "weight_change": weight_change(initial, model)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="append one JSON object per run to this file")
    args = parser.parse_args()
    for run_dir in args.runs:
        result = measure(run_dir)
        line = json.dumps(result, sort_keys=True)
        print(line)
        if args.json:
            with args.json.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
