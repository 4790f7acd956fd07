"""Writes fake per-seed result files (metrics.json, energy.json, history.csv) for report tests.

The files follow what the train and energy stages write: a completed run has
`"status": "completed"` in both JSON files; a diverged run (`status="diverged"`) has
`"status": "diverged"`, a `"diverged"` record (epoch, batch, loss), the last fully completed
epoch's final/best values (all null when it diverged in epoch 1), an energy.json whose
numbers are all null with no layers and no firing rates, and a history of its completed epochs
only (header only when it diverged in epoch 1). `status=None` writes the older files that
predate divergence: no status anywhere, which must read as completed. Both JSON files name the
run's checkpoint (`checkpoint_sha256`, the same in both); `checkpoint=None` leaves it out, as
files written before checkpoints were named. Firing rates are in energy.json only (their one
source; metrics.json has none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

HISTORY_HEADER = "epoch,lr,train_loss,train_acc,test_loss,test_acc"
CHECKPOINT = "c4" * 32  # a sha256 in hex: the checkpoint both files name
ENERGY_NUMBERS = (
    "energy_uj",
    "energy_mac_uj",
    "energy_ac_uj",
    "macs",
    "sops",
    "spikes",
    "mean_firing_rate",
)


def lif_layers(rates: Sequence[float], prefix: str = "") -> list[dict[str, Any]]:
    """energy.json's per-layer rows: a conv before each LIF layer, in forward order."""
    rows = []
    for k, rate in enumerate(rates, start=1):
        rows.append(
            {
                "layer": f"{prefix}conv{k}",
                "kind": "conv",
                "type": "Conv2d",
                "input": "spikes",
                "firing_rate": 1.0,
                "spike_count": 0.0,
                "sops": 1000.0,
                "macs": 0.0,
                "energy_pj": 900.0,
            }
        )
        rows.append(
            {
                "layer": f"{prefix}lif{k}",
                "kind": "lif",
                "type": "LIF",
                "input": "real",
                "firing_rate": rate,
                "spike_count": 100.0 * rate,
                "sops": 0.0,
                "macs": 0.0,
                "energy_pj": 0.0,
            }
        )
    return rows


def write_run(
    root: Path,
    study: str,
    cell: dict,
    seed: int,
    *,
    acc: float,
    best: float,
    rate: float | None,
    energy_uj: float,
    conventions: str,
    params: int = 1000,
    spikes: float | None = None,
    sops: float = 1_500_000.0,
    macs: int = 2_000_000,
    layers: Sequence[dict] = (),
    history: Sequence[tuple[float, float]] | None = None,
    epochs: int = 3,
    status: str | None = "completed",
    diverged_epoch: int = 2,
    loss: str = "nan",
    checkpoint: str | None = CHECKPOINT,
) -> Path:
    """Write one seed's files under root/study/cell/seed<k>/ and return that folder.

    `acc`/`best` are fractions (final and best test accuracy; for a diverged run, those of
    its last completed epoch). `history` is one (train_loss, test_acc) per epoch, epochs
    numbered from 1; a diverged run keeps the epochs before `diverged_epoch` only. `rate` is
    energy.json's mean firing rate (its per-layer `firing_rates` are conv1 and conv2 at that
    rate); `spikes` and `rate` are left out of energy.json when None (older energy files).
    """
    folder = Path(root) / study / cell["id"] / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    coords = {k: cell[k] for k in ("dataset", "backbone", "attention", "coding", "T")}
    diverged = status == "diverged"
    nothing = diverged and diverged_epoch == 1  # no epoch completed: nothing to report
    metrics: dict[str, Any] = {
        "study": study,
        "cell": cell["id"],
        "seed": seed,
        **coords,
        "final": {
            "test_acc": None if nothing else acc,
            "test_loss": None if nothing else 0.12,
            "train_acc": None if nothing else 0.99,
            "train_loss": None if nothing else 0.05,
        },
        "best": {
            "test_acc": None if nothing else best,
            "epoch": None if nothing else max(1, diverged_epoch - 1) if diverged else 2,
        },
        "params": params,
        "epochs": epochs,
        "train_seconds": 41.5,
    }
    energy: dict[str, Any] = {
        "study": study,
        "cell": cell["id"],
        "seed": seed,
        "energy_uj": energy_uj,
        "energy_mac_uj": 0.01,
        "energy_ac_uj": 0.02,
        "macs": macs,
        "sops": sops,
        "e_mac_pj": 4.6,
        "e_ac_pj": 0.9,
        "conventions": conventions,
        "layers": list(layers),
    }
    if spikes is not None:
        energy["spikes"] = spikes
    if rate is not None:
        energy["mean_firing_rate"] = rate
        energy["firing_rates"] = {"conv1": rate, "conv2": rate}
    if status is not None:
        metrics["status"] = energy["status"] = status
    if checkpoint is not None:
        metrics["checkpoint_sha256"] = energy["checkpoint_sha256"] = checkpoint
    if diverged:
        metrics["diverged"] = {"epoch": diverged_epoch, "batch": 7, "loss": loss}
        energy.update({key: None for key in ENERGY_NUMBERS}, layers=[], firing_rates={})
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "energy.json").write_text(json.dumps(energy))
    if history is not None:
        kept = history[: diverged_epoch - 1] if diverged else history
        lines = [HISTORY_HEADER] + [
            f"{epoch},0.001,{loss_},0.9,0.5,{test_acc}"
            for epoch, (loss_, test_acc) in enumerate(kept, start=1)
        ]
        (folder / "history.csv").write_text("\n".join(lines) + "\n")
    return folder
