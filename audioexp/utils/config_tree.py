"""The composed config as a tree, printed when a run starts and saved beside its outputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

# the parts a reader looks for first; every other node follows in config order
ORDER = ("data", "features", "model", "embedder", "probe", "frontends", "backend", "gmm", "trainer", "callbacks",
         "logger", "paths")


def config_tree(cfg: DictConfig, order: Sequence[str] = ORDER, resolve: bool = True):
    """A :class:`rich.tree.Tree` of ``cfg`` (Hydra's own node left out).

    Scalars at the top level (task, name, seed, monitor, ...) form the first branch, then
    one branch per node, as YAML. ``resolve=True`` resolves every interpolation, so a
    config that cannot be resolved fails here, before any data is read.
    """
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in cfg if k != "hydra"]
    scalars = {k: cfg[k] for k in keys if not isinstance(cfg[k], (DictConfig, ListConfig))}
    lists = [k for k in keys if isinstance(cfg[k], ListConfig)]
    nodes = [k for k in order if k in keys and isinstance(cfg[k], DictConfig)]
    nodes += [k for k in keys if isinstance(cfg[k], DictConfig) and k not in nodes]
    run = OmegaConf.create({**scalars, **{k: cfg[k] for k in lists}})
    tree.add("run", style="bold").add(Syntax(OmegaConf.to_yaml(run, resolve=resolve), "yaml"))
    for key in nodes:
        tree.add(key, style="bold").add(Syntax(OmegaConf.to_yaml(cfg[key], resolve=resolve), "yaml"))
    return tree


def print_config_tree(cfg: DictConfig, save_to: str | Path | None = None, resolve: bool = True) -> None:
    """Print the config tree to the console and, plain, to ``save_to`` (atomically)."""
    import io

    import rich
    from rich.console import Console

    from audioexp.utils.files import atomic_write_text

    tree = config_tree(cfg, resolve=resolve)
    rich.print(tree)
    if save_to is not None:
        buffer = io.StringIO()
        Console(file=buffer, width=120, color_system=None).print(tree)
        atomic_write_text(Path(save_to), "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n")
