"""vnca_tutorial.own_images: a folder of image files as a VNCA's data (book/13_own_images.md), and its split."""
import numpy as np
import pytest
import torch
from PIL import Image

from vnca_tutorial import get_preset
from vnca_tutorial.checks import check_images
from vnca_tutorial.model import VNCA
from vnca_tutorial import own_images
from vnca_tutorial.own_images import folder_split, folder_splits, image_files, load_image_folder, split


def save(folder, name, array, mode=None):
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(folder / name)


@pytest.fixture
def folder(tmp_path):
    """Five image files of different kinds and shapes, and one in a subfolder."""
    wide = np.zeros((8, 12, 3), np.uint8)
    wide[:, :2] = (255, 0, 0)                                # left 2 columns red: cropped away
    wide[:, 2:10] = (0, 255, 0)                              # the centre 8 columns green
    wide[:, 10:] = (0, 0, 255)                               # right 2 columns blue: cropped away
    save(tmp_path, "b_wide.png", wide)
    clear = np.zeros((8, 8, 4), np.uint8)                    # fully transparent black: white after compositing
    save(tmp_path, "a_clear.png", clear, "RGBA")
    save(tmp_path, "c_grey.png", np.full((8, 8), 200), "L")
    Image.fromarray(np.full((8, 8, 3), 30, np.uint8)).save(tmp_path / "d_dark.JPG", quality=100)
    save(tmp_path, "e_anim.gif", np.full((8, 8, 3), 255))
    (tmp_path / "sub").mkdir()
    save(tmp_path / "sub", "ignored.png", np.zeros((8, 8, 3)))
    return tmp_path


def test_files_are_the_images_directly_in_the_folder_sorted_by_name(folder):
    (folder / "._a_clear.png").write_bytes(b"macOS metadata, not an image")      # hidden: left out
    (folder / "notes.txt").write_text("not an image")                           # another kind: said
    with pytest.warns(UserWarning, match=r"left out 1 file\(s\) of other kinds \(\.txt\)"):
        files = image_files(folder)
    assert [p.name for p in files] == ["a_clear.png", "b_wide.png", "c_grey.png", "d_dark.JPG", "e_anim.gif"]


def test_photos_are_turned_upright_as_their_exif_says(tmp_path):
    stored = np.zeros((8, 16, 3), np.uint8)                   # stored landscape: left half dark, right white
    stored[:, 8:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6                                          # orientation 6: show it turned 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif, quality=100)
    img = load_image_folder(tmp_path, size=8).images[0, 0].float()       # upright: top dark, bottom white
    assert (img[:3] < 40).all() and (img[5:] > 215).all()


def test_16_bit_greyscale_is_scaled_and_float_images_are_refused(tmp_path):
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    img = load_image_folder(tmp_path, size=8).images
    assert (img == 128).all()                                 # 32768 / 65535 * 255 = 127.5 -> 128, not clipped
    (tmp_path / "deep.png").unlink()
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="float.tif holds floating-point pixels"):
        load_image_folder(tmp_path, size=8)


def test_rgb_images_are_uint8_cropped_to_the_centre_and_on_white(folder):
    data = load_image_folder(folder, size=8)
    assert data.images.shape == (5, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.names == ("a_clear.png", "b_wide.png", "c_grey.png", "d_dark.JPG", "e_anim.gif")
    assert (data.images[0] == 255).all()                               # transparent -> white
    assert data.images[1].flatten(1).float().mean(1).tolist() == pytest.approx([0, 255, 0], abs=2)
    assert (data.images[2] == 200).all()                               # grey stays grey in all 3 channels
    assert (data.images[3].float() - 30).abs().max() <= 3              # JPEG: within its rounding
    assert not data.comparable_with_paper and data.labels is None
    check_images(data.images, 3, 8, "dlogistic")                       # what the colour likelihood needs


def test_resizing_keeps_the_picture(tmp_path):
    left_dark = np.full((32, 32, 3), 255, np.uint8)
    left_dark[:, :16] = 0
    save(tmp_path, "half.png", left_dark)
    img = load_image_folder(tmp_path, size=8).images[0, 0].float()     # (8, 8)
    assert (img[:, :3] < 20).all() and (img[:, 5:] > 235).all()
    # shrinking averages areas: a 1-pixel checkerboard becomes grey, not a sample of its pixels
    checkers = np.indices((32, 32)).sum(0) % 2 * 255
    save(tmp_path, "half.png", np.repeat(checkers[..., None], 3, axis=2))
    img = load_image_folder(tmp_path, size=8).images[0, 0].float()
    assert (img - 127.5).abs().max() <= 0.5
    # enlarging interpolates: a black/white pair of pixels becomes a ramp with grey between
    save(tmp_path, "half.png", np.array([[[0] * 3, [255] * 3]] * 2))
    row = load_image_folder(tmp_path, size=8).images[0, 0, 0].float()       # (8,)
    assert row[0] < 30 and row[-1] > 225 and ((row > 60) & (row < 195)).any() and (row.diff() >= 0).all()


def test_binary_images_threshold_the_grey_level_and_invert_turns_it_over(folder):
    data = load_image_folder(folder, size=8, binary=True)
    assert data.images.shape == (5, 1, 8, 8) and data.images.dtype == torch.float32
    # grey levels: white 1.0, green 0.587, grey 200/255 = 0.78, dark 30/255 = 0.12, white 1.0
    assert data.images.flatten(1).mean(1).tolist() == [1, 1, 1, 0, 1]
    assert load_image_folder(folder, 8, binary=True, threshold=0.7).images.flatten(1).mean(1).tolist() == [
        1, 0, 1, 0, 1]
    inverted = load_image_folder(folder, 8, binary=True, invert=True)
    assert inverted.images.flatten(1).mean(1).tolist() == [0, 0, 0, 1, 0]
    check_images(data.images, 1, 8, "bernoulli")


def test_a_model_of_the_right_size_takes_the_folder(folder):
    config = get_preset("celeba_doubling_cpu").replace(name="own", dataset="folder", image_size=8, n_doublings=2,
                                                       z_dim=16, hidden=16, n_blocks=1, steps_per_stage=2,
                                                       encoder_channels=4)
    model = VNCA(config)
    with torch.no_grad():
        elbo = model.elbo(load_image_folder(folder, size=8).images).elbo         # (5,)
    assert elbo.shape == (5,) and torch.isfinite(elbo).all()


@pytest.mark.parametrize("size", [0, 1, 2.5, True, "32"])
def test_bad_sizes_are_refused(folder, size):
    with pytest.raises(ValueError, match="size must be an integer >= 2"):
        load_image_folder(folder, size=size)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5, 2.0])
def test_bad_thresholds_are_refused(folder, threshold):
    with pytest.raises(ValueError, match="threshold is a grey level"):
        load_image_folder(folder, size=8, binary=True, threshold=threshold)


def test_a_missing_or_empty_folder_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder .*nowhere"):
        load_image_folder(tmp_path / "nowhere", size=8)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no image files"), pytest.warns(UserWarning, match="left out"):
        load_image_folder(tmp_path, size=8)


def test_a_file_that_is_not_an_image_is_named(tmp_path):
    save(tmp_path, "good.png", np.zeros((8, 8, 3)))
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="broken.png is not an image PIL can read"):
        load_image_folder(tmp_path, size=8)


def test_split_is_random_disjoint_complete_and_reproducible(tmp_path):
    for i in range(20):
        save(tmp_path, f"{i:02d}.png", np.full((4, 4, 3), 10 * i))
    data = load_image_folder(tmp_path, size=4)
    train, test = split(data, 5, seed=0)
    assert len(train) == 15 and len(test) == 5
    assert set(train.names) | set(test.names) == set(data.names) and not set(train.names) & set(test.names)
    assert test.names != data.names[:5] and test.names != data.names[-5:]    # not the first or last five
    assert list(train.names) == sorted(train.names) and list(test.names) == sorted(test.names)  # folder order
    for part in (train, test):                                                 # images travel with names
        for name, image in zip(part.names, part.images):
            assert image.equal(data.images[data.names.index(name)])
    assert split(data, 5, seed=0)[1].names == test.names
    assert split(data, 5, seed=1)[1].names != test.names
    assert "[test: 5 of 20, seed 0]" in test.source and "[train: 15 of 20, seed 0]" in train.source


@pytest.mark.parametrize("n_test", [0, 20, 25, -1, 2.0, True])
def test_split_refuses_a_test_set_that_leaves_nothing(tmp_path, n_test):
    for i in range(20):
        save(tmp_path, f"{i:02d}.png", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="n_test must be an integer from 1 to 19"):
        split(load_image_folder(tmp_path, size=4), n_test)


def test_folder_splits_partition_the_folder_the_same_way_every_time(tmp_path):
    for i in range(30):
        save(tmp_path, f"{i:02d}.png", np.full((4, 4, 3), 8 * i))
    names = {w: folder_split(tmp_path, w, size=4).names for w in ("train", "test", "fit", "valid")}
    assert len(names["test"]) == 3 and len(names["train"]) == 27                # a tenth held out
    assert len(names["valid"]) == 2 and len(names["fit"]) == 25                 # a tenth of train
    assert set(names["train"]) | set(names["test"]) == {f"{i:02d}.png" for i in range(30)}
    assert not set(names["train"]) & set(names["test"])
    assert set(names["fit"]) | set(names["valid"]) == set(names["train"]) and not set(names["fit"]) & set(names["valid"])
    assert folder_split(tmp_path, "test", size=4).names == names["test"]        # the same on every call
    assert names["test"] == split(load_image_folder(tmp_path, size=4), 3, seed=0)[1].names   # seed 0
    assert "[valid: 2 of 27, seed 1]" in folder_split(tmp_path, "valid", size=4).source
    binary = folder_split(tmp_path, "train", size=4, binary=True)
    assert binary.images.shape == (27, 1, 4, 4)


def test_folder_splits_reads_the_folder_once_for_all_the_splits(tmp_path, monkeypatch):
    for i in range(30):
        save(tmp_path, f"{i:02d}.png", np.full((4, 4, 3), 8 * i))
    reads = []
    real = own_images._square_rgba
    monkeypatch.setattr(own_images, "_square_rgba", lambda path, size: reads.append(path) or real(path, size))
    train, valid, test = folder_splits(tmp_path, ("train", "valid", "test"), size=4)
    assert len(reads) == 30                                                     # each file once
    for part, which in ((train, "train"), (valid, "valid"), (test, "test")):
        alone = folder_split(tmp_path, which, size=4)
        assert part.names == alone.names and torch.equal(part.images, alone.images) and part.source == alone.source
    # binary and invert reach the images: dark files (the first ones) are the 1s when inverted
    light, dark = (folder_split(tmp_path, "train", size=4, binary=True, invert=flag) for flag in (False, True))
    assert torch.equal(dark.images, 1 - light.images) and "binary, inverted" in dark.source
    assert dark.images[0].mean() == 1 and light.images[-1].mean() == 1


def test_folder_split_refuses_unknown_splits_and_tiny_folders(tmp_path):
    for i in range(3):
        save(tmp_path, f"{i}.png", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        folder_split(tmp_path, "validation", size=4)
    with pytest.raises(ValueError, match="unknown split '\\(none named\\)'"):
        folder_splits(tmp_path, (), size=4)
    with pytest.raises(ValueError, match="holds 3 images: a folder needs at least 4"):
        folder_split(tmp_path, "train", size=4)


def test_grey_levels_weigh_the_colours_as_the_eye_does(tmp_path):
    """ITU-R 601 luma: red counts 0.299, green 0.587, blue 0.114 (pure blue is dark, pure green bright)."""
    for name, colour in (("r.png", (255, 0, 0)), ("g.png", (0, 255, 0)), ("b.png", (0, 0, 255))):
        save(tmp_path, name, np.tile(np.array(colour, np.uint8), (4, 4, 1)))
    for threshold, expected in ((0.1, [1, 1, 1]), (0.2, [1, 1, 0]), (0.35, [0, 1, 0]), (0.55, [0, 1, 0]),
                                (0.6, [0, 0, 0])):
        binary = load_image_folder(tmp_path, size=4, binary=True, threshold=threshold)   # files b, g, r
        got = dict(zip(binary.names, binary.images.flatten(1).mean(1).tolist()))
        assert [got["r.png"], got["g.png"], got["b.png"]] == expected, (threshold, got)


def test_32_bit_integer_images_within_16_bits_are_scaled_and_others_refused(tmp_path):
    Image.fromarray(np.array([[0, 0, 65535, 65535]] * 4, np.int32), "I").save(tmp_path / "top.tif")
    assert load_image_folder(tmp_path, size=4).images[0, 0, 0].tolist() == [0, 0, 255, 255]   # both ends in
    for value in (65536, -1):
        Image.fromarray(np.full((4, 4), value, np.int32), "I").save(tmp_path / "top.tif")
        with pytest.raises(ValueError, match="outside 0..65535"):
            load_image_folder(tmp_path, size=4)


def test_the_smallest_sizes_and_splits_that_are_allowed(tmp_path):
    for i in range(4):
        save(tmp_path, f"{i}.png", np.full((4, 4, 3), 60 * i))
    assert load_image_folder(tmp_path, size=2).images.shape == (4, 3, 2, 2)
    data = load_image_folder(tmp_path, size=4)
    assert [len(part) for part in split(data, 1)] == [3, 1] and [len(part) for part in split(data, 3)] == [1, 3]
    assert split(data, 2)[1].names == split(data, 2, seed=0)[1].names        # the default seed is 0
    sizes = {w: len(folder_split(tmp_path, w, size=4)) for w in ("train", "test", "fit", "valid")}
    assert sizes == {"train": 3, "test": 1, "fit": 2, "valid": 1}           # at least one image held out
