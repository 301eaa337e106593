"""Corrupt and wrong files: detected on read, named in one line, and nothing good is deleted.

A waveform shard truncated or with flipped bytes (its modification time kept, so Snakemake
would not notice) is caught by its checksum and moved aside, so its own rule regenerates it;
a damaged checkpoint or PSD bank is refused by name; a file of the wrong kind says so.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from twinflow.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from twinflow.core.settings import ConfigError, load_yaml
from twinflow.gw.dataset.grid import resolve_domain
from twinflow.gw.dataset.shards import WaveformDataset, simulate_shard, write_index
from twinflow.gw.psd import load_psd_bank
from twinflow.gw.settings import dataset_domain_settings_for, dataset_shard_settings_for
from twinflow.gw.strain_sources import read_strain


@pytest.fixture(scope="module")
def good_shard(tmp_path_factory, repo):
    gw = load_yaml(repo / "config" / "test.yaml")["gw"]
    root = tmp_path_factory.mktemp("shards")
    resolve_domain(dataset_domain_settings_for(gw), root / "domain.json", log=lambda *a: None)
    settings = dataset_shard_settings_for(gw)
    settings["shard-size"], settings["chunk-size"] = 64, 32
    simulate_shard(settings, root / "domain.json", 0, root / "shard-0.h5", log=lambda *a: None)
    return root


def damaged_copy(good_shard, tmp_path, damage):
    """Copy the good shard, damage it, and give it back its modification time."""
    shard = tmp_path / "shard-0.h5"
    shutil.copy2(good_shard / "shard-0.h5", shard)
    stat = shard.stat()
    damage(shard)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return shard


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def flip_bytes_in_the_waveforms(path):
    # Overwrite bytes near the end of the file, where the last chunk of h_cross lies.
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size - 4000)
        chunk = bytearray(f.read(64))
        f.seek(path.stat().st_size - 4000)
        f.write(bytes(b ^ 0xFF for b in chunk))


@pytest.mark.parametrize("damage", [truncate, flip_bytes_in_the_waveforms])
def test_a_damaged_shard_is_named_and_moved_aside_for_its_rule(good_shard, tmp_path, damage):
    shard = damaged_copy(good_shard, tmp_path, damage)
    with pytest.raises(ConfigError) as err:
        write_index([shard], tmp_path / "index.json")
    message = str(err.value)
    assert str(shard) in message and "\n" not in message
    assert not shard.exists() and (tmp_path / "shard-0.h5.corrupt").exists()
    assert not (tmp_path / "index.json").exists()


def test_training_checks_the_shards_it_is_given(good_shard, tmp_path):
    shutil.copy2(good_shard / "shard-0.h5", tmp_path / "shard-0.h5")
    write_index([tmp_path / "shard-0.h5"], tmp_path / "index.json")
    flip_bytes_in_the_waveforms(tmp_path / "shard-0.h5")
    with pytest.raises(ConfigError, match="corrupt"):
        WaveformDataset(tmp_path / "index.json").verify()


def test_an_intact_shard_passes(good_shard, tmp_path):
    index = write_index([good_shard / "shard-0.h5"], tmp_path / "index.json")
    assert index["n-total"] == 64
    WaveformDataset(tmp_path / "index.json").verify()


@pytest.mark.parametrize("where", [0.5, 0.9])
def test_a_damaged_checkpoint_is_refused_by_name(tmp_path, where):
    path = tmp_path / "model.pt"
    save_checkpoint(path, kind="test", settings={"a": 1}, weights=torch.arange(5000.0))
    assert torch.equal(load_checkpoint(path, kind="test")["weights"], torch.arange(5000.0))
    data = bytearray(path.read_bytes())
    position = int(len(data) * where)
    data[position : position + 8] = bytes(8)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, kind="test")
    assert str(path) in str(err.value)


def test_a_psd_bank_that_is_not_hdf5_is_named(tmp_path):
    path = tmp_path / "H1.h5"
    path.write_text("frequency,psd\n20,1e-46\n")
    with pytest.raises(ConfigError, match="not an HDF5 file") as err:
        load_psd_bank(path)
    assert str(path) in str(err.value)


def test_a_psd_bank_from_another_stage_is_named(tmp_path, good_shard):
    with pytest.raises(ConfigError, match=r"has no \['psd', 'frequencies'\]"):
        load_psd_bank(good_shard / "shard-0.h5")


@pytest.mark.parametrize("suffix", [".hdf5", ".gwf", ".txt"])
def test_a_strain_file_of_the_wrong_kind_is_named(tmp_path, suffix):
    path = tmp_path / f"H-H1-strain{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ConfigError) as err:
        read_strain(path, channel="H1:STRAIN")
    message = str(err.value)
    assert str(path) in message and "\n" not in message
