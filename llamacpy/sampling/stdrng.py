"""llama.cpp's random draws, bit for bit: `std::mt19937` and libstdc++'s distributions over it.

llama.cpp seeds one `std::mt19937` per random sampler (dist, XTC, mirostat) with the request's seed, and
draws through `std::uniform_real_distribution` / `std::discrete_distribution`. numpy's MT19937 with its
legacy seeding is the same generator (`init_genrand`); the distributions below follow libstdc++ (GCC 12,
the compiler of the reference build): `generate_canonical` takes one 32-bit word for a float, two for a
double (low word first). Same seed, same logits -> the same tokens as llama-server.
"""

from __future__ import annotations

import numpy as np

_TWO32 = 4294967296.0
_ONE_BELOW_F32 = np.nextafter(np.float32(1), np.float32(0))


class StdMT19937:
    def __init__(self, seed: int):
        self._bits = np.random.MT19937()
        self._bits._legacy_seeding(int(seed) & 0xFFFFFFFF)

    def word(self) -> int:
        return int(self._bits.random_raw())

    def uniform_double(self) -> float:
        """uniform_real_distribution<double>(0, 1)."""
        low = float(self.word())
        r = (low + float(self.word()) * _TWO32) / (_TWO32 * _TWO32)
        return r if r < 1.0 else float(np.nextafter(1.0, 0.0))

    def uniform_float(self) -> np.float32:
        """uniform_real_distribution<float>(0, 1)."""
        r = np.float32(self.word()) / np.float32(_TWO32)
        return r if r < 1 else _ONE_BELOW_F32

    def discrete(self, probs: np.ndarray) -> int:
        """discrete_distribution<int>(probs): no draw for fewer than two weights, as libstdc++."""
        if len(probs) < 2:
            return 0
        w = probs.astype(np.float64)
        cum = np.cumsum(w / np.cumsum(w)[-1])
        cum[-1] = 1.0
        return int(np.searchsorted(cum, self.uniform_double(), side="left"))
