"""68-point iBUG landmark detectors for building a dataset's landmark cache (never used in training).

- ``dlib``: HOG face detector + the 68-point shape predictor from ``face-recognition-models``;
  fully offline, so it is the default. The model file is located with
  ``importlib.util.find_spec`` because importing ``face_recognition_models`` needs
  ``pkg_resources``, which current setuptools no longer ships.
- ``face-alignment`` (FAN): optional. Its weights are downloaded at construction; offline they
  must already sit in the torch hub cache, which is checked first so the user gets one line
  instead of a URLError traceback. ``compile=False`` always (``torch.compile`` costs minutes on CPU).

``detect(image, region)`` returns points in the coordinates of ``image``; ``region`` (a face box
x1, y1, x2, y2 such as a dataset's own box) restricts the search and is undone in the result.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAN_WEIGHTS = ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar")
DETECTORS = ("dlib", "face-alignment")


class DetectorUnavailable(Exception):
    """The detector cannot run here; the message says how to fix it (one line)."""


@dataclass
class Detection:
    points: np.ndarray | None      # (68, 2) float32 in image pixels, or None when no face
    faces: int                     # number of faces the detector saw


def _crop(image: np.ndarray, region) -> tuple[np.ndarray, float, float]:
    if region is None:
        return image, 0.0, 0.0
    H, W = image.shape[:2]
    x1, y1 = max(0, int(np.floor(region[0]))), max(0, int(np.floor(region[1])))
    x2, y2 = min(W, int(np.ceil(region[2]))), min(H, int(np.ceil(region[3])))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return image, 0.0, 0.0
    return np.ascontiguousarray(image[y1:y2, x1:x2]), float(x1), float(y1)


def dlib_model_path() -> Path:
    """The 68-point predictor shipped by ``face-recognition-models``, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable("the dlib detector needs face-recognition-models: "
                                  "pip install 'au-cam-bench[landmarks]' (or: pip install dlib-bin face-recognition-models)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise DetectorUnavailable(f"{path} is missing; reinstall face-recognition-models")
    return path


class DlibDetector:
    """HOG detector (upsample 0, then 1 for small faces), highest-scoring face, 68-point predictor."""

    name = "dlib"

    def __init__(self, upsample: tuple[int, ...] = (0, 1)):
        if importlib.util.find_spec("dlib") is None:
            raise DetectorUnavailable("the dlib detector needs dlib: pip install 'au-cam-bench[landmarks]' "
                                      "(or: pip install dlib-bin face-recognition-models)")
        import dlib

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_path()))
        self.upsample = upsample

    def detect(self, image: np.ndarray, region=None) -> Detection:
        crop, ox, oy = _crop(np.ascontiguousarray(image, dtype=np.uint8), region)
        for up in self.upsample:
            rects, scores, _ = self.detector.run(crop, up, 0.0)
            if len(rects):
                rect = rects[int(np.argmax(scores))]
                shape = self.predictor(crop, rect)
                pts = np.array([[p.x + ox, p.y + oy] for p in shape.parts()], dtype=np.float32)
                return Detection(pts, len(rects))
        return Detection(None, 0)


def fan_hub_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


class FaceAlignmentDetector:
    """face-alignment's 2D FAN with its SFD face detector; offline only when the weights are cached."""

    name = "face-alignment"

    def __init__(self, device: str = "cpu"):
        if importlib.util.find_spec("face_alignment") is None:
            raise DetectorUnavailable("the face-alignment detector needs its package: pip install face-alignment "
                                      "(or use --detector dlib, which works offline)")
        hub = fan_hub_dir()
        missing = [name for name in FAN_WEIGHTS if not (hub / name).is_file()]
        if missing and os.environ.get("BENCH_FAN_DOWNLOAD") != "1":
            raise DetectorUnavailable(f"face-alignment weights {', '.join(missing)} are not in {hub}; download them "
                                      "there (adrianbulat.com/downloads/python-fan/), set BENCH_FAN_DOWNLOAD=1 to let "
                                      "face-alignment fetch them, or use --detector dlib")
        import face_alignment

        kwargs = {"device": device, "flip_input": False}
        if "compile" in inspect.signature(face_alignment.FaceAlignment.__init__).parameters:
            kwargs["compile"] = False
        enum = face_alignment.LandmarksType
        kind = getattr(enum, "TWO_D", None) or getattr(enum, "_2D")
        try:
            self.model = face_alignment.FaceAlignment(kind, **kwargs)
        except OSError as exc:   # URLError is an OSError: weights could not be fetched
            raise DetectorUnavailable(f"face-alignment could not load its weights ({' '.join(str(exc).split())}); "
                                      f"place {', '.join(FAN_WEIGHTS)} in {hub} or use --detector dlib") from None

    def detect(self, image: np.ndarray, region=None) -> Detection:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if region is not None:
            boxes = [np.array([*region[:4], 1.0], dtype=np.float32)]
            result = self.model.get_landmarks_from_image(image, detected_faces=boxes)
            faces = 1 if result else 0
        else:
            result, _, boxes = self.model.get_landmarks_from_image(image, return_bboxes=True)
            faces = 0 if result is None else len(result)
        if not result:
            return Detection(None, 0)
        best = 0
        if boxes is not None and len(boxes) > 1 and region is None:
            best = int(np.argmax([b[4] if len(b) > 4 else 0 for b in boxes]))
        return Detection(np.asarray(result[best], dtype=np.float32)[:, :2], faces)


def make_detector(name: str, device: str = "cpu"):
    if name == "dlib":
        return DlibDetector()
    if name == "face-alignment":
        return FaceAlignmentDetector(device)
    raise DetectorUnavailable(f"unknown detector {name!r}; expected one of: {', '.join(DETECTORS)}")
