"""Damaged intermediates of the glitch and anomaly branches: their readers find the damage by
the checksum written with them, name the file in one line and move it aside, so the rule that
made it regenerates it on the next run; nothing downstream is deleted, and an intact file of
the wrong kind is refused by name but left where it is.

The damage is bit rot inside a dataset's stored bytes (located with h5py, so the flip lands in
the data and not in metadata) or a truncation, each with the modification time kept, so
Snakemake would not notice it by itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from twinflow.core.checkpoint import CheckpointError
from twinflow.core.io import CorruptFileError
from twinflow.core.settings import ConfigError

QUIET = {"log": lambda *a: None}


def keeping_mtime(path: Path, damage) -> None:
    stat = path.stat()
    damage(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def flip_bytes_in_dataset(path: Path, dataset: str) -> None:
    """Invert 16 bytes at the start of ``dataset``'s stored data (its first chunk)."""
    with h5py.File(path, "r") as f:
        data = f[dataset]
        offset = data.id.get_offset()
        if offset is None:  # chunked
            offset = data.id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        chunk = f.read(16)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in chunk))


def flip_bytes_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def assert_moved_aside(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert not path.exists() and path.with_name(path.name + ".corrupt").is_file()


@pytest.fixture(scope="module")
def models(tmp_path_factory, glitch_images, anomaly_events):
    """A VAE trained for one epoch and a sideband flow, on the test configuration's data."""
    from twinflow.anomaly.scan import train_sideband_flow
    from twinflow.anomaly.settings import sideband_flow_settings
    from twinflow.glitch.settings import stage_settings
    from twinflow.glitch.vae import train_vae

    folder = tmp_path_factory.mktemp("models")
    glitch, _, images = glitch_images
    vae = {**stage_settings(glitch, "train-vae"), "epochs": 1}
    train_vae(vae, images, folder / "vae.pt", folder / "vae.csv", folder / "vae.png", **QUIET)
    anomaly, events = anomaly_events
    train_sideband_flow(sideband_flow_settings(anomaly, 0), events, folder / "flow.pt")
    return folder


@pytest.mark.parametrize("damage", ["bit-rot", "truncated"])
def test_a_damaged_glitch_shard_is_moved_aside_before_any_image(tmp_path, glitch_images, damage):
    from twinflow.glitch.qtransform import build_images
    from twinflow.glitch.settings import stage_settings

    glitch, shards, _ = glitch_images
    copies = [Path(shutil.copy2(s, tmp_path / s.name)) for s in shards]
    keeping_mtime(
        copies[1],
        (lambda p: flip_bytes_in_dataset(p, "strain")) if damage == "bit-rot" else truncate,
    )
    settings = stage_settings(glitch, "images")
    with pytest.raises(CorruptFileError, match="glitch shard") as err:
        build_images(settings["data"], settings["qtransform"], copies, tmp_path / "images.h5")
    assert_moved_aside(err, copies[1])
    assert copies[0].is_file() and not (tmp_path / "images.h5").exists()


def test_damaged_glitch_images_are_moved_aside_and_the_model_kept(tmp_path, glitch_images, models):
    from twinflow.glitch.settings import stage_settings
    from twinflow.glitch.vae import train_vae

    glitch, _, images = glitch_images
    images = Path(shutil.copy2(images, tmp_path / "images.h5"))
    model = Path(shutil.copy2(models / "vae.pt", tmp_path / "vae.pt"))
    before = model.read_bytes()
    keeping_mtime(images, lambda p: flip_bytes_in_dataset(p, "strain"))
    settings = {**stage_settings(glitch, "train-vae"), "epochs": 1}
    with pytest.raises(CorruptFileError, match="glitch images.*corrupt") as err:
        train_vae(settings, images, model, tmp_path / "m.csv", tmp_path / "m.png", **QUIET)
    assert_moved_aside(err, images)
    assert model.read_bytes() == before  # the previous model stays until a new one is written


def test_a_damaged_glitch_model_is_moved_aside(tmp_path, models):
    from twinflow.glitch.vae import load_vae

    model = Path(shutil.copy2(models / "vae.pt", tmp_path / "model.pt"))
    keeping_mtime(model, flip_bytes_in_the_middle)
    with pytest.raises(CheckpointError) as err:
        load_vae(model)
    assert_moved_aside(err, model)


@pytest.mark.parametrize("damage", ["bit-rot", "truncated"])
def test_damaged_anomaly_events_are_moved_aside(tmp_path, anomaly_events, damage):
    from twinflow.anomaly.scan import train_sideband_flow
    from twinflow.anomaly.settings import sideband_flow_settings

    anomaly, events = anomaly_events
    events = Path(shutil.copy2(events, tmp_path / "events.h5"))
    keeping_mtime(
        events,
        (lambda p: flip_bytes_in_dataset(p, "data/x")) if damage == "bit-rot" else truncate,
    )
    with pytest.raises(CorruptFileError, match="anomaly events") as err:
        train_sideband_flow(sideband_flow_settings(anomaly, 0), events, tmp_path / "flow.pt")
    assert_moved_aside(err, events)
    assert not (tmp_path / "flow.pt").exists()


def test_a_damaged_anomaly_flow_is_moved_aside(tmp_path, models):
    from twinflow.anomaly.flows import ConditionalFlow

    model = Path(shutil.copy2(models / "flow.pt", tmp_path / "sideband_flow.pt"))
    keeping_mtime(model, flip_bytes_in_the_middle)
    with pytest.raises(CheckpointError) as err:
        ConditionalFlow.load(model)
    assert_moved_aside(err, model)


def test_a_damaged_anomaly_method_result_is_moved_aside(tmp_path, anomaly_events):
    from twinflow.anomaly.gather import read_method_result
    from twinflow.anomaly.scan import run_method
    from twinflow.anomaly.settings import method_settings

    anomaly, events = anomaly_events
    out = tmp_path / "supervised.h5"
    run_method(method_settings(anomaly, 0, "supervised"), events, out)
    assert read_method_result(out)["method"] == "supervised"
    keeping_mtime(out, lambda p: flip_bytes_in_dataset(p, "score"))
    with pytest.raises(CorruptFileError, match="anomaly method result") as err:
        read_method_result(out)
    assert_moved_aside(err, out)


def test_an_intact_file_of_the_wrong_kind_is_named_and_left_in_place(
    tmp_path, glitch_images, models
):
    from twinflow.anomaly.data import load_events
    from twinflow.glitch.train import load_translation_model

    _, _, images = glitch_images
    with pytest.raises(ConfigError, match=r"has no \['data'") as err:
        load_events(images)
    assert str(images) in str(err.value) and images.is_file()
    assert not isinstance(err.value, CorruptFileError)
    with pytest.raises(CheckpointError, match="holds a 'glitch-vae'"):
        load_translation_model(models / "vae.pt")
    assert (models / "vae.pt").is_file()


def test_the_checksum_is_that_of_the_whole_datasets_however_they_are_read(glitch_images):
    from twinflow.core.io import hdf5_content_sha256

    _, _, images = glitch_images
    with h5py.File(images, "r") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        whole = hashlib.sha256()  # every dataset read at once, in name order
        for name in sorted(names):
            data = f[name]
            whole.update(f"<{name}>{data.dtype}{data.shape}".encode())
            whole.update(np.ascontiguousarray(data[()]).tobytes())
        assert hdf5_content_sha256(f) == whole.hexdigest()
        assert hdf5_content_sha256(f, bytes_per_read=1) == whole.hexdigest()  # row by row
        assert f.attrs["content-sha256"] == whole.hexdigest()
