"""The authors' weights in our models: their state-dict keys mapped onto ours.

The authors (github.com/takerum/meta_sequential_prediction) save `model.state_dict()` of
their module tree. Its names differ from ours, so this module maps every key:

  authors                                         ours
  enc.phi.0                  first conv           encoder.stem
  enc.phi.{1..n}             residual blocks      encoder.blocks.{0..n-1}
  enc.phi.{n+1}              GroupNorm            encoder.norm        (n+2 is a ReLU)
  enc.linear                                      encoder.linear
  dec.linear                                      decoder.linear
  dec.net.{0..n-1}           residual blocks      decoder.blocks.{0..n-1}
  dec.net.{n}                GroupNorm            decoder.norm        (n+1 is a ReLU)
  dec.net.{n+2}              last conv            decoder.head
  M_net.*                    (neuralM)            M_net.*  (laid out as the encoder)
  ar.0 / ar.1 / ar.2 / ar.4 / ar.7  (Conv1d1x1Encoder; 3, 5 rearrange, 6 ReLU)
                                                  predictor.stem / blocks.0 / blocks.1 / norm / head
  projhead.0 / projhead.2    (simclr)             head.0 / head.2
  change_of_basis (a, a)                          set_change_of_basis(U)
inside a block: c1, c2 (weight standardized with torch parametrize, so the weight key is
`c1.parametrizations.weight.original`), b1, b2 (GroupNorm), c_sc (1x1 shortcut), pe.emb
(decoder positional embedding, (64, h, w)) -> conv1, conv2, norm1, norm2, shortcut, pos_emb.
In the 1x1-Conv1d blocks of `ar`, c1/c2/c_sc/norm1/norm2 -> fc1/fc2/shortcut/norm1/norm2;
Conv1d weights (out, in, 1) become Linear weights (out, in).

The snapshot's run (its config, the checkpoint we write, the CLI) is msp.authors_checkpoint.
"""

import re

import torch


class AuthorsCheckpointError(ValueError):
    """A snapshot that does not fit the requested model; the message lists every problem."""


# -- the key map --
def _block_pairs(src: str, dst: str, with_pos_emb: bool) -> list[tuple[str, str]]:
    pairs = [
        (f"{src}.c1.parametrizations.weight.original", f"{dst}.conv1.weight"), (f"{src}.c1.bias", f"{dst}.conv1.bias"),
        (f"{src}.c2.parametrizations.weight.original", f"{dst}.conv2.weight"), (f"{src}.c2.bias", f"{dst}.conv2.bias"),
        (f"{src}.b1.weight", f"{dst}.norm1.weight"), (f"{src}.b1.bias", f"{dst}.norm1.bias"),
        (f"{src}.b2.weight", f"{dst}.norm2.weight"), (f"{src}.b2.bias", f"{dst}.norm2.bias"),
        (f"{src}.c_sc.weight", f"{dst}.shortcut.weight"), (f"{src}.c_sc.bias", f"{dst}.shortcut.bias"),
    ]
    return pairs + ([(f"{src}.pe.emb", f"{dst}.pos_emb")] if with_pos_emb else [])


def _wb(src: str, dst: str) -> list[tuple[str, str]]:
    return [(f"{src}.weight", f"{dst}.weight"), (f"{src}.bias", f"{dst}.bias")]


def _encoder_pairs(src: str, dst: str, encoder) -> list[tuple[str, str]]:
    """ResNetEncoder: phi = [conv, n blocks, GroupNorm, ReLU], then linear."""
    n = len(encoder.blocks)
    pairs = _wb(f"{src}.phi.0", f"{dst}.stem")
    for i in range(n):
        pairs += _block_pairs(f"{src}.phi.{i + 1}", f"{dst}.blocks.{i}", with_pos_emb=False)
    pairs += _wb(f"{src}.phi.{n + 1}", f"{dst}.norm")
    if encoder.linear is not None:
        pairs += _wb(f"{src}.linear", f"{dst}.linear")
    return pairs


def _decoder_pairs(decoder) -> list[tuple[str, str]]:
    """ResNetDecoder: linear, then net = [n blocks, GroupNorm, ReLU, conv]."""
    n = len(decoder.blocks)
    pairs = _wb("dec.linear", "decoder.linear")
    for i in range(n):
        pairs += _block_pairs(f"dec.net.{i}", f"decoder.blocks.{i}", with_pos_emb=True)
    return pairs + _wb(f"dec.net.{n}", "decoder.norm") + _wb(f"dec.net.{n + 2}", "decoder.head")


def _ar_pairs() -> list[tuple[str, str]]:
    """Conv1d1x1Encoder: [conv, block, block, rearrange, LayerNorm, rearrange, ReLU, conv]."""
    pairs = _wb("ar.0", "predictor.stem")
    for i in range(2):
        src, dst = f"ar.{i + 1}", f"predictor.blocks.{i}"
        pairs += [
            (f"{src}.c1.parametrizations.weight.original", f"{dst}.fc1.weight"), (f"{src}.c1.bias", f"{dst}.fc1.bias"),
            (f"{src}.c2.parametrizations.weight.original", f"{dst}.fc2.weight"), (f"{src}.c2.bias", f"{dst}.fc2.bias"),
            *_wb(f"{src}.norm1", f"{dst}.norm1"), *_wb(f"{src}.norm2", f"{dst}.norm2"),
            *_wb(f"{src}.c_sc", f"{dst}.shortcut"),
        ]
    return pairs + _wb("ar.4", "predictor.norm") + _wb("ar.7", "predictor.head")


def authors_key_map(model) -> dict[str, str]:
    """Authors' state-dict key -> our state-dict key, for every parameter of `model`."""
    pairs = _encoder_pairs("enc", "encoder", model.encoder)
    if getattr(model, "has_decoder", False):
        pairs += _decoder_pairs(model.decoder)
    if hasattr(model, "M_net"):
        pairs += _encoder_pairs("M_net", "M_net", model.M_net)
    if hasattr(model, "predictor"):
        pairs += _ar_pairs()
    if model.name == "simclr":
        pairs += _wb("projhead.0", "head.0") + _wb("projhead.2", "head.2")
    mapping = dict(pairs)
    unmapped = sorted(set(model.state_dict()) - set(mapping.values()) - {"change_of_basis"})
    if unmapped:  # our model grew a parameter this file does not know about
        raise RuntimeError(f"msp.authors_weights has no authors' name for our parameter(s) {unmapped}: update it")
    return mapping


# -- hints: which setting probably differs --
K, NB, MA, CH, SIZE = "k", "n_blocks", "dim_m*dim_a", "image channels (--dataset)", "image size (--dataset)"
_SHAPE_HINTS = [  # (pattern on OUR key, {axis: settings that set that axis}); first match wins
    (r"^M_net\.stem\.weight$", {0: (K,), 1: ("T_cond", CH)}),
    (r"^encoder\.stem\.weight$", {0: (K,), 1: (CH,)}),
    (r"pos_emb$", {1: ("bottom_width", SIZE), 2: ("bottom_width", SIZE)}),
    (r"blocks\.\d+\.(conv1|conv2)\.weight$", {0: (K,), 1: (K,), 2: ("kernel_size",), 3: ("kernel_size",)}),
    (r"^M_net\.linear\.weight$", {0: ("dim_a",), 1: (K, NB, SIZE)}),
    (r"^M_net\.linear\.bias$", {0: ("dim_a",)}),
    (r"^encoder\.linear\.weight$", {0: (MA,), 1: (K, NB, SIZE)}),
    (r"^encoder\.linear\.bias$", {0: (MA,)}),
    (r"^decoder\.linear\.weight$", {0: (K, NB), 1: (MA,)}),
    (r"^decoder\.linear\.bias$", {0: (K, NB)}),
    (r"^decoder\.head\.(weight|bias)$", {0: (CH,), 1: (K,)}),
    (r"^predictor\.stem\.weight$", {0: ("hidden",), 1: ("T_cond", "dim_a")}),
    (r"^predictor\.head\.(weight|bias)$", {0: ("dim_a",), 1: ("hidden",)}),
    (r"^predictor\.", {0: ("hidden",), 1: ("hidden",)}),
    (r"^head\.0\.weight$", {0: ("dim_mlp",), 1: (K, NB, SIZE)}),
    (r"^head\.0\.bias$", {0: ("dim_mlp",)}),
    (r"^head\.2\.weight$", {0: ("dim_head",), 1: ("dim_mlp",)}),
    (r"^head\.2\.bias$", {0: ("dim_head",)}),
    (r"", {}),  # any other block or norm parameter: the widths
]


def _shape_causes(our_key: str, expected: tuple, found: tuple) -> tuple[str, ...]:
    """The settings that, when they differ, change this parameter's shape that way."""
    for pattern, axes in _SHAPE_HINTS:
        if re.search(pattern, our_key):
            break
    if len(expected) != len(found):
        return ("--model (a different layer type)",)
    causes = [c for i, (e, f) in enumerate(zip(expected, found)) if e != f for c in axes.get(i, (K,))]
    return tuple(dict.fromkeys(causes))


def describe_snapshot(state_dict: dict) -> str:
    """What the snapshot's own shapes say about the settings it was trained with."""
    facts = []
    stem = state_dict.get("enc.phi.0.weight")
    if stem is not None:
        facts.append(f"k = {stem.shape[0] / 32:g} (base width {stem.shape[0]}), {stem.shape[1]} image channel(s)")
    n_blocks = len({m.group(1) for key in state_dict if (m := re.match(r"enc\.phi\.(\d+)\.c1\.", key))})
    if n_blocks:
        facts.append(f"n_blocks = {n_blocks}")
    if "enc.linear.weight" in state_dict:
        facts.append(f"dim_m * dim_a = {state_dict['enc.linear.weight'].shape[0]}")
    if "M_net.linear.weight" in state_dict:
        facts.append(f"dim_a = {round(state_dict['M_net.linear.weight'].shape[0] ** 0.5)}")
    if "change_of_basis" in state_dict:
        facts.append(f"dim_a = {state_dict['change_of_basis'].shape[0]}")
    if "ar.7.weight" in state_dict:
        facts.append(f"ar output channels = {state_dict['ar.7.weight'].shape[0]} (dim_a for neural_trans), "
                     f"ar input channels = {state_dict['ar.0.weight'].shape[1]} (T_cond * dim_a)")
    if "dec.net.0.pe.emb" in state_dict:
        facts.append(f"bottom_width = {state_dict['dec.net.0.pe.emb'].shape[1] // 2}")
    return "; ".join(facts) if facts else "no recognizable authors' keys"


def guess_authors_model(state_dict: dict) -> str:
    """Which of our model names fit the snapshot's top-level modules."""
    tops = {key.split(".")[0] for key in state_dict}
    if "projhead" in tops:
        return "simclr"
    if "M_net" in tops:
        return "neuralM or neuralM_latentpred"
    if "ar" in tops:
        return "neural_trans" if "dec" in tops else "cpc"
    return "lstsq, lstsq_multi, lstsq_rec or holstsq" if "dec" in tops else "unknown"


# -- conversion --
def unwrap_snapshot(obj) -> dict:
    """The model state dict inside a snapshot file (plain state dict, or a ppe manager snapshot)."""
    if isinstance(obj, dict) and isinstance(obj.get("models"), dict) and "main" in obj["models"]:
        obj = obj["models"]["main"]  # pytorch-pfn-extras manager snapshot
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise AuthorsCheckpointError(
            "the snapshot is not a state dict of tensors: pass a snapshot_model_iter_N file of the authors' code")
    return {key.removeprefix("module."): value for key, value in obj.items()}  # DataParallel prefix


def _by_module(keys: list[str]) -> dict[str, list[str]]:
    groups = {}
    for key in keys:
        groups.setdefault(key.split(".")[0], []).append(key)
    return groups


def convert_authors_state_dict(model, state_dict: dict) -> tuple[dict, torch.Tensor | None]:
    """Authors' state dict -> (our state dict for `model`, change of basis U (a, a) or None).

    Raises AuthorsCheckpointError naming the shape mismatches (key, expected and found
    shape, the setting that probably differs) and the missing and unexpected keys.
    """
    mapping = authors_key_map(model)
    ours = model.state_dict()
    U = state_dict.get("change_of_basis")
    missing, mismatches, causes, converted = [], [], {}, {}
    for src, dst in mapping.items():
        if src not in state_dict:
            missing.append(src)
            continue
        value = state_dict[src]
        if ours[dst].dim() == 2 and value.dim() == 3 and value.shape[-1] == 1:
            value = value[..., 0]  # 1x1 Conv1d (out, in, 1) -> Linear (out, in)
        expected, found = tuple(ours[dst].shape), tuple(value.shape)
        if found != expected:
            found_causes = _shape_causes(dst, expected, found)
            for cause in found_causes:
                causes[cause] = causes.get(cause, 0) + 1
            mismatches.append(f"{src!r} (our {dst}): expected {expected}, found {found} "
                              f"-> probably {' or '.join(found_causes)} differs")
            continue
        converted[dst] = value.detach().to(ours[dst].dtype).clone()
    if U is not None and tuple(U.shape) != (model.dim_a, model.dim_a):
        mismatches.append(f"'change_of_basis': expected {(model.dim_a, model.dim_a)}, found {tuple(U.shape)} "
                          "-> probably dim_a differs")
        causes["dim_a"] = causes.get("dim_a", 0) + 1
    unexpected = sorted(set(state_dict) - set(mapping) - {"change_of_basis"})
    if missing or mismatches or unexpected:
        shown = 6
        lines = [f"shape mismatch at {m}" for m in mismatches[:shown]]
        if len(mismatches) > shown:
            lines.append(f"... and {len(mismatches) - shown} more shape mismatch(es)")
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            for top, group in _by_module(keys).items():
                lines.append(f"{len(group)} {label} key(s) under {top!r}, e.g. {group[0]!r}")
        notes = []
        if causes:
            ranked = sorted(causes, key=causes.get, reverse=True)
            notes.append("settings that probably differ: " + "; ".join(ranked))
        if missing or unexpected:
            blocks = sum(1 for key in state_dict if re.fullmatch(r"enc\.phi\.\d+\.c1\.bias", key))
            notes.append(f"the snapshot's modules fit model {guess_authors_model(state_dict)} "
                         f"with n_blocks = {blocks}; "
                         f"ours is {model.name} with n_blocks = {len(model.encoder.blocks)}")
        notes.append(f"the snapshot's shapes say: {describe_snapshot(state_dict)}")
        raise AuthorsCheckpointError(
            f"the authors' snapshot does not fit our {model.name} model:\n  - " + "\n  - ".join(lines) + "\n"
            + "\n".join(notes)
            + "\nfix --model or the settings (--k, --dim-m, --dim-a, --n-blocks, --bottom-width, --T-cond), "
            "or pass the run's config with --authors-config")
    return converted, None if U is None else U.detach().float().clone()


def load_authors_state_dict(model, state_dict: dict):
    """Fill `model` (in place) with the authors' weights; sets the change of basis if present."""
    converted, U = convert_authors_state_dict(model, unwrap_snapshot(state_dict))
    model.load_state_dict(converted, strict=True)
    model.set_change_of_basis(U)
    return model


@torch.no_grad()
def fold_change_of_basis(model):
    """Fold U into the encoder's and decoder's linear layers, then drop it: same outputs.

    encode: H U with H = reshape(W x + b) -> W'[m, b', :] = sum_a W[m, a, :] U[a, b'].
    decode: linear(H U^-1) -> W'_dec[o, m, b'] = sum_a W_dec[o, m, a] U^-1[b', a].
    """
    U = model.change_of_basis
    if U is None:
        return model
    if not (model.has_decoder and model.encoder.linear is not None) or hasattr(model, "M_net"):
        raise ValueError(f"cannot fold a change of basis into model {model.name}")
    m, a = model.dim_m, model.dim_a
    U64 = U.double()
    enc, dec = model.encoder.linear, model.decoder.linear
    W = enc.weight.double().view(m, a, -1)  # (m, a, features)
    enc.weight.copy_(torch.einsum("maf,ab->mbf", W, U64).reshape(m * a, -1))
    enc.bias.copy_((enc.bias.double().view(m, a) @ U64).reshape(-1))
    Wd = dec.weight.double().view(dec.weight.shape[0], m, a)  # (out, m, a)
    dec.weight.copy_((Wd @ torch.linalg.inv(U64).T).reshape(dec.weight.shape[0], m * a))
    model.set_change_of_basis(None)
    return model
