"""Real inputs for the int8 and decomposition measurements of the shared models: calibration
sets from ../shared/calib (photos, rendered text, captchas) and *separate* evaluation sets
rendered here with Pillow (other strings, fonts, sizes, noise), plus each model's task answer.

    python bench/int8_data.py OUTDIR       # writes OUTDIR/<model>_calib.npz, _eval.npz

Models and their preprocessing (../shared/models/README.md):
  ppocr_cls   x [N,3,48,192]  text line, height 48, width kept to 192, (v/255-0.5)/0.5
  ppocr_det   x [N,3,320,320] page or photo resized, (v/255-0.5)/0.5
  captcha_crnn image [N,3,60,160] BGR 0..255
  ppocr_rec   x [N,3,48,320]  PP-OCRv4 text recognizer, from the rapidocr_onnxruntime wheel
              (`pip install --no-deps rapidocr_onnxruntime==1.4.4`: a trained model from a
              package registry, read from the installed package, never downloaded here)
"""
from __future__ import annotations

import string
import sys
from pathlib import Path

import numpy as np

CALIB = Path(__file__).resolve().parents[2] / "shared" / "calib"
MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
FILES = {"ppocr_cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
         "ppocr_det": "ch_PP-OCRv4_det_infer.onnx", "captcha_crnn": "captcha_crnn.onnx"}
INPUT = {"ppocr_cls": ("x", (1, 3, 48, 192)), "ppocr_det": ("x", (1, 3, 320, 320)),
         "captcha_crnn": ("image", (1, 3, 60, 160)), "ppocr_rec": ("x", (1, 3, 48, 320))}
PACKAGED = {"ppocr_rec": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx",
                          "pip install --no-deps rapidocr_onnxruntime==1.4.4")}
CRNN_CLASSES = string.digits + string.ascii_uppercase      # blank = 36


def model_path(name: str) -> Path:
    if name in PACKAGED:
        import importlib.util
        package, inside, how = PACKAGED[name]
        spec = importlib.util.find_spec(package)
        path = Path(spec.submodule_search_locations[0]) / inside if spec else None
        if path is None or not path.is_file():
            raise SystemExit(f"{name}: the model comes from the {package} wheel: {how}")
        return path
    return MODELS / FILES[name]


def _images(folder: str):
    from PIL import Image
    return [Image.open(p).convert("RGB") for p in sorted((CALIB / folder).glob("*.png"))]


def _ppocr(img) -> np.ndarray:
    x = np.asarray(img, np.float32).transpose(2, 0, 1)
    return (x / 255.0 - 0.5) / 0.5


def _line(img, h=48, w=192):
    """PP-OCR's classifier input: height h, width by aspect ratio (at most w), padded."""
    from PIL import Image
    ratio = img.width / img.height
    rw = max(1, min(w, int(np.ceil(h * ratio))))
    out = np.zeros((3, h, w), np.float32)
    out[:, :, :rw] = _ppocr(img.resize((rw, h), Image.BILINEAR))
    return out


def _square(img, size=320):
    from PIL import Image
    return _ppocr(img.resize((size, size), Image.BILINEAR))


def _bgr(img, h=60, w=160):
    from PIL import Image
    x = np.asarray(img.resize((w, h), Image.BILINEAR), np.float32)[:, :, ::-1]
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def calibration(name: str) -> np.ndarray:
    """[S, ...] calibration samples from ../shared/calib."""
    if name in ("ppocr_cls", "ppocr_rec"):
        texts = _images("text")
        lines = [im for im in texts if im.height < 100]
        pages = [im.crop((0, y, im.width, y + 48)) for im in texts if im.height >= 100
                 for y in (40, 200)]
        width = INPUT[name][1][3]
        return np.stack([_line(im, w=width) for im in lines + pages])
    if name == "ppocr_det":
        return np.stack([_square(im) for im in _images("text") + _images("photos")])
    return np.stack([_bgr(im) for im in _images("captcha")])


_WORDS = ["Invoice 2024-11-07 total 1,280.00 EUR", "Shipping address: 42 Harbour Road",
          "The quick brown fox jumps over", "Temperature 23.5 C humidity 41%",
          "Order #88213 confirmed", "Please sign and return by Friday",
          "Model XR-750 serial 0093-AB", "Meeting moved to room 4B at 3pm",
          "Batch 17: passed inspection", "Call +49 30 1234 5678 after 9",
          "Net weight 500 g best before 12/26", "Chapter 7 - Results and discussion"]


def _font(size: int, k: int):
    from PIL import ImageFont
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                 "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
                 "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"):
        if k % 3 == 0 and Path(path).exists():
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                pass
        k += 1
    return ImageFont.load_default(size=size)


def _render_line(text: str, k: int, flip: bool):
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(100 + k)
    size = int(rng.integers(22, 34))
    font = _font(size, k)
    w = int(font.getlength(text)) + 16 if hasattr(font, "getlength") else 12 * len(text)
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 70, 3))
    img = Image.new("RGB", (w, size + 14), bg)
    ImageDraw.Draw(img).text((8, 5), text, fill=fg, font=font)
    return img.rotate(180) if flip else img


def _render_page(k: int):
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(200 + k)
    img = Image.new("RGB", (640, 640), tuple(int(v) for v in rng.integers(215, 256, 3)))
    d = ImageDraw.Draw(img)
    y = int(rng.integers(20, 60))
    while y < 600:
        size = int(rng.integers(18, 36))
        text = _WORDS[int(rng.integers(len(_WORDS)))]
        d.text((int(rng.integers(10, 120)), y), text, fill=(20, 20, 30), font=_font(size, k + y))
        y += size + int(rng.integers(12, 40))
    return img


def _render_captcha(text: str, k: int):
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(300 + k)
    img = Image.new("RGB", (160, 60), tuple(int(v) for v in rng.integers(180, 256, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(4):      # noise lines
        d.line([tuple(int(v) for v in rng.integers(0, 160, 2)),
                tuple(int(v) for v in rng.integers(0, 60, 2))],
               fill=tuple(int(v) for v in rng.integers(60, 200, 3)), width=1)
    x = 8
    for ch in text:
        size = int(rng.integers(28, 38))
        d.text((x, int(rng.integers(4, 16))), ch, font=_font(size, k + x),
               fill=tuple(int(v) for v in rng.integers(0, 90, 3)))
        x += int(size * 0.62) + int(rng.integers(0, 5))
    return img


def evaluation(name: str) -> np.ndarray:
    """[S, ...] evaluation inputs rendered here (none of them in the calibration set)."""
    if name == "ppocr_cls":
        return np.stack([_line(_render_line(t, k, flip=k % 2 == 1))
                         for k, t in enumerate(_WORDS[:8] * 2)][:16])
    if name == "ppocr_det":
        return np.stack([_square(_render_page(k)) for k in range(8)])
    if name == "ppocr_rec":
        return np.stack([_line(_render_line(t, k, flip=False), w=320)
                         for k, t in enumerate(_WORDS)])
    rng = np.random.default_rng(7)
    texts = ["".join(rng.choice(list(CRNN_CLASSES), int(rng.integers(4, 7)))) for _ in range(12)]
    return np.stack([_bgr(_render_captcha(t, k)) for k, t in enumerate(texts)])


def ctc_indices(probs: np.ndarray) -> list[int]:
    """PP-OCR recognizer [1, T, classes] -> the greedy CTC label sequence (blank 0)."""
    best = probs[0].argmax(axis=-1)
    return [int(c) for i, c in enumerate(best) if c != 0 and (i == 0 or c != best[i - 1])]


def ctc_greedy(logits: np.ndarray) -> list[str]:
    """CRNN [T, N, 37] -> decoded strings (collapse repeats, drop blank 36)."""
    best = logits.argmax(axis=-1)                 # [T, N]
    out = []
    for n in range(best.shape[1]):
        prev, s = -1, []
        for c in best[:, n]:
            if c != prev and c != 36:
                s.append(CRNN_CLASSES[c])
            prev = c
        out.append("".join(s))
    return out


def answer(name: str, outputs: list[np.ndarray]):
    """The task answer of one sample's outputs: class, decoded text, or the binary map."""
    y = outputs[0]
    if name == "ppocr_cls":
        return int(np.argmax(y.reshape(-1)))
    if name == "captcha_crnn":
        return ctc_greedy(y)[0]
    if name == "ppocr_rec":
        return ctc_indices(y)
    return (y > 0.3)


def same_answer(name: str, a, b) -> bool:
    """Whether two answers agree (detection maps: IoU of the text pixels >= 0.9)."""
    if name != "ppocr_det":
        return a == b
    inter, union = np.logical_and(a, b).sum(), np.logical_or(a, b).sum()
    return union == 0 or inter / union >= 0.9


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, (inp, _) in INPUT.items():
        # a leading sample axis before the model's [1, 3, H, W]
        np.savez(out / f"{name}_calib.npz", **{inp: calibration(name)[:, None]})
        np.savez(out / f"{name}_eval.npz", **{inp: evaluation(name)[:, None]})
        print(name, calibration(name).shape, evaluation(name).shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
