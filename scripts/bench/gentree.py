#!/usr/bin/env python3
"""Generate the small-files tree used by scripts/bench.sh as one tar archive.

The archive holds NFILES regular files of random size (1..16 KiB) with random
(incompressible) content, spread over NDIRS leaf directories that are grouped
under a few parent directories (tree/dNN/sNN/fNNNNN.bin).  Everything is
derived from a fixed seed, so every system gets byte-identical input.

usage: gentree.py OUT.tar NFILES NDIRS
"""
import io
import random
import sys
import tarfile


def main() -> None:
    out, nfiles, ndirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(20240601)
    per_parent = 20
    leaves = [f"tree/d{i // per_parent:02d}/s{i % per_parent:02d}" for i in range(ndirs)]
    mtime = 1_700_000_000

    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        seen = set()
        for leaf in leaves:  # directory entries first, parents before children
            parts = leaf.split("/")
            for depth in range(1, len(parts) + 1):
                d = "/".join(parts[:depth])
                if d in seen:
                    continue
                seen.add(d)
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = mtime
                tar.addfile(info)
        for n in range(nfiles):
            size = rng.randint(1024, 16384)
            info = tarfile.TarInfo(f"{leaves[n % ndirs]}/f{n:05d}.bin")
            info.size = size
            info.mode = 0o644
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(rng.randbytes(size)))


if __name__ == "__main__":
    main()
