"""Install smoke check: ``python -m audioexp.smoke`` (the last step of ``make install``).

Loads every dependency that ships compiled code and runs one small call through each, so
that a binary built against another torch (torchaudio 2.11.1 beside torch 2.11.0 once
failed with ``undefined symbol``) stops the install with the culprit named, not every
later command with a traceback. Exit status 1 when a check fails.

The filterbank kernel is compiled here (about 40 s on first use, then cached); a machine
with no C++ compiler can accept the slower NumPy path with ``AUDIOEXP_SKIP_KERNEL_CHECK=1``.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable


def _torch() -> str:
    import torch

    x = torch.randn(4, 4)
    assert torch.allclose(x @ torch.eye(4), x)
    return torch.__version__


def _torchaudio() -> str:
    import torch
    import torchaudio
    import torchaudio.functional as F
    from torchaudio.transforms import MelSpectrogram

    x = torch.randn(1, 1600)
    F.lfilter(x, torch.tensor([1.0, -0.5]), torch.tensor([1.0, 0.0]))
    MelSpectrogram(sample_rate=16000, n_fft=400, n_mels=40)(x)
    return torchaudio.__version__


def _torchvision() -> str:
    import torch
    import torchvision
    from torchvision.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.9]])
    nms(boxes, torch.tensor([0.9, 0.8]), 0.5)  # a compiled operator of torchvision's own library
    return torchvision.__version__


def _soundfile() -> str:
    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(160, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    buf.seek(0)
    data, rate = sf.read(buf)
    assert rate == 16000 and len(data) == 160
    return f"{sf.__version__} (libsndfile {sf.__libsndfile_version__})"


def _librosa() -> str:
    import librosa
    import numpy as np

    librosa.feature.melspectrogram(y=np.random.default_rng(0).standard_normal(1600), sr=16000, n_fft=400)
    return librosa.__version__


def _opensmile() -> str:
    import numpy as np
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    smile.process_signal(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    return opensmile.__version__


def _sklearn_scipy() -> str:
    import numpy as np
    import scipy
    import scipy.signal
    import sklearn
    from sklearn.mixture import GaussianMixture

    scipy.signal.lfilter([1.0], [1.0, -0.5], np.ones(8))
    GaussianMixture(2, random_state=0).fit(np.random.default_rng(0).standard_normal((40, 2)))
    return f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}"


def _onnxruntime() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "not installed (optional: pip install 'audioexp[export]')"
    onnxruntime.get_available_providers()
    return onnxruntime.__version__


def _sd_kernel() -> str:
    from audioexp.features.sd_filterbank import _load_kernel

    module, reason = _load_kernel()
    if module is None:
        if os.environ.get("AUDIOEXP_SKIP_KERNEL_CHECK"):
            return f"not built ({reason}); the NumPy path will be used (AUDIOEXP_SKIP_KERNEL_CHECK set)"
        raise RuntimeError(
            f"{reason}. Install a C++ compiler (g++) and rerun, or accept the slower NumPy "
            "filterbank with AUDIOEXP_SKIP_KERNEL_CHECK=1"
        )
    return "built and loaded"


CHECKS: dict[str, Callable[[], str]] = {
    "torch": _torch,
    "torchaudio": _torchaudio,
    "torchvision": _torchvision,
    "soundfile": _soundfile,
    "librosa": _librosa,
    "opensmile": _opensmile,
    "scikit-learn/scipy": _sklearn_scipy,
    "onnxruntime": _onnxruntime,
    "SD filterbank kernel": _sd_kernel,
}


def main(argv: list[str] | None = None) -> int:
    failed = []
    for name, check in CHECKS.items():
        start = time.perf_counter()
        try:
            detail = check()
        except Exception as exc:  # any failure to load is reported, with its package
            failed.append(name)
            print(f"  FAIL {name}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:400]}")
            continue
        print(f"  ok   {name}: {detail} ({time.perf_counter() - start:.1f} s)")
    if failed:
        print(
            f"\naudioexp smoke check: {', '.join(failed)} did not load. The venv does not match "
            "requirements/lock.txt, or a binary was built for another torch: `make clean install` "
            "reinstalls exactly the locked set.",
            file=sys.stderr,
        )
        return 1
    print("audioexp smoke check: every compiled dependency loads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
