"""``metis prepare --task visual | l2s``: talking-face videos -> visual-encoder pairs / L2S shards.

Input: a JSONL manifest whose items carry ``video`` (a silent video of the speaking face,
relative to the manifest) beside ``audio``, and optionally ``mouth_box`` = [x0, y0, x1, y1]
pixels (as ``metis make-corpus`` writes it); without one the face is found
(:func:`metis_speech.video.video_to_crops` with ``"auto"``). Crops are 96×96 grayscale at
25 fps, as inference reads them (:meth:`metis_speech.Metis.l2s`).

The video is the clock: an utterance of N video frames has 2N semantic frames (50 Hz).
The audio's semantic ids (T,) (the model source's SSL + semantic codec, as every other
task) are cut or repeat-padded to 2N; an item whose audio and video durations differ by
more than ``AV_TOLERANCE_S`` (0.1 s: 2.5 video frames, 5 semantic frames) is skipped.

========  ==========================================================================
task      per kept utterance ``<id>``
========  ==========================================================================
visual    ``crops`` (N, 96, 96) uint8, ``semantic`` (2N,) int64 — the format of
          :func:`metis_speech.training.visual_train.write_visual_shard`, which the
          visual-encoder trainer reads through ``data.path``
l2s       TokenDataset item: ``semantic`` = [prompt ids ; target ids] (Tp + 2N,),
          ``prompt_len`` (1,) = Tp, ``cond`` (Tp + 2N, C) = ``l2s_condition(f25, Tp)``
          (zero prompt rows, then the visual encoder's 25 fps features of the target
          video interpolated to 50 Hz — exactly as inference builds it), ``acoustic``
          (Tp + 2N, Q) unless ``acoustic=False``
========  ==========================================================================

The L2S prompt is another utterance of the same speaker, cut like the VC prompt
(:func:`.task_data.pair_items`, :func:`.task_data.crop_prompt`); it needs no video. The visual
encoder of ``l2s`` is ``PrepareConfig.visual`` (a checkpoint directory, e.g. the ``final/``
of a visual-encoder run) or else the model source's (a bundle's ``visual``, or random
weights for ``random:<preset>``). Skip reasons added to the audio ones: ``no video``,
``missing video``, ``bad mouth_box``, ``corrupt or unreadable video``, ``no video frames``,
``no face found``, ``audio/video length mismatch``.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import MetisError
from ..hashing import sha256_file
from .prepare_worker import COND_DTYPES, PrepareConfig, _fit, _Skip, _Worker
from .prepare_io import Item
from .task_data import item_rng

__all__ = ["VideoWorker", "check_video_config", "resolve_visual_dir", "mouth_method", "AV_TOLERANCE_S"]

AV_TOLERANCE_S = 0.1  # largest |audio seconds - video frames / fps| of a kept item
IDS_PER_FRAME = 2  # 50 Hz semantic frames per 25 fps video frame
MAX_ID_MISMATCH = int(round(AV_TOLERANCE_S * 50)) + 2  # |T - 2N| allowed (SSL edge frames included)


def resolve_visual_dir(path: Union[str, Path]) -> Path:
    """A visual-encoder checkpoint directory: ``path`` itself, or its ``final/`` (a run directory)."""
    p = Path(path)
    for d in (p, p / "final"):
        if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
            return d
    raise MetisError(f"--visual {path}: not a visual-encoder checkpoint (no config.json + model.safetensors there or in final/)")


def check_video_config(cfg: PrepareConfig, items: Sequence[Item]) -> dict:
    """Refuse settings that cannot work (one-line MetisError) before any work is done;
    returns what the video tasks add to ``prepare.json`` (a rerun must match it)."""
    if cfg.phones:
        raise MetisError(f"--phones is not used by --task {cfg.task}")
    if items and not any(it.video for it in items):
        raise MetisError(f"{cfg.input}: no item has a video; --task {cfg.task} needs a JSONL manifest with a 'video' field")
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise MetisError(f"--task {cfg.task} reads videos with {tool}, which is not installed (apt-get install ffmpeg)")
    if any(it.video and it.mouth_box is None for it in items):
        from ..video import _mediapipe_available

        try:
            import cv2  # noqa: F401
        except ImportError:
            if not _mediapipe_available():
                raise MetisError("items without mouth_box need face detection: pip install opencv-python-headless "
                                 "(or give every manifest item a mouth_box [x0, y0, x1, y1])") from None
    extra = {"video": {"fps": 25, "av_tolerance_s": AV_TOLERANCE_S}}
    if cfg.task == "l2s":
        if cfg.visual is None:
            extra["visual"] = "model source"
        else:
            d = resolve_visual_dir(cfg.visual)
            extra["visual"] = {"path": str(d.resolve()), "sha256": sha256_file(d / "model.safetensors")[:16]}
    return extra


def mouth_method(it: Item) -> Union[str, Tuple[float, float, float, float]]:
    """The crop box (x, y, w, h) of ``video_to_crops`` from the item's ``mouth_box`` [x0, y0, x1, y1],
    or ``"auto"`` without one; raises _Skip("bad mouth_box")."""
    if it.mouth_box is None:
        return "auto"
    try:
        x0, y0, x1, y1 = (float(v) for v in it.mouth_box)
    except (TypeError, ValueError):
        raise _Skip("bad mouth_box", it.video) from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise _Skip("bad mouth_box", it.video)
    return (x0, y0, x1 - x0, y1 - y0)


class VideoWorker(_Worker):
    """:class:`~.prepare_worker._Worker` for the video tasks: + mouth crops, + visual features (l2s)."""

    def __init__(self, cfg: PrepareConfig, items: Dict[str, Item], partners: Dict[str, dict]):
        from ..video import CROP_SIZE, FPS

        super().__init__(cfg, items, partners)
        self.fps, self.size, self.visual = FPS, CROP_SIZE, None
        if cfg.task == "l2s":
            self.visual = self._load_visual()
            self.size = int(self.visual.cfg.in_size)

    def _load_visual(self):
        from ..loading import load_checkpoint
        from ..models.visual import VisualEncoder

        cfg = self.cfg
        if cfg.visual is not None:
            d = resolve_visual_dir(cfg.visual)
            try:
                enc = load_checkpoint(d, self.metis.device, self.metis.dtype)
            except MetisError as e:
                raise MetisError(f"--visual {cfg.visual}: {e}") from None
            where = f"--visual {cfg.visual}"
        else:
            try:
                enc = self.metis._net("visual")
            except MetisError:
                raise MetisError(f"--task l2s needs a visual encoder and the model source {cfg.model} has none; give "
                                 "--visual DIR (the final/ of a visual-encoder run, metis train visual_encoder...)") from None
            where = f"model source {cfg.model}"
        if not isinstance(enc, VisualEncoder):
            raise MetisError(f"{where}: holds a {type(enc).__name__}, not a visual encoder")
        if int(enc.cfg.fps) * IDS_PER_FRAME != 50:
            raise MetisError(f"{where}: the visual encoder runs at {enc.cfg.fps} fps; L2S needs 25 fps (2 semantic frames each)")
        return enc.eval()

    # ---- per item
    def crops(self, it: Item, method) -> np.ndarray:
        """(N, size, size) float32 mouth crops at 25 fps; raises _Skip with the reason."""
        from ..video import VideoError, mouth_crops, read_video

        try:
            frames, _ = read_video(it.video, fps=self.fps, max_seconds=self.cfg.max_duration + 2 * AV_TOLERANCE_S)
        except VideoError as e:
            msg = str(e)
            if "no frames" in msg:
                raise _Skip("no video frames", it.video) from None
            if "limit" in msg:  # longer than the audio can be
                raise _Skip("audio/video length mismatch", it.video) from None
            raise _Skip("corrupt or unreadable video", it.video) from None
        try:
            return mouth_crops(frames, method, size=self.size, source=it.video)
        except VideoError:
            raise _Skip("bad mouth_box" if not isinstance(method, str) else "no face found", it.video) from None

    def plan(self, it: Item) -> dict:
        cfg = self.cfg
        if not it.video:
            raise _Skip("no video")
        if not Path(it.video).is_file():
            raise _Skip("missing video", it.video)
        method = mouth_method(it)
        w16, w24, seconds = self.load(it)
        out: dict = {"item": it, "w16": w16, "w24": w24, "seconds": seconds,
                     "info": {"video": it.video, "mouth": "box" if not isinstance(method, str) else "found"}}
        if cfg.task == "l2s":  # the prompt first: it is cheaper to fail than the video
            partner = self.partners[it.uid]
            p16, p24, n = self.prompt(partner["prompt"], item_rng(cfg.seed, it.uid, cfg.task))
            out.update(prompt16=p16, prompt24=p24)
            out["info"].update(prompt=partner["prompt"], prompt_s=round(n * 0.02, 2))
        crops = self.crops(it, method)
        n_frames = crops.shape[0]
        if abs(n_frames / self.fps - seconds) > AV_TOLERANCE_S:
            raise _Skip("audio/video length mismatch", it.video)
        out["info"]["video_frames"] = n_frames
        # visual pairs are stored as uint8; L2S features are computed from the float crops, as in inference
        out["crops"] = np.round(crops * 255).astype(np.uint8) if cfg.task == "visual" else crops
        return out

    # ---- tokenization
    @torch.no_grad()
    def visual_features(self, crops: np.ndarray) -> torch.Tensor:
        """(N, h, w) float crops in [0, 1] -> (N, C) float32 features at 25 fps."""
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))[None].to(self.metis.device, self.metis.dtype)
        return self.visual(x)[0].float().cpu()

    def _tokenize(self, plans: List[dict]):
        from ..models.visual import l2s_condition

        cfg = self.cfg
        feats, slots = self.plan_features(plans)
        results: List[Tuple[dict, Optional[dict], Optional[str]]] = []
        for p, s in zip(plans, slots):
            it: Item = p["item"]
            sem = self.ids(feats[s["clean"]])
            n2 = IDS_PER_FRAME * int(p["crops"].shape[0])
            if abs(int(sem.shape[0]) - n2) > MAX_ID_MISMATCH:
                results.append((p, None, "audio/video length mismatch"))
                continue
            sem = _fit(sem, n2)
            if cfg.task == "visual":
                results.append((p, {"id": it.uid, "crops": torch.from_numpy(p["crops"]), "semantic": sem}, None))
                continue
            psem = self.ids(feats[s["prompt"]])
            tp = int(psem.shape[0])
            cond = l2s_condition(self.visual_features(p["crops"]), tp)  # (tp + n2, C), prompt rows zero
            if not bool(torch.isfinite(cond).all()):
                results.append((p, None, "non-finite condition"))
                continue
            u = {"id": it.uid, "semantic": torch.cat([psem, sem]), "prompt_len": torch.tensor([tp], dtype=torch.int64),
                 "cond": cond.to(COND_DTYPES[cfg.cond_dtype])}
            if cfg.wants_acoustic:
                u["acoustic"] = torch.cat([self.metis.acoustic_ids(p["prompt24"], tp).cpu(),
                                           self.metis.acoustic_ids(p["w24"], n2).cpu()])
            results.append((p, u, None))
        return results

    def write_shard(self, path: Path, utts: Sequence[dict]) -> None:
        if self.cfg.task != "visual":
            return super().write_shard(path, utts)
        from .visual_train import write_visual_shard

        write_visual_shard(path, [(u["id"], u["crops"], u["semantic"]) for u in utts])
