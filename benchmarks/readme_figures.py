"""Redraw the README's pictures from a checkpoint: docs/explain.png (every explanation method on three
scikit-image photos) and docs/serve.png (the web demo in headless Chromium after uploading the cat photo).

    python benchmarks/readme_figures.py runs/c10-60min/best.pt

The README's copies were drawn from the 60-minute preset's run (configs/cifar10-cpu-60min.yaml, seed 0). The
screenshot needs Debian's chromium and chromium-driver and the dev extras (selenium, FastAPI, uvicorn).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skdata  # noqa: E402

from vitlab.analysis.explain import METHODS, explain  # noqa: E402
from vitlab.inference import Classifier  # noqa: E402

PHOTOS = {"cat": skdata.chelsea, "coffee": skdata.coffee, "astronaut": skdata.astronaut}


def explain_figure(clf: Classifier, photos: dict[str, Path], out: Path) -> None:
    fig, axes = plt.subplots(len(photos), 1 + len(METHODS), figsize=(2.1 * (1 + len(METHODS)), 2.3 * len(photos)))
    for r, (name, path) in enumerate(photos.items()):
        img = clf.read(path)
        for c, method in enumerate(("image", *METHODS)):
            ax = axes[r, c]
            ax.axis("off")
            ax.imshow(img.permute(1, 2, 0).numpy())
            if method == "image":
                p = clf.predict(img[None])[0]
                k = int(p.argmax())
                ax.set_title(f"{name}: {clf.classes[k]} {p[k]:.0%}", fontsize=9)
                continue
            _, heat = explain(clf.model, clf.transform(img[None].to(clf.device)), method)
            ax.imshow(heat[0].numpy(), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
            ax.set_title(method, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90, bbox_inches="tight")


def serve_screenshot(clf: Classifier, photo: Path, out: Path, port: int = 8765) -> None:
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from vitlab.serve import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(clf), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,760"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")), options=options
    )
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        driver.find_element(By.ID, "file").send_keys(str(photo))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, ".card img.overlay"))
        time.sleep(1)  # the overlay image decodes
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        server.should_exit = True
    with Image.open(out) as shot:
        shot.crop((0, 0, shot.width, 470)).save(out, optimize=True)  # the page's content, without the empty rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default="docs", help="folder for explain.png and serve.png (default %(default)s)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clf = Classifier.from_checkpoint(args.checkpoint, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        photos = {}
        for name, load in PHOTOS.items():
            photos[name] = Path(tmp) / f"{name}.jpg"
            Image.fromarray(load()).save(photos[name])
        explain_figure(clf, photos, out / "explain.png")
        serve_screenshot(clf, photos["cat"], out / "serve.png")
    print(f"wrote {out / 'explain.png'} and {out / 'serve.png'}")


if __name__ == "__main__":
    main()
