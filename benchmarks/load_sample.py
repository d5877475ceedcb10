"""Time loading the whole CAMELS teaching sample from the cache.

Target (issue "Foundation"): 19 basins x 20 water years in under 2 s once cached.
Run: python benchmarks/load_sample.py  (with EMUCAL_MIRROR or network for the
first, uncached call).
"""

import time

from emucal import camels

start = time.perf_counter()
camels.load_basins()  # warm the cache (downloads if needed)
first = time.perf_counter() - start

timings = []
for _ in range(5):
    camels._attributes_cached.cache_clear()  # re-read the attribute files too
    start = time.perf_counter()
    ds = camels.load_basins()
    timings.append(time.perf_counter() - start)
print(f"first call (may download): {first:.2f} s")
print(f"cached load of {ds.sizes['basin']} basins x {ds.sizes['time']} days: "
      f"best {min(timings):.3f} s, median {sorted(timings)[2]:.3f} s")
print(f"dataset size in memory: {ds.nbytes / 1e6:.1f} MB")
