"""Device selection: answered without torch where the answer is certain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import engine.device as device
from engine.errors import DeviceUnavailable

REPO = Path(__file__).resolve().parents[1]


def test_without_the_nvidia_driver_auto_is_cpu_and_cuda_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(device, "_NVIDIA_DRIVER", str(tmp_path / "no-driver"))
    monkeypatch.setattr(device.sys, "platform", "linux")
    assert device.resolve_device("auto") == "cpu"
    assert device.resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceUnavailable) as e:
        device.resolve_device("cuda:0")
    assert "NVIDIA driver" in e.value.message and "--device cpu" in e.value.advice
    with pytest.raises(DeviceUnavailable):
        device.resolve_device("tpu")


def test_with_a_driver_torch_decides(monkeypatch, tmp_path):
    drv = tmp_path / "version"
    drv.write_text("NVRM version: test\n")
    monkeypatch.setattr(device, "_NVIDIA_DRIVER", str(drv))
    monkeypatch.setattr(device.sys, "platform", "linux")
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_device("auto") == "cpu"
    with pytest.raises(DeviceUnavailable):
        device.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("auto") == "cuda" and device.resolve_device("cuda:1") == "cuda:1"


@pytest.mark.skipif(Path(device._NVIDIA_DRIVER).exists(), reason="this machine has the NVIDIA driver")
def test_auto_on_a_machine_without_driver_does_not_import_torch():
    probe = ("import json, sys; from engine.device import resolve_device; d = resolve_device('auto'); "
             "print(json.dumps({'device': d, 'torch': 'torch' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"device": "cpu", "torch": False}
