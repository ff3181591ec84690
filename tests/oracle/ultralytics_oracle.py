#!/usr/bin/env python
"""Test-only oracle: drive the installed ultralytics (8.4.190) FastSAM as the reference implementation.

The ``fastsam`` package never imports ultralytics.  The differential tests run this script in its own
subprocess (ultralytics changes process-wide state such as torch's thread count and the default
activation), with ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False`` and ``YOLO_CONFIG_DIR=<tmp dir>``.

Subcommands
-----------
make-checkpoint   build the YOLOv8-seg architecture (nc=1, given scale and reg_max) from the
                  ultralytics yaml, randomise every weight deterministically (see ``randomise_``) and
                  save it in ultralytics' own checkpoint format (``release``: the layout of the
                  published FastSAM-*.pt files; ``current``: what ultralytics 8.4's ``Model.save()``
                  writes).  ``--calib-images`` (the photos the tests use) and ``--calib-size`` (the
                  resolution it will run at) calibrate the random network so that it gives tens to a few
                  hundred detections with spread-out scores and is not chaotic.  Prints the path.
resave            re-write an existing checkpoint's network in the other format (same weights).
dump-state-dict   load a checkpoint the way ultralytics does (torch.load, ``ema`` or ``model``) and save
                  its state dict, as stored (float16 values cast to float32), to an .npz
                  (``__keys__``, ``__dtypes__``, ``__top_keys__`` and one array per tensor).
predict           run ``FastSAM(weights).predict`` on each image separately and save, per image, the
                  pre-processed input, raw head outputs, final boxes/scores/masks.
postprocess       run only ``FastSAMPredictor.postprocess`` (NMS, masks, border/whole-image box step)
                  on raw outputs (``preds``, ``protos``, ``input_shape`` in each --raw .npz) for the
                  original image(s) given with --image (the network is not run).

Only the result path (make-checkpoint, resave) or nothing is written to stdout; ultralytics' own
logging is sent to stderr.  Inference runs on CPU with one torch thread.

Output .npz layout for predict/postprocess (``i`` = position of the image in --images / --image):
  img{i}_path, img{i}_orig_shape (h, w)
  img{i}_input (1,3,H,W) float32   [predict only] tensor the network saw
  img{i}_preds (1,4+nc+32,A) float32, img{i}_protos (1,32,H/4,W/4) float32   [predict only]
  img{i}_boxes (N,4) float32 xyxy original pixels after FastSAM's border snap / whole-image step
  img{i}_boxes_nms (N,4) float32 the same boxes before that step
  img{i}_scores (N,) float32
  img{i}_masks_packed  np.packbits of the (N,h,w) bool masks as ultralytics returns them (original
                       size with retina on; network-input size, padding included, with retina off)
  img{i}_masks_shape   (N, h, w)
  img{i}_masks_orig_packed / img{i}_masks_orig_shape   masks at the original image size (with retina
                       off: ultralytics' own ``scale_masks(...) > 0.5``, as its prompt code does)
  img{i}_input_shape  [postprocess only] the input shape the raw outputs were made for
  meta  JSON string with the arguments and versions
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

# --- keep stdout clean: everything ultralytics prints goes to stderr -------------------------------
_REAL_STDOUT = sys.stdout
sys.stdout = sys.stderr

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
os.environ.setdefault("YOLO_VERBOSE", "False")
if not os.environ.get("YOLO_CONFIG_DIR"):
    os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolo_cfg_")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

SCALES = {"s": (0.33, 0.50, 1024), "x": (1.00, 1.25, 512)}


def _emit(text: str) -> None:
    _REAL_STDOUT.write(text + "\n")
    _REAL_STDOUT.flush()


# =====================================================================================================
# make-checkpoint
# =====================================================================================================
def _yaml_dict(scale: str, reg_max: int) -> dict:
    import ultralytics
    from ultralytics.utils import YAML

    path = os.path.join(os.path.dirname(ultralytics.__file__), "cfg", "models", "v8", "yolov8-seg.yaml")
    d = YAML.load(path)
    d["nc"] = 1
    d["reg_max"] = int(reg_max)
    d["scale"] = scale
    assert tuple(d["scales"][scale]) == SCALES[scale], d["scales"][scale]
    return d


def _synthetic_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Deterministic, vaguely natural-looking images in [0, 1]: smooth colour fields, blobs, edges, noise."""
    g = torch.Generator().manual_seed(seed)
    imgs = []
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    for _ in range(n):
        low = torch.rand(1, 3, 6, 6, generator=g)
        img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[0]
        for _ in range(12):  # filled discs and rectangles with sharp edges
            cx, cy, r = torch.rand(3, generator=g).tolist()
            col = torch.rand(3, 1, generator=g)
            if torch.rand(1, generator=g).item() < 0.5:
                m = ((xx - cx) ** 2 + (yy - cy) ** 2) < (0.25 * r) ** 2
            else:
                m = ((xx - cx).abs() < 0.2 * r) & ((yy - cy).abs() < 0.12 * r)
            img[:, m] = col.expand(3, int(m.sum()))
        img = img + 0.04 * torch.randn(img.shape, generator=g)
        imgs.append(img.clamp(0, 1))
    return torch.stack(imgs)


def _calibration_photos(paths: list[str], size: int) -> torch.Tensor:
    """Real photos resized (aspect ratio ignored, no padding) to size x size, RGB in [0, 1], for calibration."""
    import cv2

    out = []
    for p in paths:
        im = cv2.imread(p)
        if im is None:
            raise SystemExit(f"cannot read calibration image {p}")
        im = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
        out.append(torch.from_numpy(im[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def _round_half_(model: torch.nn.Module) -> None:
    """Round every float parameter/buffer to float16 precision (what the saved file will hold)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def randomise_(
    model: torch.nn.Module,
    seed: int,
    calib_images: list[str] | None = None,
    calib_size: int = 640,
    target_per_640: int = 250,
    bn_gamma: tuple[float, float] = (0.1, 0.3),
    cls_std: float = 1.0,
) -> dict:
    """Randomise all weights of an ultralytics SegmentationModel in place, deterministically.

    Conv weights ~ N(0, gain / sqrt(fan_in)); BN weight ~ U(bn_gamma), bias ~ N(0, 0.3); BN running
    statistics measured layer by layer on calibration images (``calib_images`` resized to
    ``calib_size`` squared, else synthetic ones) so activations stay O(1) through the whole depth, and
    perturbed randomly (mean +- 0.1 std, var x exp(N(0, 0.2)), so running_var stays positive).  The
    head's final layers get random biases; the class-logit layer is rescaled per level and shifted so
    that on the calibration images about ``target_per_640`` anchors per 640x640 score above 0.4 and
    scores spread over (0, 1) without saturating to exactly 1.0 (no ties).  The DFL conv stays
    arange(reg_max).  Everything is rounded to float16, the precision the file stores.

    Why small BN weights and calibration at the run resolution: a random network amplifies small
    input changes (one grey level from a different resize) much more than a trained one; with BN
    weights of O(1) it is chaotic, and BN statistics measured at another resolution compound into
    exploding activations through the ~60 layers of FastSAM-x.
    """
    from ultralytics.nn.modules.block import DFL
    from ultralytics.nn.modules.head import Segment

    g = torch.Generator().manual_seed(seed)
    head = model.model[-1]
    assert isinstance(head, Segment)
    dfl_ids = {id(p) for m in model.modules() if isinstance(m, DFL) for p in m.parameters()}
    final_convs = {}
    for name, branch in (("box", head.cv2), ("cls", head.cv3), ("coef", head.cv4)):
        for i, seq in enumerate(branch):
            final_convs[id(seq[-1])] = (name, i)

    def randn(shape):
        return torch.randn(shape, generator=g)

    def rand(shape):
        return torch.rand(shape, generator=g)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                if id(m.weight) in dfl_ids:
                    continue
                w = m.weight
                if isinstance(m, torch.nn.ConvTranspose2d):
                    fan_in = w.shape[0] * w.shape[2] * w.shape[3] // (m.stride[0] * m.stride[1])
                else:
                    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
                kind = final_convs.get(id(m), (None,))[0]
                gain = {"box": 1.5, "cls": 1.0, "coef": 1.0}.get(kind, 1.6)
                w.copy_(randn(w.shape) * gain / fan_in**0.5)
                if m.bias is not None:
                    b = m.bias
                    if kind == "box":
                        b.copy_(randn(b.shape) * 1.0)
                    elif kind == "coef":
                        b.copy_(randn(b.shape) * 0.5)
                    else:
                        b.copy_(randn(b.shape) * 0.1)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(bn_gamma[0] + (bn_gamma[1] - bn_gamma[0]) * rand(m.weight.shape))
                m.bias.copy_(randn(m.bias.shape) * 0.3)
        # DFL: fixed arange (as ultralytics builds it), not random
        for m in model.modules():
            if isinstance(m, DFL):
                c1 = m.conv.weight.shape[1]
                m.conv.weight.copy_(torch.arange(c1, dtype=torch.float32).view(1, c1, 1, 1))
        _round_half_(model)

        # ---- BN statistics: measured on the calibration images layer by layer (each BN sees the already
        # normalised outputs of the layers before it), randomly perturbed as they are set ----
        def set_stats(bn, inputs):
            x = inputs[0].detach().float()
            var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=True)
            var = var.clamp_min(1e-6)
            bn.running_mean.copy_(mean + randn(mean.shape) * 0.1 * var.sqrt())
            bn.running_var.copy_((var * torch.exp(randn(var.shape) * 0.2)).half().float().clamp_min(1e-4))
            bn.running_mean.copy_(bn.running_mean.half().float())
            bn.num_batches_tracked.fill_(0)

        # one pass over the calibration images sets every BN's statistics (pre-hooks, in execution
        # order) and records the class logits that the final network gives on those images
        model.eval()
        cls_convs = [seq[-1] for seq in head.cv3]
        for c in cls_convs:
            c.bias.zero_()
        feats = {}
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        hooks = [m.register_forward_pre_hook(set_stats) for m in bns]
        hooks += [
            c.register_forward_hook(lambda mod, inp, out, k=k: feats.__setitem__(k, out.detach().clone()))
            for k, c in enumerate(cls_convs)
        ]
        calib = (
            _calibration_photos(calib_images, calib_size) if calib_images else _synthetic_images(2, calib_size, seed + 1)
        )
        model(calib)
        for h in hooks:
            h.remove()
        _round_half_(model)

        # ---- class logits: per level scaled to std cls_std and shifted so that ~target_per_640 anchors
        # per 640x640 of calibration image exceed conf 0.4 ----
        # per level: standardise, then one common threshold (each level keeps its share of the anchors)
        thr_z = []
        scales, offsets = [], []
        for k in range(len(cls_convs)):
            lk = feats[k].flatten()
            scales.append(cls_std / float(lk.std().clamp_min(1e-6)))
            offsets.append(-float(lk.mean()) * scales[-1])
            thr_z.append(lk * scales[-1] + offsets[-1])
        z = torch.cat(thr_z)
        thr = float(torch.quantile(z, 1.0 - target_per_640 / 8400))  # same share of anchors at any size
        shift = float(np.log(0.4 / 0.6)) - thr
        for c, sc, off in zip(cls_convs, scales, offsets):
            c.weight.mul_(sc)
            c.bias.fill_(off + shift)
        scale = scales
        _round_half_(model)
    for m in model.modules():  # the calibration forward cached anchors for its input shape
        if isinstance(m, Segment):
            for attr in ("shape", "anchors", "strides"):
                m.__dict__.pop(attr, None)  # back to the class defaults, as in a freshly built model
    return {"cls_scale": scale, "cls_shift": shift}


def cmd_make_checkpoint(a) -> None:
    from ultralytics import YOLO
    from ultralytics.utils import YAML

    torch.manual_seed(a.seed)
    # building is not part of any bitwise comparison (both sides then read the same file): use the cores
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    tmp = tempfile.mkdtemp(prefix="fastsam_oracle_")
    cfg_path = os.path.join(tmp, f"yolov8{a.scale}-seg.yaml")  # ultralytics guesses the scale from this name
    YAML.save(cfg_path, _yaml_dict(a.scale, a.reg_max))
    yolo = YOLO(cfg_path, task="segment")
    model = yolo.model
    assert model.model[-1].reg_max == a.reg_max and model.model[-1].nc == 1
    _check_against_tsv(model, a.scale)
    info = randomise_(
        model, a.seed, a.calib_images, calib_size=a.calib_size, target_per_640=a.target_per_640,
        bn_gamma=tuple(a.bn_gamma), cls_std=a.cls_std,
    )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    out = os.path.abspath(a.out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    _save(yolo, model, a.format, a.scale, out)
    if a.dump:
        _dump_state_dict(out, a.dump)
    print(f"oracle: saved {a.format} checkpoint scale={a.scale} reg_max={a.reg_max} seed={a.seed} {info}", file=sys.stderr)
    _emit(out)


def _check_against_tsv(model, scale: str) -> None:
    ref_dir = os.environ.get("FASTSAM_REFERENCE_DIR")
    if not ref_dir:
        shared = os.environ.get("FASTSAM_SHARED") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared"
        )
        ref_dir = os.path.join(shared, "reference")
    path = os.path.join(ref_dir, f"fastsam-{scale}_state_dict.tsv")
    if not os.path.exists(path):
        print(f"oracle: {path} absent, key/shape check skipped", file=sys.stderr)
        return
    ref = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            k, shape, _dtype = line.rstrip("\n").split("\t")
            ref.append((k, shape))
    mine = [(k, str(tuple(v.shape))) for k, v in model.state_dict().items()]
    if ref != mine:
        diff = [(r, m) for r, m in zip(ref, mine) if r != m][:5]
        raise SystemExit(f"state dict differs from {path}: {len(ref)} vs {len(mine)} entries; first diffs {diff}")


def _save(yolo, model, fmt: str, scale: str, out: str) -> None:
    """Write ``model`` (an ultralytics SegmentationModel) in the given checkpoint format."""
    import datetime
    from copy import deepcopy

    import ultralytics
    from ultralytics.utils import DEFAULT_CFG_DICT

    if fmt == "current":
        yolo.model = model
        yolo.ckpt = {}
        yolo.save(out)  # ultralytics 8.4's own writer: {ema, model, modelopt, date, version, license, docs}
        return
    train_args = {
        **DEFAULT_CFG_DICT,
        "task": "segment",
        "mode": "train",
        "model": f"yolov8{scale}-seg.yaml",
        "data": "sa.yaml",
        "epochs": 100,
        "imgsz": 1024,
        "batch": 16,
    }
    m = deepcopy(model).half()
    m.args = dict(train_args)
    for p in m.parameters():
        p.requires_grad_(False)
    ckpt = {  # the layout of the published FastSAM-s.pt / FastSAM-x.pt
        "epoch": -1,
        "best_fitness": None,
        "model": m,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": train_args,
        "date": datetime.datetime.now().isoformat(),
        "version": ultralytics.__version__,
    }
    torch.save(ckpt, out)


def cmd_resave(a) -> None:
    """Re-write an existing checkpoint's network in another format (no re-randomisation)."""
    from ultralytics import YOLO

    ckpt = _torch_load(a.weights)
    model = (ckpt.get("ema") or ckpt.get("model")).float().eval()
    head = model.model[-1]
    scale = {32: "s", 80: "x"}.get(model.model[0].conv.out_channels)
    if scale is None:
        raise SystemExit("resave: not a FastSAM-s/x network")
    tmp = tempfile.mkdtemp(prefix="fastsam_oracle_")
    cfg_path = os.path.join(tmp, f"yolov8{scale}-seg.yaml")
    from ultralytics.utils import YAML

    YAML.save(cfg_path, _yaml_dict(scale, head.reg_max))
    yolo = YOLO(cfg_path, task="segment")
    yolo.model.load_state_dict(model.state_dict())
    out = os.path.abspath(a.out)
    _save(yolo, yolo.model, a.format, scale, out)
    if a.dump:
        _dump_state_dict(out, a.dump)
    _emit(out)


# =====================================================================================================
# dump-state-dict
# =====================================================================================================
def _torch_load(path):
    return torch.load(path, map_location="cpu", weights_only=False)  # test-only, our own files


def cmd_dump_state_dict(a) -> None:
    _dump_state_dict(a.weights, a.out)


def _dump_state_dict(weights: str, out: str) -> None:
    ckpt = _torch_load(weights)
    model = ckpt.get("ema") or ckpt.get("model")
    sd = model.state_dict()
    arrays = {}
    dtypes = {}
    for k, v in sd.items():
        dtypes[k] = str(v.dtype).replace("torch.", "")
        arrays[k] = v.float().numpy() if v.is_floating_point() else v.numpy()
    arrays["__keys__"] = np.array(list(sd.keys()))
    arrays["__dtypes__"] = np.array([dtypes[k] for k in sd.keys()])
    arrays["__top_keys__"] = np.array(sorted(str(k) for k in ckpt))
    np.savez(out, **arrays)


# =====================================================================================================
# predict / postprocess
# =====================================================================================================
def _pack(prefix: str, masks: torch.Tensor | None, hw: tuple[int, int]) -> dict:
    if masks is None:
        arr = np.zeros((0, *hw), dtype=bool)
    else:
        arr = masks.cpu().numpy().astype(bool)
    return {f"{prefix}_packed": np.packbits(arr.reshape(-1)), f"{prefix}_shape": np.array(arr.shape, dtype=np.int64)}


def _install_hooks(state: dict):
    """Wrap ultralytics' predictor methods to capture inputs/outputs, and optionally inject raw outputs."""
    from ultralytics.models.fastsam.predict import FastSAMPredictor
    from ultralytics.models.yolo.segment.predict import SegmentationPredictor

    orig_pre = FastSAMPredictor.preprocess
    orig_inf = FastSAMPredictor.inference
    orig_seg_post = SegmentationPredictor.postprocess

    def preprocess(self, im):
        x = orig_pre(self, im)
        if state.get("inject_input_shape") is not None:
            x = torch.zeros(tuple(state["inject_input_shape"]), dtype=x.dtype, device=x.device)
        state["input"] = x.detach().float().cpu().clone()
        return x

    def inference(self, im, *args, **kwargs):
        torch.set_num_threads(1)  # select_device() resets the thread count during setup
        if state.get("inject") is not None:
            preds, protos = state["inject"]
            out = [preds.to(im.device), protos.to(im.device)]
        else:
            out = orig_inf(self, im, *args, **kwargs)
        p, pr = _split_raw(out)
        state["preds"] = p.detach().float().cpu().clone()
        state["protos"] = pr.detach().float().cpu().clone()
        return out

    def seg_post(self, preds, img, orig_imgs):
        results = orig_seg_post(self, preds, img, orig_imgs)
        state["boxes_nms"] = [r.boxes.xyxy.detach().float().cpu().clone() for r in results]
        return results

    FastSAMPredictor.preprocess = preprocess
    FastSAMPredictor.inference = inference
    SegmentationPredictor.postprocess = seg_post


def _split_raw(out):
    """(preds, protos) from the predictor's inference output (AutoBackend returns a list [preds, protos])."""
    if isinstance(out, (list, tuple)):
        first = out[0]
        if isinstance(first, (list, tuple)):  # ((preds, protos), raw dict)
            return first[0], first[1]
        return out[0], out[-1] if out[-1].ndim == 4 else out[1]
    raise TypeError(f"unexpected inference output type {type(out)}")


def _run_one(model, state: dict, image: str, a) -> dict:
    import cv2
    from ultralytics.utils.ops import scale_masks

    results = model.predict(
        source=image,
        imgsz=a.imgsz,
        conf=a.conf,
        iou=a.iou,
        max_det=a.max_det,
        retina_masks=bool(a.retina),
        device="cpu",
        verbose=False,
        save=False,
        half=False,
    )
    assert len(results) == 1
    r = results[0]
    orig_hw = tuple(int(v) for v in r.orig_shape)
    assert cv2.imread(image).shape[:2] == orig_hw
    boxes = r.boxes.xyxy.detach().float().cpu().numpy().reshape(-1, 4)
    scores = r.boxes.conf.detach().float().cpu().numpy().reshape(-1)
    masks = r.masks.data if r.masks is not None else None
    in_hw = tuple(state["input"].shape[2:])
    out = {
        "path": np.array(os.path.abspath(image)),
        "orig_shape": np.array(orig_hw, dtype=np.int64),
        "boxes": boxes.astype(np.float32),
        "boxes_nms": state["boxes_nms"][0].numpy().reshape(-1, 4).astype(np.float32),
        "scores": scores.astype(np.float32),
    }
    out.update(_pack("masks", masks, orig_hw if a.retina else in_hw))
    if masks is not None and tuple(masks.shape[1:]) != orig_hw:
        masks_orig = scale_masks(masks[None].float(), orig_hw)[0] > 0.5
    else:
        masks_orig = masks
    out.update(_pack("masks_orig", masks_orig, orig_hw))
    return out


def _meta(a) -> np.ndarray:
    import ultralytics

    d = {k: v for k, v in vars(a).items() if k != "func"}
    d["ultralytics"] = ultralytics.__version__
    d["torch"] = torch.__version__
    return np.array(json.dumps(d, default=str))


def cmd_predict(a) -> None:
    from ultralytics import FastSAM

    state: dict = {}
    _install_hooks(state)
    model = FastSAM(a.weights)
    arrays = {"meta": _meta(a)}
    for i, image in enumerate(a.images):
        for k in ("input", "preds", "protos", "boxes_nms"):
            state.pop(k, None)
        res = _run_one(model, state, image, a)
        arrays[f"img{i}_input"] = state["input"].numpy().astype(np.float32)
        arrays[f"img{i}_preds"] = state["preds"].numpy().astype(np.float32)
        arrays[f"img{i}_protos"] = state["protos"].numpy().astype(np.float32)
        for k, v in res.items():
            arrays[f"img{i}_{k}"] = v
    np.savez_compressed(a.out, **arrays)


def cmd_postprocess(a) -> None:
    from ultralytics import FastSAM

    if len(a.image) != len(a.raw):
        raise SystemExit("postprocess: give as many --raw files as --image files")
    state: dict = {}
    _install_hooks(state)
    model = FastSAM(a.weights)
    arrays = {"meta": _meta(a)}
    for i, (image, raw_path) in enumerate(zip(a.image, a.raw)):
        raw = np.load(raw_path)
        preds = torch.from_numpy(np.ascontiguousarray(raw["preds"], dtype=np.float32))
        protos = torch.from_numpy(np.ascontiguousarray(raw["protos"], dtype=np.float32))
        preds = preds[None] if preds.ndim == 2 else preds
        protos = protos[None] if protos.ndim == 3 else protos
        input_shape = tuple(int(v) for v in raw["input_shape"])
        if len(input_shape) == 2:
            input_shape = (1, 3, *input_shape)
        if preds.shape[0] != 1 or protos.shape[0] != 1 or input_shape[0] != 1:
            raise SystemExit(f"postprocess: {raw_path} must hold one image (batch 1)")
        state.clear()
        state.update(inject=(preds, protos), inject_input_shape=input_shape)
        res = _run_one(model, state, image, a)
        arrays[f"img{i}_input_shape"] = np.array(input_shape, dtype=np.int64)
        for k, v in res.items():
            arrays[f"img{i}_{k}"] = v
    np.savez_compressed(a.out, **arrays)


# =====================================================================================================
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("make-checkpoint", help="build + randomise a YOLOv8-seg (nc=1) and save it")
    s.add_argument("--scale", choices=sorted(SCALES), required=True)
    s.add_argument("--reg-max", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--format", choices=("release", "current"), default="release")
    s.add_argument("--calib-images", nargs="+", help="photos to calibrate BN statistics and score levels on "
                   "(resized to --calib-size squared); default: synthetic images")
    s.add_argument("--calib-size", type=int, default=640, help="calibration image side (use the imgsz it will run at)")
    s.add_argument("--target-per-640", type=int, default=250,
                   help="anchors per 640x640 calibration image that should score above 0.4")
    s.add_argument("--bn-gamma", type=float, nargs=2, default=(0.1, 0.3), metavar=("LO", "HI"),
                   help="BatchNorm weights ~ U(LO, HI): small values make the random network less chaotic")
    s.add_argument("--cls-std", type=float, default=1.0, help="std of the class logits on the calibration images")
    s.add_argument("--dump", help="also dump the saved file's state dict to this .npz (as dump-state-dict)")
    s.set_defaults(func=cmd_make_checkpoint)

    s = sub.add_parser("resave", help="re-write a checkpoint's network in the release or current format")
    s.add_argument("--weights", required=True)
    s.add_argument("--format", choices=("release", "current"), required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--dump", help="also dump the saved file's state dict to this .npz")
    s.set_defaults(func=cmd_resave)

    s = sub.add_parser("dump-state-dict", help="save a checkpoint's state dict (as float32) to .npz")
    s.add_argument("--weights", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_dump_state_dict)

    def common(s):
        s.add_argument("--weights", required=True)
        s.add_argument("--imgsz", type=int, default=1024)
        s.add_argument("--conf", type=float, default=0.4)
        s.add_argument("--iou", type=float, default=0.9)
        s.add_argument("--max-det", type=int, default=300)
        s.add_argument("--retina", type=int, choices=(0, 1), default=1)
        s.add_argument("--out", required=True)

    s = sub.add_parser("predict", help="full ultralytics FastSAM prediction, capturing intermediates")
    common(s)
    s.add_argument("--images", nargs="+", required=True)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("postprocess", help="ultralytics FastSAM post-processing only, on given raw outputs")
    common(s)
    s.add_argument("--image", required=True, nargs="+", help="original image(s)")
    s.add_argument("--raw", required=True, nargs="+", help=".npz per image: preds (1,C,A), protos (1,32,h,w), input_shape")
    s.set_defaults(func=cmd_postprocess)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    a.func(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
