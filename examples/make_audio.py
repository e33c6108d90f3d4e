"""Write the input of examples/audio_filter.json: out/audio/tone_noise.wav.

A 3-second stereo recording at 16 kHz (16-bit PCM): a 440 Hz tone on the left and a 660 Hz tone
on the right, both buried under a 3 kHz whistle and white noise. The content is fixed (seeded),
so running this again rewrites the same file: it is safe to run any number of times.

    .venv/bin/python examples/make_audio.py          # then:
    .venv/bin/streamlab run examples/audio_filter.json

Run it from the repository root: it writes out/audio/ under the current directory, which is
where audio_filter.json's "../out/audio/..." paths (relative to examples/) point.

Needs only numpy and soundfile (the 'dsp' extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000
SECONDS = 3.0
DEFAULT_PATH = Path("out/audio/tone_noise.wav")


def make_signal(seed: int = 440) -> np.ndarray:
    """Samples x 2 channels in [-1, 1): tones + whistle + noise."""
    t = np.arange(int(SAMPLE_RATE * SECONDS)) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    whistle = 0.25 * np.sin(2 * np.pi * 3000.0 * t)
    left = 0.4 * np.sin(2 * np.pi * 440.0 * t) + whistle + 0.08 * rng.standard_normal(t.size)
    right = 0.4 * np.sin(2 * np.pi * 660.0 * t) + whistle + 0.08 * rng.standard_normal(t.size)
    fade = np.minimum(1.0, t / 0.01)  # no click at the start
    return np.clip(np.column_stack([left, right]) * fade[:, None], -1.0, 0.999)


def main(path: Path = DEFAULT_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, make_signal(), SAMPLE_RATE, subtype="PCM_16")
    return path


if __name__ == "__main__":
    written = main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
    print(f"wrote {written} ({SECONDS:g} s, {SAMPLE_RATE} Hz, 2 channels)")
