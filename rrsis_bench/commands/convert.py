"""`rrsis-bench convert`: import an official LAVT/FIANet checkpoint into a run folder that `eval` scores."""

from __future__ import annotations

import os
from pathlib import Path

from rrsis_bench.config import compose_run_config
from rrsis_bench.data.manifest import file_sha256


class ConvertError(ValueError):
    """The checkpoint cannot be imported into the chosen method (printed as one line by the CLI)."""


def convert_official(method: str, src: str | os.PathLike, out: str | os.PathLike, *, data: str = "rrsisd",
                     data_root: str = "", strict: bool = True, trust: bool = False, **options) -> Path:
    """Import the official checkpoint ``src`` into ``method`` and write the folder ``out``: the weights
    in ``out/checkpoints/best`` and the run config of ``method=METHOD data=DATA`` (with its recipe and
    ``options``) in ``out/checkpoints/config.yaml``. Returns the checkpoint folder.

    ``src`` is read with ``torch.load(weights_only=True)``; a file that needs full unpickling is refused
    unless ``trust=True`` (unpickling can run code planted in the file).
    """
    from omegaconf import OmegaConf

    from rrsis_bench.engine import checkpoint as ckpt
    from rrsis_bench.engine.trainer import BEST
    from rrsis_bench.io import atomic_write_text
    from rrsis_bench.nn.official_lavt import load_official_checkpoint, official_rules
    from rrsis_bench.registry import create_method
    from rrsis_bench.tasks import CONFIG_FILE

    src = Path(src).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"No official checkpoint at {src}; pass src= the .pth file of the official code.")
    config = compose_run_config([f"method={method}", f"data={data}"])
    if data_root:
        config["data"]["root"] = data_root
    method_cfg = {k: v for k, v in config["method"].items() if k != "name"}
    method_cfg.update({"pretrained": False, "text_pretrained": False, **options})
    try:
        model = create_method(method, **method_cfg)
    except TypeError as exc:
        raise ConvertError(f"method {method} does not take these options ({exc}); see its factory.") from exc
    try:
        rules = official_rules(model)
    except TypeError as exc:  # no official layout for this method
        raise ConvertError(str(exc)) from exc
    result = load_official_checkpoint(model, src, strict=strict, rules=rules, trust=trust)
    folder = Path(out).expanduser()
    meta = {"source": "official checkpoint", "file": str(src.resolve()), "sha256": file_sha256(src),
            "method": method, "strict": strict, "missing": result.missing, "unexpected": result.unexpected}
    weights = ckpt.save_checkpoint(folder / "checkpoints" / BEST, model, meta=meta)
    config.update(task="convert", method={"name": method, **method_cfg},
                  source={"file": meta["file"], "sha256": meta["sha256"]})
    atomic_write_text(folder / "checkpoints" / CONFIG_FILE, OmegaConf.to_yaml(config))
    return weights
