"""The web demo over real HTTP on 127.0.0.1: the JSON API with good and hostile uploads and concurrent requests,
and the page in headless Chromium uploading a real photo."""

import base64
import io
import shutil
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image
from skimage import data as skdata

from vitlab.cli import main
from vitlab.inference import Classifier
from vitlab.serve import create_app

FAST = ["--no-report", "--model", "seed", "--set", "model.depth=1", "--batch-size", "64", "--epochs", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jpeg(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(small_cifar, tmp_path_factory):
    import uvicorn

    run = tmp_path_factory.mktemp("serve") / "run"
    assert main(["train", "--data", str(small_cifar), "--out", str(run), *FAST]) == 0
    clf = Classifier.from_checkpoint(run / "best.pt", "cpu")
    port = free_port()
    app = create_app(clf, max_upload_mb=1.0)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", clf
    srv.should_exit = True
    thread.join(timeout=10)


def post(url, data: bytes, name="photo.jpg", explain=False):
    return requests.post(
        f"{url}/predict",
        params={"explain": str(explain).lower()},
        files={"file": (name, data, "application/octet-stream")},
        timeout=60,
    )


def test_health_and_a_real_photo(server):
    url, clf = server
    health = requests.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["classes"] == clf.classes
    r = post(url, jpeg(skdata.chelsea()), explain=True)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert len(answer["predictions"]) == 5 and abs(sum(answer["probabilities"].values()) - 1) < 1e-4
    top = answer["predictions"][0]
    assert top["probability"] == max(answer["probabilities"].values()) and top["class"] in clf.classes
    png = base64.b64decode(answer["explanation"].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (32, 32)


@pytest.mark.parametrize(
    "name,payload,status,message",
    [
        ("notes.txt", b"not an image at all", 400, "not a readable image"),
        ("empty.png", b"", 400, "empty file"),
        ("huge.jpg", b"\xff" * (2 * 2**20), 413, "over the 1 MB upload limit"),
        (
            "bomb.png",
            b"\x89PNG\r\n\x1a\n"
            + struct.pack(">I", 13)
            + b"IHDR"
            + struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
            + struct.pack(">I", zlib.crc32(b"IHDR" + struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0))),
            400,
            "decompression-bomb limit",
        ),
    ],
)
def test_bad_uploads_get_a_4xx_with_one_line_and_the_server_keeps_serving(server, name, payload, status, message):
    url, _ = server
    r = post(url, payload, name=name)
    assert r.status_code == status and message in r.json()["detail"] and "\n" not in r.json()["detail"]
    assert requests.get(f"{url}/health", timeout=10).status_code == 200


def test_twenty_concurrent_requests_are_all_answered_alike(server):
    url, _ = server
    photo = jpeg(skdata.astronaut())
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: post(url, photo), range(20)))
    assert all(r.status_code == 200 for r in answers)
    assert len({r.json()["predictions"][0]["class"] for r in answers}) == 1


@pytest.mark.browser
def test_page_in_headless_chromium_classifies_an_uploaded_photo(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, clf = server
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(jpeg(skdata.chelsea()))
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        driver.get(url + "/")
        driver.find_element(By.ID, "file").send_keys(str(photo))
        top = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, ".card .top"))
        assert top.text.split(" (")[0] in clf.classes
        overlay = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, ".card img.overlay"))
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay) == 32
        shot = tmp_path / "page.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    with Image.open(shot) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert img.size[0] >= 800 and colours is not None and len(colours) > 50  # the page drew photo, bars and overlay
