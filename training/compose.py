"""Compose `conf/` with Hydra's compose API, turning every configuration mistake into one line.

Both entry points (`python -m training`, `python -m sweeps`) compose the same root config; the
run directory is `hydra.run.dir`, and its `.hydra/config.yaml` records what ran, as with `@hydra.main`.
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from training.config import ConfigError, check_dir, make_dir, not_a_key
from triage.names import CONF_DIR, mask  # where conf/ lies and how passwords are masked, shared with triage
if not OmegaConf.has_resolver("now"):
    OmegaConf.register_new_resolver("now", lambda fmt: datetime.now().strftime(fmt), use_cache=True)


def compose(overrides: list[str], config_name: str = "config") -> DictConfig:
    """The composed config (with its `hydra` node), resolved; ConfigError on any mistake."""
    for flag in (o for o in overrides if o.startswith("-")):
        if flag in ("-m", "--multirun"):
            raise ConfigError(f"{flag}: Hydra's multirun is not supported; run the command once per choice "
                              "(a sweep searches its space itself: python -m sweeps run +sweep=NAME)")
        raise ConfigError(f"{flag}: not an option; the arguments are Hydra overrides such as train.epochs=5 (see --help)")
    try:
        cfg = _hydra_compose(config_name, overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_unknown_key(e, overrides, config_name) or _group_choice(e, overrides) or _first_line(e)) from None
    known = {"hydra", "paths", *(d.name for d in CONF_DIR.iterdir() if d.is_dir())}
    if unknown := sorted(set(cfg) - known):  # `+trian.epochs=3` adds a root key nothing reads
        raise ConfigError(not_a_key(str(unknown[0]), "", sorted(known - {"hydra"})))
    if alone := _sweep_alone(cfg):
        raise ConfigError(alone)
    if missing := sorted(OmegaConf.missing_keys(job_config(cfg))):  # `study_name: ???` in a sweep file of one's own
        raise ConfigError(f"{missing[0]} has no value: set it in its config file or on the command line ({missing[0]}=...)")
    return cfg


def check_run_dir(cfg: DictConfig) -> None:
    """ConfigError now, before any long work, where `write_run_dir` could not create the run directory."""
    check_dir(Path(cfg.hydra.run.dir).resolve(), "hydra.run.dir")


def write_run_dir(cfg: DictConfig) -> Path:
    """Create the run directory and record the composed config (without `hydra`) and overrides there, passwords masked."""
    run_dir = Path(cfg.hydra.run.dir).resolve()
    make_dir(run_dir / ".hydra", "hydra.run.dir")
    job = OmegaConf.to_container(job_config(cfg))
    try:
        (run_dir / ".hydra" / "config.yaml").write_text(mask(OmegaConf.to_yaml(job)))
        (run_dir / ".hydra" / "overrides.yaml").write_text(mask(OmegaConf.to_yaml(list(cfg.hydra.overrides.task))))
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {run_dir} (hydra.run.dir): {e.strerror or e}") from None
    return run_dir


def check_command(argv: list[str], prog: str, commands: list[str]) -> None:
    """A ConfigError unless argv (not empty) starts with one of the commands: `python -m sweeps +sweep=lr` forgot it."""
    if argv[0] in commands:
        return
    if "=" in argv[0] or argv[0].startswith(("+", "~")):
        raise ConfigError(f"no command before {argv[0]}: {prog} {commands[0]} {' '.join(argv)}")
    raise ConfigError(f"unknown command {argv[0]!r}: {prog} takes {', '.join(commands)} (see --help)")


def config_flag(args: list[str]) -> tuple[list[str], bool]:
    """Hydra's ``--cfg job`` (or ``-c job``): print the composed config instead of running.
    Returns the overrides without the flag, and whether it was given."""
    for i, arg in enumerate(args):
        if arg in ("--cfg", "-c"):
            if args[i + 1 : i + 2] != ["job"]:
                given = " ".join(args[i : i + 2])
                raise ConfigError(f"{given}: use {arg} job to print the composed config (Hydra's hydra and all are not offered)")
            return args[:i] + args[i + 2 :], True
    return args, False


def config_text(cfg: DictConfig) -> str:
    """The composed job config as YAML, passwords masked (what ``--cfg job`` prints)."""
    return mask(OmegaConf.to_yaml(job_config(cfg)))


def job_config(cfg: DictConfig) -> DictConfig:
    """The config without Hydra's own node."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    assert isinstance(job, DictConfig)
    return job


def _unknown_key(e: Exception, overrides: list[str], config_name: str) -> str | None:
    """`optimizer.lrr=0.1`: the key meant and the keys there (Hydra says only "Could not override"); else None."""
    key = getattr(e.__cause__, "full_key", None)
    if not key or not isinstance(e.__cause__, (ConfigAttributeError, ConfigKeyError)):
        return None
    parent = key.rpartition(".")[0]
    choices = [o for o in overrides  # +sweep=lr, optimizer=adam, and where they are found (hydra.searchpath)
               if ("." not in (k := o.partition("=")[0]) or k.startswith("hydra.")) and k.lstrip("+~") != key]
    try:
        root = _hydra_compose(config_name, choices)
        node = OmegaConf.select(root, parent) if parent else job_config(root)
    except (HydraException, OmegaConfBaseException):
        return None
    if key.startswith("sweep.") and (alone := _sweep_alone(root)):
        return alone
    if not isinstance(node, DictConfig):
        return f"{key} is not a config key: {parent} is a value ({node!r}), not a group" if parent and node is not None else None
    add = [ln.strip()[len("To append to your config use "):] for ln in str(e).splitlines() if "To append" in ln]
    how = f"; under sweep.space new keys are added with +: {add[0]}" if add and key.startswith("sweep.space.") else ""
    return not_a_key(key, parent, [str(k) for k in node]) + how


def _sweep_alone(cfg: DictConfig) -> str | None:
    """A sweep file (of one's own) that does not build on the settings all sweeps share, conf/sweep/_common.yaml
    (its `sweep.n_trials=5` would read as no config key, its storage as missing); else None."""
    if "sweep" not in cfg or not isinstance(cfg.sweep, DictConfig):
        return None
    if missing := [k for k in OmegaConf.load(CONF_DIR / "sweep" / "_common.yaml") if k not in cfg.sweep.keys()]:
        name = cfg.hydra.runtime.choices.get("sweep")
        return (f"sweep/{name}.yaml lacks the settings every sweep shares ({', '.join(map(str, missing))}): "
                "start it with defaults: [_common, _self_], as conf/sweep/lr.yaml does")
    return None


def _hydra_compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Hydra's compose of conf/ (and of the folders in `hydra.searchpath`, where users keep sweeps of their own).
    A search folder that does not exist, which Hydra only warns about, is a ConfigError."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
                cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
        except (HydraException, OmegaConfBaseException):
            _no_search_dir(seen)  # then the sweep file it should hold reads as unknown: name the cause
            raise
    _no_search_dir(seen)
    for w in seen:  # Hydra's other warnings (a sweep file without _self_, say) as they were
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return cfg


def _no_search_dir(seen: list[warnings.WarningMessage]) -> None:
    for w in seen:
        if m := re.search(r"provider=hydra.searchpath in \S+, path=(.+) is not available", str(w.message)):
            raise ConfigError(f"hydra.searchpath: {m[1]} is not a folder; name the folder that holds your own "
                              "config groups (sweep/NAME.yaml): file:///absolute/path, or file://path from the current folder")


def _group_choice(e: Exception, overrides: list[str]) -> str | None:
    """A group chosen without its + (`sweep=lr`) or twice (`+sweep=lr +sweep=clip`), which Hydra answers with
    its defaults-list terms ("No match in the defaults list", "use 'override sweep: clip'"); else None."""
    if m := re.match(r"Could not override '(\w+)'\. No match in the defaults list", str(e)):
        given = next((o for o in overrides if o.partition("=")[0] == m[1]), m[1])
        if (CONF_DIR / m[1]).is_dir():
            return f"{given}: the {m[1]} group is added, not overridden: +{given}"
    if m := re.match(r"Multiple values for (\w+)\.", str(e)):
        given = [o for o in overrides if o.partition("=")[0].lstrip("+~") == m[1]]
        once = "one sweep per command" if m[1] == "sweep" else f"choose one {m[1]}"
        return f"{' and '.join(given)}: {m[1]} is chosen more than once; {once}"
    return None


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[0] if lines else type(e).__name__
    if msg.startswith("Ambiguous value"):  # Hydra's own advice (add --multirun) does not apply here
        msg += ": a list is key=[a,b], a string with commas is quoted key='a,b'; to try several values, run once per value"
    key = getattr(e, "full_key", None)
    if key and key not in msg:
        msg = f"{key}: {msg}"
    options = [o for o in getattr(e, "options", None) or [] if not o.startswith("_")]  # a missing group option
    return f"{msg}; choose one of: {', '.join(options)}" if options else msg
