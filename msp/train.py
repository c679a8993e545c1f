"""One training run: `msp train --config RUN.yaml --out DIR` (resumes automatically).

DIR/checkpoints/step_XXXXXXXX.pt  periodic checkpoints (plain dicts), newest resumed
DIR/metrics.jsonl                 one JSON line every log_every steps
DIR/model.pt                      the final checkpoint, written last: the completion marker
"""

import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from msp import io, registry
from msp.checkpoint import (checkpoint_paths, load_latest_checkpoint, periodic_path, prune_checkpoints,
                            save_checkpoint)
from msp.config import EXECUTION_KEYS, apply_execution, load_run_config, normalize_run_config
from msp.device import DEVICE_HELP, describe_machine, machine_facts, resolve_device
from msp.dynamics import singular_sequences, watch_singular
from msp.models import build_model
from msp.performance import apply_speed_settings
from msp.runlock import run_lock


class NonFiniteLossError(RuntimeError):
    pass


def build_training_sequences(cfg: dict, device: torch.device):
    from msp.data import build_sequences, dataset_family
    from msp.data.prepare import verify_prepared

    d, m = cfg["dataset"], cfg["model"]
    if registry.dataset(d["name"]).prepared:
        verify_prepared(dataset_family(d["name"]), d["root"], d["source"])  # changed in place?
    return build_sequences(
        d["name"], root=d["root"], source=d["source"], split="train", T=m["T_cond"] + m["T_pred"],
        device=device, seed=cfg["train"]["seed"], **d["options"],
    )


# Keys that may change between a checkpoint and its resumption without changing the
# experiment: how long and how often, and where and how fast it runs (e.g. resume on a GPU).
RESUME_FREE_KEYS = {"iterations", *EXECUTION_KEYS["train"]}


def check_resumable(saved: dict, current: dict, out_dir: Path):
    """Refuse to resume checkpoints written with another configuration (a silently mixed run)."""
    diff = []
    for section in ("dataset", "model", "train"):
        for key in sorted(set(saved.get(section, {})) | set(current[section])):
            if section == "train" and key in RESUME_FREE_KEYS or key == "image_shape" \
                    or key in EXECUTION_KEYS.get(section, ()):  # e.g. dataset.root: the data moved
                continue
            if saved.get(section, {}).get(key) != current[section].get(key):
                diff.append(f"{section}.{key}: {saved.get(section, {}).get(key)!r} -> {current[section].get(key)!r}")
    if diff:
        raise ValueError(f"{out_dir}/checkpoints were written with a different config ({'; '.join(diff)}); "
                         f"restore the old config, or delete {out_dir}/checkpoints to start over")


def _truncate_metrics(path: Path, step: int):
    """Drop log lines written after the checkpoint we resume from (they will be redone).

    A torn last line (the disk filled or the process died mid-append) is dropped with a
    message; a broken line before the last one is not ours to guess about: an error names it.
    """
    if not path.exists():
        return
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # tail: text after the last newline ('' if none)
    rows = []
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            rows.append((json.loads(line)["step"], line))
        except (ValueError, KeyError, TypeError):
            if number == len(complete) and not tail:  # the last line is the torn one
                tail = line
                break
            raise ValueError(f"{path}: line {number} is not a metrics record ({line[:60]!r}); "
                             "fix or delete that line (or the file) and rerun") from None
    if tail.strip():
        print(f"{path}: dropping a torn last line ({len(tail)} characters, written when the disk "
              "filled or the process died); the steps it covered are redone", file=sys.stderr)
    io.write_text(path, "".join(line + "\n" for s, line in rows if s <= step))


def train(cfg: dict, out_dir, sequences=None, progress: bool | None = None) -> Path:
    """Train one run to cfg.train.iterations; returns the path of DIR/model.pt.

    `sequences`: any object with sample(batch_size) -> (N, T, C, H, W), image_shape,
    state_dict() and load_state_dict(); by default built from cfg.dataset.
    """
    cfg = normalize_run_config(cfg)
    out_dir = Path(out_dir)
    final_path = out_dir / "model.pt"
    if final_path.exists():
        print(f"{final_path} exists: training is complete, nothing to do", file=sys.stderr)
        return final_path
    with run_lock(out_dir):  # one writer per run directory
        if final_path.exists():  # finished by the lock's previous owner
            print(f"{final_path} exists: training is complete, nothing to do", file=sys.stderr)
            return final_path
        return _train(cfg, out_dir, sequences, progress)


def _train(cfg: dict, out_dir: Path, sequences, progress) -> Path:
    tc = cfg["train"]
    final_path = out_dir / "model.pt"
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    device = resolve_device(tc["device"])
    torch.manual_seed(tc["seed"])
    if sequences is None:
        sequences = build_training_sequences(cfg, device)
    cfg["model"]["image_shape"] = list(sequences.image_shape)
    model = build_model(cfg["model"], sequences.image_shape).to(device)
    autocast, adam_kwargs = apply_speed_settings(model, tc, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc["lr"], **adam_kwargs)

    step = 0
    verified = set()  # checkpoints known to load: only these count for retention
    ckpt, ckpt_path = load_latest_checkpoint(out_dir, map_location=device)
    if ckpt is not None:
        check_resumable(ckpt["config"], cfg, out_dir)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        sequences.load_state_dict(ckpt["data"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if torch.cuda.is_available() and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        step = ckpt["step"]
        verified.add(ckpt_path)
        print(f"resuming {out_dir} from {ckpt_path.name} (step {step})", file=sys.stderr)
    # one entry per training session: a run resumed elsewhere was computed on several machines
    machines = [*(ckpt or {}).get("machines", []), {"from_step": step, **machine_facts(device)}]
    print(f"training on {describe_machine(machines[-1])}", file=sys.stderr)
    io.write_yaml(out_dir / "config.yaml", cfg)
    metrics_path = out_dir / "metrics.jsonl"
    _truncate_metrics(metrics_path, step)

    def make_checkpoint():
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "config": cfg,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "data": sequences.state_dict(),
            "machines": machines,
            "log_interval": {"sums": dict(interval["sums"]), "n": interval["n"]},  # a mid-interval resume logs the same
        }

    def save_periodic():
        path = periodic_path(out_dir, step)
        save_checkpoint(make_checkpoint(), path)
        verified.add(path)
        prune_checkpoints(out_dir, tc["keep_checkpoints"], verified)

    # SIGTERM (SLURM time limit, preemption) and SIGINT (Ctrl-C): checkpoint, then exit. A signal
    # the parent set to be ignored (SIGINT of a `nohup`/`&` job) stays ignored.
    terminated = []
    previous_handlers = {sig: signal.signal(sig, lambda signum, _: terminated.append(signum))
                         for sig in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(sig) is not signal.SIG_IGN}
    bar = tqdm(total=tc["iterations"], initial=step, disable=None if progress is None else not progress,
               desc=f"{cfg['dataset']['name']}/{cfg['model']['name']}", dynamic_ncols=True)
    interval = {"sums": {}, "n": 0}  # metric sums since the last log line, kept on the device
    if ckpt is not None and "log_interval" in ckpt:
        interval = ckpt["log_interval"]
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    # the first step with a singular least-squares system, and which sequences of its batch
    first_singular = torch.full((), -1, device=device, dtype=torch.long)
    singular_flags = None
    singular_reported = []
    t_start = time.perf_counter()

    def check_finite():
        bad, sing = torch.stack([first_bad, first_singular]).tolist()  # the only host sync: once per log interval
        singular = (f"singular least-squares system at step {sing} in sequences "
                    f"{singular_sequences(singular_flags)} of its batch" if sing >= 0 else "")
        if bad >= 0:
            last = checkpoint_paths(out_dir)
            raise NonFiniteLossError(
                f"non-finite loss at step {bad} of {out_dir}{'; first ' + singular if singular else ''}; "
                f"last good checkpoint: {last[-1] if last else 'none'} (kept intact). "
                "Lower train.lr or check the data.")
        if singular and not singular_reported:
            singular_reported.append(True)
            warnings.warn(f"{out_dir}: {singular}; its transition is not a least-squares solution")

    try:
        model.train()
        while step < tc["iterations"]:
            if terminated:
                check_finite()
                save_periodic()
                name = signal.Signals(terminated[0]).name
                print(f"{name}: checkpoint written at step {step}; rerun to resume", file=sys.stderr)
                raise SystemExit(128 + terminated[0])  # 143 for SIGTERM, 130 for SIGINT
            lr = tc["lr"] if step < tc["lr_decay_iter"] else tc["lr"] / 3
            for group in optimizer.param_groups:
                group["lr"] = lr
            log_now = (step + 1) % tc["log_every"] == 0 or step + 1 == tc["iterations"]
            xs = sequences.sample(tc["batch_size"])
            with autocast(), watch_singular() as singular:
                loss, metrics = model.loss(xs, reconst=step < tc["reconst_iter"], diagnostics=log_now)
            if singular.flags is not None:  # recorded on the device: no sync here
                first = (first_singular < 0) & singular.flags.any()
                singular_flags = singular.flags if singular_flags is None else torch.where(first, singular.flags, singular_flags)
                first_singular = torch.where(first, step, first_singular)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step, first_bad)
            for key, value in metrics.items():
                if key not in ("loss_bd", "loss_orth"):
                    interval["sums"][key] = interval["sums"].get(key, 0) + value.float()
            interval["n"] += 1
            step += 1
            bar.update(1)
            if log_now:
                check_finite()
                row = {"step": step, "lr": lr, "seconds": round(time.perf_counter() - t_start, 3)}
                row.update({k: float(v) / interval["n"] for k, v in interval["sums"].items()})
                row.update({k: float(metrics[k]) for k in ("loss_bd", "loss_orth") if k in metrics})
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                bar.set_postfix(loss=f"{row['loss']:.4g}")
                interval = {"sums": {}, "n": 0}
            if step % tc["checkpoint_every"] == 0 and step < tc["iterations"]:
                check_finite()
                save_periodic()
        check_finite()
    finally:
        bar.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    final = make_checkpoint()
    final["final"] = True
    save_checkpoint(final, final_path)
    keep_final_weights(final_path, periodic_path(out_dir, step))
    return final_path


def keep_final_weights(final_path: Path, checkpoint: Path) -> None:
    """Also list the final checkpoint among the periodic ones (a hard link: no extra disk), so
    that if model.pt is deleted (by hand, or by a scheduler that reruns the job) a rerun
    resumes at the last step and rewrites the same model.pt instead of training again."""
    if checkpoint.exists():
        return
    try:
        os.link(final_path, checkpoint)
    except OSError:  # a file system without hard links: the periodic checkpoints remain
        pass


def add_arguments(parser):
    parser.add_argument("--config", required=True, help="run config YAML (sections dataset, model, train)")
    parser.add_argument("--out", required=True, help="run directory: checkpoints, metrics.jsonl, model.pt")
    parser.add_argument("--device", help=f"override train.device: {DEVICE_HELP}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="an execution detail (dataset.root, train.log_every, train.device, ...), "
                             "never part of the experiment; repeatable")


def main(args):
    cfg = load_run_config(args.config)
    if args.set:
        cfg = normalize_run_config(apply_execution(cfg, args.set))
    if args.device:
        cfg["train"]["device"] = args.device
    try:
        path = train(cfg, args.out, progress=False if args.no_progress else None)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    print(path)
    return 0
