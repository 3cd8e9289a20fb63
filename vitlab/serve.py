"""``vitlab serve``: a local web page and JSON API on a checkpoint (FastAPI + uvicorn, ``pip install 'vitlab[serve]'``).

FastAPI because it is the well-kept standard for a small typed JSON API, validates uploads for us, and runs
synchronous endpoints in a thread pool (concurrent requests are answered while the model, behind a lock, serves one
batch at a time); Gradio would bring a large UI framework for one page. ``GET /`` is the page (drop or pick photos:
top-k bars and the explanation overlay), ``POST /predict`` takes a multipart ``file`` and returns the classes and
probabilities (``?explain=true`` adds a PNG data URL of the grad-rollout overlay), ``GET /health`` says it is up.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at run time, and the
types they name are imported inside ``create_app`` (FastAPI is an optional extra).
"""

import base64
import io
import threading
from importlib import resources

import numpy as np
import torch
from PIL import Image

from vitlab.analysis.explain import explain
from vitlab.data.images import ImageError, decode_bytes, fit_image
from vitlab.errors import VitlabError
from vitlab.inference import Classifier

MAX_UPLOAD_MB = 10.0


def overlay_png(image: torch.Tensor, heat: torch.Tensor) -> str:
    """uint8 (3, H, W) image under an (H, W) heatmap in [0, 1], as a PNG data URL."""
    from matplotlib import colormaps

    colours = colormaps["inferno"](heat.numpy())[..., :3]  # (H, W, 3) in [0, 1]
    mixed = 0.45 * image.permute(1, 2, 0).numpy() / 255 + 0.55 * colours
    buf = io.BytesIO()
    Image.fromarray((mixed * 255).round().astype(np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def classify(clf: Classifier, data: bytes, name: str, top_k: int, with_explanation: bool) -> dict:
    """The JSON answer for one uploaded file; raises ImageError (a 400) for what is not a usable image."""
    decoded = decode_bytes(data, name)
    try:
        img = fit_image(decoded, clf.config.model.img_size)
    except (RuntimeError, ValueError, MemoryError) as e:
        raise ImageError(f"{name}: cannot be resized ({type(e).__name__}: {e})") from None
    probs = clf.predict(img[None])[0]
    answer: dict = {
        "predictions": [
            {"class": clf.classes[i], "probability": float(probs[i])} for i in probs.argsort(descending=True)[:top_k]
        ],
        "probabilities": dict(zip(clf.classes, map(float, probs))),
    }
    if with_explanation:
        _, heat = explain(clf.model, clf.transform(img[None].to(clf.device)), "grad-rollout")
        answer["explanation"] = overlay_png(img, heat[0])
    return answer


def create_app(clf: Classifier, *, top_k: int = 5, max_upload_mb: float = MAX_UPLOAD_MB):
    """The FastAPI application serving ``clf``."""
    try:
        from fastapi import FastAPI, File, HTTPException, UploadFile
        from fastapi.responses import HTMLResponse
    except ImportError:
        raise VitlabError("vitlab serve: needs FastAPI and uvicorn (pip install 'vitlab[serve]')") from None
    app = FastAPI(title="vitlab", description=f"{len(clf.classes)}-class ViT classifier")
    lock = threading.Lock()  # one inference at a time: the model and its explanation hooks are shared
    limit = int(max_upload_mb * 2**20)
    page = resources.files("vitlab").joinpath("templates/serve.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "classes": clf.classes, "model": clf.config.model.preset, "tta": clf.tta}

    @app.post("/predict")
    def predict(file: UploadFile = File(...), explain: bool = False) -> dict:  # noqa: B008 (FastAPI's idiom)
        data = file.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"{file.filename}: over the {max_upload_mb:g} MB upload limit")
        try:
            with lock:
                return classify(clf, data, file.filename or "upload", min(top_k, len(clf.classes)), explain)
        except ImageError as e:
            raise HTTPException(400, str(e)) from None

    return app


def serve(
    checkpoint: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    tta: str | None = None,
    max_upload_mb: float = MAX_UPLOAD_MB,
) -> None:
    try:
        import uvicorn
    except ImportError:
        raise VitlabError("vitlab serve: needs FastAPI and uvicorn (pip install 'vitlab[serve]')") from None
    clf = Classifier.from_checkpoint(checkpoint, device, tta=tta)
    app = create_app(clf, max_upload_mb=max_upload_mb)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"vitlab: warning: serving on {host}: anyone who can reach this machine can use the model")
    print(f"serve: {checkpoint} ({len(clf.classes)} classes) on http://{host}:{port}/  (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
