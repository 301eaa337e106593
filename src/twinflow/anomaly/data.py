"""Events for the anomaly search: the LHCO R&D loader, signal injection and the events stage.

Every event has the resonant feature m = m_JJ and four auxiliary features, in TeV where a mass::

    x = [m_J1, m_J2 - m_J1, tau21_J1, tau21_J2]      (J1 = the lighter jet)

with tau21 = tau2 / (tau1 + 1e-5), and a truth label (1 signal, 0 background) used only for
the references (IAD, supervised) and for evaluation.

The stage :func:`prepare_events` writes one HDF5 file with four event samples:

- ``data``: background plus ``n-signal`` injected signal events: what the weakly supervised
  methods see;
- ``extra_background``: an independent background sample of the same size (the idealized
  anomaly detector, IAD, trains data against it; the supervised reference uses it as well);
- ``signal_train``: signal events for the supervised reference;
- ``test``: independent labelled signal and background for ROC/SIC curves.

Offline, these come from :class:`~twinflow.anomaly.simulation.LHCOLikeGenerator`; with
``source: files`` from LHCO R&D files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from twinflow.anomaly.events import Events
from twinflow.anomaly.simulation import simulate_events
from twinflow.core.io import (
    atomic_path,
    read_hdf5,
    read_settings,
    verify_intermediate,
    write_checksum,
    write_provenance,
)
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import (
    ConfigError,
    require,
    require_choice,
    require_file,
    require_positive,
)

LHCO_COLUMNS = (
    "pxj1",
    "pyj1",
    "pzj1",
    "mj1",
    "tau1j1",
    "tau2j1",
    "tau3j1",
    "pxj2",
    "pyj2",
    "pzj2",
    "mj2",
    "tau1j2",
    "tau2j2",
    "tau3j2",
    "label",
)
FEATURE_NAMES = ("m_J1", "delta_m_J", "tau21_J1", "tau21_J2")
FEATURE_LABELS = (
    r"$m_{J_1}$ [TeV]",
    r"$\Delta m_J$ [TeV]",
    r"$\tau_{21}^{J_1}$",
    r"$\tau_{21}^{J_2}$",
)
SAMPLES = ("data", "extra_background", "signal_train", "test")
TAU_EPSILON = 1e-5  # tau21 = tau2 / (tau1 + 1e-5), as in the LHCO R&D papers


# ---------------------------------------------------------------------------------------------
# LHCO R&D files
# ---------------------------------------------------------------------------------------------


def _read_pandas_fixed(path: Path, key: str) -> dict[str, np.ndarray]:
    """Columns of a pandas ``to_hdf`` frame in 'fixed' format, read with h5py (no pytables)."""
    with read_hdf5(path, "LHCO file") as f:
        if key not in f:
            raise ConfigError(f"LHCO file {str(path)!r} has no key {key!r} (keys: {list(f)})")
        group = f[key]
        if "table" in group:  # 'table' format needs pandas + pytables
            import pandas as pd

            try:
                frame = pd.read_hdf(path, key)
            except ImportError as err:
                raise ConfigError(
                    f"LHCO file {str(path)!r} is in pandas' 'table' format, which needs "
                    f"PyTables ({err}): install it, or save the frame with format='fixed'"
                ) from None
            return {str(c): frame[c].to_numpy() for c in frame.columns}
        columns: dict[str, np.ndarray] = {}
        for block in range(int(group.attrs.get("nblocks", 0))):
            names = [
                n.decode() if isinstance(n, bytes) else str(n)
                for n in group[f"block{block}_items"][:]
            ]
            values = group[f"block{block}_values"][:]  # [N, n_columns_in_block]
            for i, name in enumerate(names):
                columns[name] = values[:, i]
        return columns


def read_lhco(path: str | Path, key: str = "df") -> Events:
    """Return the events of an LHCO R&D feature file (pandas HDF, GeV) in TeV.

    m_JJ is the invariant mass of the two jets' four-vectors; jets are ordered by mass so that
    J1 is the lighter; tau21 = tau2 / (tau1 + 1e-5).
    """
    path = require_file("anomaly.data.files", path)
    columns = _read_pandas_fixed(path, key)
    missing = [c for c in LHCO_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"LHCO file {str(path)!r} lacks the column(s) {missing}; expected {list(LHCO_COLUMNS)}"
        )
    c = {name: np.asarray(columns[name], dtype=np.float64) for name in LHCO_COLUMNS}
    p1 = np.stack([c["pxj1"], c["pyj1"], c["pzj1"]], axis=1)
    p2 = np.stack([c["pxj2"], c["pyj2"], c["pzj2"]], axis=1)
    e1 = np.sqrt(np.sum(p1**2, axis=1) + c["mj1"] ** 2)
    e2 = np.sqrt(np.sum(p2**2, axis=1) + c["mj2"] ** 2)
    mjj = np.sqrt(np.maximum((e1 + e2) ** 2 - np.sum((p1 + p2) ** 2, axis=1), 0.0))
    tau21_1 = c["tau2j1"] / (c["tau1j1"] + TAU_EPSILON)
    tau21_2 = c["tau2j2"] / (c["tau1j2"] + TAU_EPSILON)
    swap = c["mj1"] > c["mj2"]
    m_light = np.where(swap, c["mj2"], c["mj1"])
    m_heavy = np.where(swap, c["mj1"], c["mj2"])
    tau_light = np.where(swap, tau21_2, tau21_1)
    tau_heavy = np.where(swap, tau21_1, tau21_2)
    x = np.stack([m_light / 1000, (m_heavy - m_light) / 1000, tau_light, tau_heavy], axis=1)
    return Events(mjj / 1000, x, c["label"].astype(np.int8))


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def _from_files(settings: Mapping, seed: int) -> dict[str, Events]:
    """Split a labelled LHCO file into data (with n-signal injected), test and signal_train."""
    rng = numpy_rng(seed, "anomaly-data", "files")
    events = read_lhco(settings["files"]["data"]).shuffled(rng)
    bkg, sig = events.select(events.label == 0), events.select(events.label == 1)
    n_test_bkg = int(round(settings["test-fraction"] * len(bkg)))
    n_sig = settings["n-signal"]
    require(
        n_sig <= len(sig) // 2,
        "anomaly.data.n-signal",
        n_sig,
        f"the file holds {len(sig)} signal events; inject at most half of them",
    )
    rest = sig.select(np.arange(n_sig, len(sig)))
    n_test_sig = min(settings["n-test-signal"], len(rest) // 2)
    samples = {
        "data": Events.concatenate(
            [bkg.select(np.arange(n_test_bkg, len(bkg))), sig.select(np.arange(n_sig))]
        ).shuffled(rng),
        "test": Events.concatenate(
            [bkg.select(np.arange(n_test_bkg)), rest.select(np.arange(n_test_sig))]
        ).shuffled(rng),
        "signal_train": rest.select(np.arange(n_test_sig, len(rest))),
    }
    extra = settings["files"].get("extra-background")
    if extra:
        extra_events = read_lhco(extra)
        samples["extra_background"] = extra_events.select(extra_events.label == 0)
    else:  # no extra QCD file: IAD and supervised use the held-out half of the test background
        half = n_test_bkg // 2
        test_bkg = bkg.select(np.arange(n_test_bkg))
        samples["extra_background"] = test_bkg.select(np.arange(half))
        samples["test"] = Events.concatenate(
            [test_bkg.select(np.arange(half, n_test_bkg)), rest.select(np.arange(n_test_sig))]
        ).shuffled(rng)
    return samples


def prepare_events(settings: Mapping, out: str | Path) -> dict[str, Events]:
    """Generate or load the event samples and write them to ``out`` (HDF5), atomically.

    ``settings``: ``{"seed": int, "data": <anomaly.data section>}``.
    """
    data_settings = settings["data"]
    check_data_settings(data_settings)
    seed = settings["seed"]
    samples = (
        simulate_events(data_settings, seed)
        if data_settings["source"] == "simulated"
        else _from_files(data_settings, seed)
    )
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        write_provenance(f, settings, feature_names=list(FEATURE_NAMES))
        for name, ev in samples.items():
            g = f.create_group(name)
            g.create_dataset("m", data=ev.m.astype(np.float32))
            g.create_dataset("x", data=ev.x.astype(np.float32))
            g.create_dataset("label", data=ev.label.astype(np.int8))
            g.attrs["n_signal"] = int(ev.label.sum())
            g.attrs["n_background"] = int(len(ev) - ev.label.sum())
        write_checksum(f)
    return samples


def load_events(path: str | Path) -> tuple[dict[str, Events], dict]:
    """Return the samples written by :func:`prepare_events` and the settings that made them."""
    verify_intermediate(path, "anomaly events", SAMPLES)
    with read_hdf5(path, "anomaly events") as f:
        samples = {
            s: Events(
                f[s]["m"][:].astype(np.float64), f[s]["x"][:].astype(np.float64), f[s]["label"][:]
            )
            for s in SAMPLES
        }
        return samples, read_settings(f)


# ---------------------------------------------------------------------------------------------
# Signal regions
# ---------------------------------------------------------------------------------------------


SOURCES = ("simulated", "files")


def check_data_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid ``anomaly.data`` settings."""
    require_choice("anomaly.data.source", settings["source"], SOURCES)
    for key in (
        "n-background",
        "n-extra-background",
        "n-test-background",
        "n-test-signal",
        "n-train-signal",
    ):
        value = settings[key]
        require(
            isinstance(value, int) and value > 0,
            f"anomaly.data.{key}",
            value,
            "expected an integer > 0",
        )
    n_sig = settings["n-signal"]
    require(
        isinstance(n_sig, int) and n_sig >= 0,
        "anomaly.data.n-signal",
        n_sig,
        "expected an integer >= 0",
    )
    if settings["source"] == "files":
        files = settings["files"]
        require(
            bool(files.get("data")),
            "anomaly.data.files.data",
            files.get("data"),
            "give the LHCO R&D file (with a label column) when source is 'files'",
        )
        require_file("anomaly.data.files.data", files["data"])
        if files.get("extra-background"):
            require_file("anomaly.data.files.extra-background", files["extra-background"])
        require_positive("anomaly.data.test-fraction", settings["test-fraction"])
        require(
            settings["test-fraction"] < 1,
            "anomaly.data.test-fraction",
            settings["test-fraction"],
            "expected a fraction in (0, 1)",
        )
