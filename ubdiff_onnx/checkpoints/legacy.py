"""Import checkpoints written by the original UB-Diff code and by the refactor.

The key mapping is explicit: an ordered table of (source pattern → our name) rules per layout.
Every source tensor ends up *used*, a verified *alias* of a used tensor, *derived* (schedule
buffers, recomputed from the config and checked), or *skipped* with a reason; every tensor of our
model is either filled or reported missing. Shapes are checked against a model built from the
configuration inferred from those same shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ubdiff_onnx.checkpoints.format import Checkpoint, check_state_dict
from ubdiff_onnx.checkpoints.io import load_torch_file
from ubdiff_onnx.config import UBDiffConfig
from ubdiff_onnx.errors import UserError

LAYOUTS = ("original", "refactor")

_ENC_ORIG = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "4_1", "4_2", "5_1", "5_2", "6_1", "6_2", "7_1", "7_2", "8"]
_VDEC_ORIG = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "4_1", "4_2", "5_1", "5_2"]
_BLOCK = {"layers.0": "conv", "layers.1": "norm"}

Rule = tuple[str, Callable[[re.Match], str]]


_P = r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"
_LN = r"(?P<ln>layers\.[01])"

_RESNET = [
    (r"mlp\.1\.", "time_proj."),
    (r"block1\.proj\.", "block1.conv."),
    (r"block2\.proj\.", "block2.conv."),
    (r"block1\.norm\.", "block1.norm."),
    (r"block2\.norm\.", "block2.norm."),
    (r"res_conv\.", "skip."),
]


def _unet_rules(src: str, dst: str) -> list[Rule]:
    """lucidrains Unet1D names (under ``src``) → our UNet1D names (under ``dst``)."""
    rules: list[Rule] = [
        (rf"{src}init_conv\.(?P<p>weight|bias)$", lambda m: f"{dst}init_conv.{m['p']}"),
        (rf"{src}time_mlp\.1\.(?P<p>weight|bias)$", lambda m: f"{dst}time_mlp.fc1.{m['p']}"),
        (rf"{src}time_mlp\.3\.(?P<p>weight|bias)$", lambda m: f"{dst}time_mlp.fc2.{m['p']}"),
        (rf"{src}final_conv\.(?P<p>weight|bias)$", lambda m: f"{dst}final_conv.{m['p']}"),
        (rf"{src}mid_attn\.fn\.fn\.to_qkv\.weight$", lambda m: f"{dst}mid_attn.to_qkv.weight"),
        (rf"{src}mid_attn\.fn\.fn\.to_out\.(?P<p>weight|bias)$", lambda m: f"{dst}mid_attn.to_out.{m['p']}"),
        (rf"{src}mid_attn\.fn\.norm\.g$", lambda m: f"{dst}mid_attn.norm.gain"),
        (rf"{src}(?P<d>downs|ups)\.(?P<i>\d+)\.2\.fn\.fn\.to_qkv\.weight$", lambda m: f"{dst}{m['d']}.{m['i']}.attn.to_qkv.weight"),
        (rf"{src}(?P<d>downs|ups)\.(?P<i>\d+)\.2\.fn\.fn\.to_out\.0\.(?P<p>weight|bias)$", lambda m: f"{dst}{m['d']}.{m['i']}.attn.to_out.{m['p']}"),
        (rf"{src}(?P<d>downs|ups)\.(?P<i>\d+)\.2\.fn\.fn\.to_out\.1\.g$", lambda m: f"{dst}{m['d']}.{m['i']}.attn.out_norm.gain"),
        (rf"{src}(?P<d>downs|ups)\.(?P<i>\d+)\.2\.fn\.norm\.g$", lambda m: f"{dst}{m['d']}.{m['i']}.attn.norm.gain"),
        (rf"{src}downs\.(?P<i>\d+)\.3\.(?P<p>weight|bias)$", lambda m: f"{dst}downs.{m['i']}.down.{m['p']}"),
        (rf"{src}ups\.(?P<i>\d+)\.3\.(?:1\.)?(?P<p>weight|bias)$", lambda m: f"{dst}ups.{m['i']}.up.conv.{m['p']}"),
    ]
    for a, b in _RESNET:
        rules.append((rf"{src}(?P<d>downs|ups)\.(?P<i>\d+)\.(?P<r>[01])\.{a}(?P<p>weight|bias)$",
                      lambda m, b=b: f"{dst}{m['d']}.{m['i']}.res{int(m['r']) + 1}.{b}{m['p']}"))
        rules.append((rf"{src}(?P<n>mid_block1|mid_block2)\.{a}(?P<p>weight|bias)$", lambda m, b=b: f"{dst}{m['n']}.{b}{m['p']}"))
        rules.append((rf"{src}final_res_block\.{a}(?P<p>weight|bias)$", lambda m, b=b: f"{dst}final_block.{b}{m['p']}"))
    return rules


def _vit_rules(src: str) -> list[Rule]:
    return [
        (rf"{src}decoder\.(?P<n>cls_token|pos_embed)$", lambda m: f"seismic_decoder.vit.{m['n']}"),
        (rf"{src}decoder\.patch_embed\.proj\.(?P<p>weight|bias)$", lambda m: f"seismic_decoder.vit.patch_embed.{m['p']}"),
        (rf"{src}decoder\.blocks\.(?P<rest>\d+\.(?:norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(?:weight|bias))$", lambda m: f"seismic_decoder.vit.blocks.{m['rest']}"),
        (rf"{src}decoder\.(?P<n>norm|head)\.(?P<p>weight|bias)$", lambda m: f"seismic_decoder.vit.{m['n']}.{m['p']}"),
        (rf"{src}mlp\.(?P<p>weight|bias)$", lambda m: f"seismic_decoder.out.{m['p']}"),
    ]


ORIGINAL_RULES: list[Rule] = [
    (rf"encoder\.convBlock(?P<b>\d_\d|8)\.{_LN}\.{_P}$", lambda m: f"encoder.layers.{_ENC_ORIG.index(m['b'])}.{_BLOCK[m['ln']]}.{m['p']}"),
    (r"fc_v\.(?P<p>weight|bias)$", lambda m: f"velocity_projector.fc.{m['p']}"),
    (r"fc_s\.(?P<p>weight|bias)$", lambda m: f"seismic_projector.fc.{m['p']}"),
    (rf"batch_norm_v\.{_P}$", lambda m: f"velocity_projector.norm.{m['p']}"),
    (rf"batch_norm_s\.{_P}$", lambda m: f"seismic_projector.norm.{m['p']}"),
    (rf"decoder_v\.deconvBlock(?P<b>\d_\d)\.{_LN}\.{_P}$", lambda m: f"velocity_decoder.blocks.{_VDEC_ORIG.index(m['b'])}.{_BLOCK[m['ln']]}.{m['p']}"),
    (rf"decoder_v\.deconvBlock6\.{_LN}\.{_P}$", lambda m: f"velocity_decoder.head.{_BLOCK[m['ln']]}.{m['p']}"),
    *_vit_rules(r"decoder_s\."),
    *_unet_rules(r"unet\.", "unet."),
]
# Source keys that are the *same tensor* as another source key in the original model.
ORIGINAL_ALIASES: list[tuple[str, Callable[[re.Match], str]]] = [
    (r"encoder\.module_list1\.(?P<i>\d+)\.(?P<rest>.+)$", lambda m: f"encoder.convBlock{_ENC_ORIG[int(m['i'])]}.{m['rest']}"),
    (r"encoder\.module_list2\.(?P<i>\d+)\.(?P<rest>.+)$", lambda m: f"encoder.convBlock{_ENC_ORIG[10 + int(m['i'])]}.{m['rest']}"),
    (r"diffusion\.model\.(?P<rest>.+)$", lambda m: f"unet.{m['rest']}"),
]

REFACTOR_RULES: list[Rule] = [
    (rf"encoder\.stage(?P<s>[12])\.(?P<i>\d+)\.{_LN}\.{_P}$", lambda m: f"encoder.layers.{int(m['i']) + (10 if m['s'] == '2' else 0)}.{_BLOCK[m['ln']]}.{m['p']}"),
    (r"dual_decoder\.(?P<w>velocity|seismic)_projector\.fc\.(?P<p>weight|bias)$", lambda m: f"{m['w']}_projector.fc.{m['p']}"),
    (rf"dual_decoder\.(?P<w>velocity|seismic)_projector\.batch_norm\.{_P}$", lambda m: f"{m['w']}_projector.norm.{m['p']}"),
    (rf"dual_decoder\.velocity_decoder\.blocks\.(?P<i>\d+)\.{_LN}\.{_P}$", lambda m: f"velocity_decoder.blocks.{m['i']}.{_BLOCK[m['ln']]}.{m['p']}"),
    (rf"dual_decoder\.velocity_decoder\.output_layer\.{_LN}\.{_P}$", lambda m: f"velocity_decoder.head.{_BLOCK[m['ln']]}.{m['p']}"),
    *_vit_rules(r"dual_decoder\.seismic_decoder\."),
]
REFACTOR_SKIP = (
    (re.compile(r"(unet|diffusion)\."), "refactor U-Net ignores the timestep (no time embedding in its ResnetBlocks): not imported, retrain it with `train --stage diffusion`"),
)

SCHEDULE_KEYS = {
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "loss_weight",
}


@dataclass
class ImportReport:
    layout: str
    source_kind: str
    used: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    derived: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ema_used: bool = False


def _map_key(key: str, rules: list[Rule]) -> str | None:
    for pattern, target in rules:
        m = re.match(pattern, key)
        if m:
            return target(m)
    return None


# -- reading the container -------------------------------------------------------------------
def _extract(obj: Any, path: Path, layout: str, use_ema: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, str]:
    """(model state_dict, EMA state_dict or None, description of the container)."""
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    if obj.get("format") == "ubdiff-onnx":
        raise UserError(f"{path}: already an ubdiff-onnx checkpoint; no conversion needed")
    if "model" in obj and isinstance(obj["model"], dict):
        sd = obj["model"]
    elif all(isinstance(v, torch.Tensor) for v in obj.values()) and obj:
        sd = obj  # a bare state_dict
    else:
        raise UserError(f"{path}: no 'model' state_dict in this file (top-level keys {sorted(map(str, obj))[:6]})")
    ema = None
    kind = "state_dict"
    if "ema" in obj and isinstance(obj["ema"], dict):
        kind = "original diffusion checkpoint (model-N.pt)"
        ema_sd = obj["ema"]
        ema = {k[len("ema_model."):]: v for k, v in ema_sd.items() if k.startswith("ema_model.")}
        if "ema_model" in ema_sd and isinstance(ema_sd["ema_model"], dict):  # refactor: {'ema': {'ema_model': unet sd}}
            ema = {f"unet.{k}": v for k, v in ema_sd["ema_model"].items()}
    elif "args" in obj or "optimizer" in obj or "epoch" in obj:
        kind = "original encoder/decoder checkpoint (check_point.pth)"
    if use_ema and not ema:
        raise UserError(f"{path}: --use-ema given but the file has no EMA weights")
    return sd, ema, kind


def _check_layout(sd: dict[str, torch.Tensor], path: Path, layout: str) -> None:
    keys = list(sd)
    looks_orig = any(k.startswith(("encoder.convBlock", "decoder_v.", "fc_v.")) for k in keys)
    looks_ref = any(k.startswith(("encoder.stage1", "dual_decoder.")) for k in keys)
    if layout == "original" and not looks_orig:
        if looks_ref:
            raise UserError(f"{path}: this is a refactor-layout checkpoint (encoder.stage*/dual_decoder.*); use --layout refactor")
        raise UserError(f"{path}: not a UB-Diff checkpoint (no encoder.convBlock*/decoder_v.*/fc_v.* keys; first key {keys[0] if keys else None!r})")
    if layout == "refactor" and not looks_ref:
        if looks_orig:
            raise UserError(f"{path}: this is an original-layout checkpoint (encoder.convBlock*/decoder_v.*); use --layout original")
        raise UserError(f"{path}: not a UB-Diff checkpoint (no encoder.stage*/dual_decoder.* keys; first key {keys[0] if keys else None!r})")


# -- config from shapes ----------------------------------------------------------------------
def infer_config(sd: dict[str, torch.Tensor], *, seismic_token: str, timesteps: int = 256, preset: str = "imported",
                 fresh_unet_mults: tuple[int, ...] = (1, 2, 2, 4)) -> UBDiffConfig:
    """Rebuild the configuration from tensor shapes (our naming): users trained other sizes."""

    def shape(k: str) -> tuple[int, ...]:
        if k not in sd:
            raise UserError(f"cannot infer the model size: tensor {k!r} is missing")
        return tuple(sd[k].shape)

    latent = shape("encoder.layers.14.conv.weight")[0]
    enc = tuple(shape(f"encoder.layers.{i}.conv.weight")[0] for i in (0, 2, 6, 10))
    vdec = (
        shape("velocity_decoder.blocks.8.conv.weight")[1],
        shape("velocity_decoder.blocks.6.conv.weight")[1],
        shape("velocity_decoder.blocks.4.conv.weight")[1],
        shape("velocity_decoder.blocks.2.conv.weight")[1],
        shape("velocity_decoder.blocks.0.conv.weight")[1],
    )
    s_lat = shape("seismic_projector.fc.weight")[0]
    depth = len({k.split(".")[3] for k in sd if k.startswith("seismic_decoder.vit.blocks.")})
    mlp_ratio = shape("seismic_decoder.vit.blocks.0.mlp.fc1.weight")[0] / s_lat if depth else 4.0
    out_features = shape("seismic_decoder.out.weight")[0]
    if out_features != 5 * 1000 * 70:
        raise UserError(f"seismic decoder outputs {out_features} values, expected 5×1000×70 = 350000")
    kw: dict[str, Any] = dict(
        latent_dim=latent, encoder_dims=enc, velocity_latent=shape("velocity_projector.fc.weight")[0],
        velocity_decoder_dims=vdec, seismic_latent=s_lat, seismic_depth=depth,
        seismic_heads=8, seismic_mlp_ratio=mlp_ratio, seismic_token=seismic_token,
        seismic_vit_head="seismic_decoder.vit.head.weight" in sd, timesteps=timesteps, preset=preset,
    )
    if "unet.init_conv.weight" in sd:
        dim = shape("unet.init_conv.weight")[0]
        levels = len({k.split(".")[2] for k in sd if k.startswith("unet.downs.")})
        mults = tuple(shape(f"unet.downs.{i}.down.weight")[0] // dim for i in range(levels))
        hidden = shape("unet.mid_attn.to_qkv.weight")[0] // 3
        dim_head = 32 if hidden % 32 == 0 else hidden
        kw.update(unet_dim=dim, unet_dim_mults=mults, unet_attn_heads=hidden // dim_head, unet_attn_dim_head=dim_head)
    else:
        # No usable U-Net in the source: a fresh one sized as the source code builds it (dim = L).
        kw.update(unet_dim=latent, unet_dim_mults=fresh_unet_mults)
    try:
        return UBDiffConfig(**kw)
    except ValueError as exc:
        raise UserError(f"inferred model configuration is invalid: {exc}") from None


# -- the import ------------------------------------------------------------------------------
def import_legacy(path: Path, layout: str, *, use_ema: bool = False, trust_pickle: bool = False) -> tuple[Checkpoint, ImportReport]:
    from ubdiff_onnx.models.ubdiff import UBDiff
    from ubdiff_onnx.runtime.schedule import make_schedule

    path = Path(path)
    if layout not in LAYOUTS:
        raise UserError(f"--layout: unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if layout == "refactor" and use_ema:
        raise UserError("--use-ema: the refactor's U-Net (and its EMA) is not imported because it ignores the timestep; drop --use-ema")
    obj = load_torch_file(path, trust_pickle=trust_pickle)
    sd, ema, kind = _extract(obj, path, layout, use_ema)
    _check_layout(sd, path, layout)
    report = ImportReport(layout=layout, source_kind=kind)
    rules = ORIGINAL_RULES if layout == "original" else REFACTOR_RULES

    ours: dict[str, torch.Tensor] = {}
    timesteps = 256
    schedule_src: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        if not isinstance(tensor, torch.Tensor):
            report.unused.append(key)
            continue
        if layout == "original":
            alias = _map_key(key, ORIGINAL_ALIASES)  # type: ignore[arg-type]
            if alias is not None:
                if alias not in sd or not torch.equal(sd[alias], tensor):
                    raise UserError(f"{path}: {key} should be the same tensor as {alias} but differs; the file is inconsistent")
                report.aliases[key] = alias
                continue
            if key.startswith("diffusion.") and key.split(".", 1)[1] in SCHEDULE_KEYS:
                schedule_src[key.split(".", 1)[1]] = tensor
                timesteps = int(tensor.shape[0])
                continue
        else:
            reason = next((r for pat, r in REFACTOR_SKIP if pat.match(key)), None)
            if reason:
                report.skipped[key] = reason
                continue
        target = _map_key(key, rules)
        if target is None:
            report.unused.append(key)
            continue
        if target == "seismic_decoder.vit.patch_embed.weight" and tensor.ndim == 4:
            tensor = tensor.reshape(tensor.shape[0], tensor.shape[1])  # 1×1 conv on a 1×1 map ≡ Linear
        ours[target] = tensor.detach().clone().float() if tensor.is_floating_point() else tensor.detach().clone()
        report.used[key] = target

    if not ours:
        raise UserError(f"{path}: no UB-Diff tensors recognised for --layout {layout}")
    cfg = infer_config(ours, seismic_token="patch" if layout == "original" else "cls", timesteps=timesteps,
                       preset="imported-original" if layout == "original" else "imported-refactor",
                       fresh_unet_mults=(1, 2, 2, 4) if layout == "original" else (1, 2, 2, 2))
    with torch.random.fork_rng():
        torch.manual_seed(0)  # a fresh U-Net (refactor / encoder-decoder files) is the same every time
        model = UBDiff(cfg)
    expected = model.state_dict()
    if schedule_src:
        tables = make_schedule(cfg.beta_schedule, timesteps, cfg.objective, cfg.cosine_s).as_dict()
        for name, tensor in schedule_src.items():
            ref = torch.from_numpy(tables[name])
            if name == "loss_weight" and not torch.allclose(tensor.float(), ref, rtol=1e-5, atol=1e-6):
                report.notes.append("loss_weight differs from pred_v's snr/(snr+1): the source may use another objective")
            elif name != "loss_weight" and not torch.allclose(tensor.float(), ref, rtol=1e-5, atol=1e-6):
                raise UserError(f"{path}: diffusion.{name} does not match a cosine schedule with T={timesteps}")
            report.derived.append(f"diffusion.{name}")
    fresh = {k: v for k, v in expected.items() if k not in ours}
    unet_fresh = [k for k in fresh if k.startswith("unet.")]
    if unet_fresh and (layout == "refactor" or len(unet_fresh) == sum(k.startswith("unet.") for k in expected)):
        why = ("the refactor's U-Net ignores the timestep and must be retrained" if layout == "refactor"
               else "this encoder/decoder checkpoint has no U-Net; train one")
        report.notes.append(f"U-Net left freshly initialised ({len(unet_fresh)} tensors): {why} (`ubdiff-onnx train --stage diffusion`)")
        ours.update({k: fresh[k] for k in unet_fresh})
        fresh = {k: v for k, v in fresh.items() if not k.startswith("unet.")}
    report.missing = sorted(fresh)
    if report.missing:
        raise UserError(f"{path}: {len(report.missing)} model tensors are not in the file (e.g. {report.missing[0]})")
    check_state_dict(model, ours, str(path))

    ema_ours = None
    if ema:
        ema_ours = {}
        for key, tensor in ema.items():
            if layout == "original" and (key.startswith("diffusion.") or _map_key(key, ORIGINAL_ALIASES) is not None):  # type: ignore[arg-type]
                continue
            target = _map_key(key, rules)
            if target and target.startswith("unet."):
                ema_ours[target[len("unet."):]] = tensor.detach().clone().float()
        if use_ema:
            ours.update({f"unet.{k}": v for k, v in ema_ours.items()})
            report.ema_used = True
    meta = {"imported_from": str(path), "layout": layout, "source_kind": kind, "ema_used": report.ema_used}
    return Checkpoint(cfg, ours, ema_ours or None, None, meta), report
