import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from vitlab.config import DataConfig
from vitlab.data import BatchTransform, balanced_weights, epoch_order, load_data, read_image
from vitlab.data import folder as folder_module
from vitlab.data.augment import random_crop, random_hflip
from vitlab.data.splits import stratified_holdout
from vitlab.errors import VitlabError


def save_photo(path, array, mode=None):
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(path)


def test_stratified_holdout_is_stratified_seeded_and_capped():
    labels = torch.arange(1000) % 10
    train, val = stratified_holdout(labels, 0.1, 5000, seed=0)
    assert len(val) == 100 and len(train) == 900
    assert torch.bincount(labels[val]).tolist() == [10] * 10
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert torch.equal(val, stratified_holdout(labels, 0.1, 5000, seed=0)[1])
    assert not torch.equal(val, stratified_holdout(labels, 0.1, 5000, seed=1)[1])
    assert len(stratified_holdout(labels, 0.5, 50, seed=0)[1]) == 50


def test_random_crop_shifts_within_padding():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(64, 3, 1, 1)
    out = random_crop(x, 1, g)
    assert out.shape == x.shape
    # every crop is the padded image shifted by -1..1 pixel: the original appears, offset, in every output
    assert any(torch.equal(o, x[0]) for o in out)
    assert not all(torch.equal(o, x[0]) for o in out)
    zero_pad = random_crop(x, 0, g)
    assert torch.equal(zero_pad, x)


def test_random_hflip_flips_about_half():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(4, dtype=torch.uint8).reshape(1, 1, 1, 4).repeat(1000, 1, 1, 1)
    out = random_hflip(x, g)
    flipped = (out[:, 0, 0, 0] == 3).sum().item()
    assert 400 < flipped < 600
    assert torch.equal(out[out[:, 0, 0, 0] == 3][0, 0, 0], torch.tensor([3, 2, 1, 0], dtype=torch.uint8))


def test_batch_transform_normalises_and_resizes():
    t = BatchTransform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 8)
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = t(x)
    assert out.shape == (2, 3, 8, 8) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_epoch_order_covers_each_item_once_and_balanced_weights():
    g = torch.Generator().manual_seed(0)
    order = epoch_order(10, generator=g)
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    assert epoch_order(5).tolist() == list(range(5))
    labels = torch.tensor([0] * 90 + [1] * 10)
    drawn = labels[epoch_order(100, generator=g, weights=balanced_weights(labels))]
    assert 30 < (drawn == 1).sum().item() < 70  # about half, though class 1 is 10% of the data


@pytest.mark.parametrize("name,mode", [("chelsea", None), ("astronaut", "L"), ("rocket", "P"), ("coffee", "CMYK")])
def test_photos_of_any_size_and_mode_become_square_rgb(tmp_path, name, mode):
    path = tmp_path / f"{name}.{'jpg' if mode == 'CMYK' else 'png'}"
    save_photo(path, getattr(skdata, name)(), mode)
    img = read_image(path, 32)
    assert img.shape == (3, 32, 32) and img.dtype == torch.uint8


def test_sixteen_bit_and_alpha_images(tmp_path):
    deep = tmp_path / "deep.png"
    Image.fromarray((np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)).save(deep)
    rgba = tmp_path / "alpha.png"
    Image.fromarray(np.zeros((40, 50, 4), dtype=np.uint8)).save(rgba)
    assert read_image(deep, 16).shape == (3, 16, 16)
    assert read_image(rgba, 16).shape == (3, 16, 16)


def folder_with(tmp_path, small_cifar, extra=None):
    root = tmp_path / "data"
    shutil.copytree(small_cifar, root)
    if extra:
        extra(root)
    return root


def test_image_folder_loads_with_holdout_and_stats(small_cifar):
    data = load_data(DataConfig(source=str(small_cifar)), 32, seed=0, verbose=False)
    assert data.classes[:3] == ["airplane", "automobile", "bird"]
    assert len(data.train) == 360 and len(data.val) == 40 and len(data.test) == 100
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 32, 32)
    assert all(0.3 < m < 0.6 for m in data.mean) and all(0.15 < s < 0.35 for s in data.std)


def test_second_load_reads_the_cache(small_cifar, monkeypatch):
    cfg = DataConfig(source=str(small_cifar))
    first = load_data(cfg, 32, seed=0, verbose=False)
    monkeypatch.setattr(folder_module, "decode_files", lambda *a, **k: pytest.fail("decoded again"))
    second = load_data(cfg, 32, seed=0, verbose=False)
    assert torch.equal(first.test.images, second.test.images)


def test_small_images_stay_small_and_are_resized_on_the_device(small_cifar):
    data = load_data(DataConfig(source=str(small_cifar), val_fraction=0), 48, seed=0, verbose=False)
    assert data.train.images.shape[1:] == (3, 32, 32) and data.val is None  # no upsampled copies held
    x = BatchTransform(data.mean, data.std, 48)(data.train.images[:4])
    assert x.shape == (4, 3, 48, 48)
    smaller = load_data(DataConfig(source=str(small_cifar), val_fraction=0), 16, seed=0, verbose=False)
    assert smaller.train.images.shape[1:] == (3, 16, 16)  # larger images are decoded at the model's size


def test_val_folder_is_used_when_present(tmp_path, small_cifar):
    root = folder_with(tmp_path, small_cifar, lambda r: shutil.copytree(r / "test", r / "val"))
    data = load_data(DataConfig(source=str(root)), 32, seed=0, verbose=False)
    assert len(data.val) == 100 and len(data.train) == 400 and data.val_source == "val/ folder"


def test_missing_folder_and_missing_train(tmp_path):
    with pytest.raises(VitlabError, match="folder not found"):
        load_data(DataConfig(source=str(tmp_path / "nope")), 32, 0, verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitlabError, match="train/"):
        load_data(DataConfig(source=str(tmp_path / "empty")), 32, 0, verbose=False)


def test_empty_class_folder_is_an_error(tmp_path, small_cifar):
    root = folder_with(tmp_path, small_cifar, lambda r: (r / "train" / "zebra").mkdir())
    with pytest.raises(VitlabError, match="zebra: class folder holds no image files"):
        load_data(DataConfig(source=str(root)), 32, 0, verbose=False)


def test_test_class_missing_from_train_is_an_error(tmp_path, small_cifar):
    def add(r):
        shutil.copytree(r / "test" / "cat", r / "test" / "lion")

    root = folder_with(tmp_path, small_cifar, add)
    with pytest.raises(VitlabError, match="'lion'.*not among the training classes"):
        load_data(DataConfig(source=str(root)), 32, 0, verbose=False)


def test_single_class_is_an_error(tmp_path, small_cifar):
    root = tmp_path / "one"
    shutil.copytree(small_cifar / "train" / "cat", root / "train" / "cat")
    shutil.copytree(small_cifar / "test" / "cat", root / "test" / "cat")
    with pytest.raises(VitlabError, match="at least two"):
        load_data(DataConfig(source=str(root)), 32, 0, verbose=False)


def test_non_image_file_is_skipped_and_listed_or_fatal_when_strict(tmp_path, small_cifar, capsys):
    def add(r):
        (r / "train" / "cat" / "notes.jpg").write_text("this is not a jpeg")
        (r / "train" / "dog" / "empty.png").write_bytes(b"")

    root = folder_with(tmp_path, small_cifar, add)
    data = load_data(DataConfig(source=str(root)), 32, 0)
    out = capsys.readouterr().out
    assert "skipped 2 unreadable files" in out and "notes.jpg: not a readable image" in out
    assert "empty.png: empty file" in out
    assert len(data.train) + len(data.val) == 400
    with pytest.raises(VitlabError, match="notes.jpg: not a readable image.*strict"):
        load_data(DataConfig(source=str(root), strict=True, cache_dir=str(tmp_path / "c2")), 32, 0, verbose=False)


def test_cifar_offline_gives_one_clear_error(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        if kwargs.get("download"):
            raise OSError("network unreachable")
        raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.setitem(__import__("vitlab.data.cifar", fromlist=["DATASETS"]).DATASETS, "cifar10", offline)
    with pytest.raises(VitlabError, match="data.source=cifar10: not found.*download failed.*use a local ImageFolder"):
        load_data(DataConfig(source="cifar10", cache_dir=str(tmp_path)), 32, 0, verbose=False)
