#!/usr/bin/env python3
"""seedship's test corpus: a deterministic folder tree that looks like a file server's.

The same --seed and --size-mib give byte-identical files (names, contents, times), so a
test, the demo or a benchmark can run twice on exactly the same input, and our tools and a
peer's can be measured on it side by side. Only the Python standard library is used.

What a tree holds (shares of --size-mib):
  images/    two disk-image-like files: runs of zeros, text pages, random
             blocks and blocks repeated within the file                      ~35 %
  archive/   incompressible files of 512 KiB to 8 MiB (photos, zips)         ~22 %
  shares/    documents: text, CSV and JSON of 64 KiB to 4 MiB, in folders   ~16 %
  logs/      daily log files of 256 KiB to 2 MiB                             ~10 %
  projects/  many small files, 100 B to 32 KiB, most text, some binary      ~12 %
  copies/    exact copies of some archive and shares files (for dedup)        ~5 %
plus a few empty files and an empty folder.

Commands:
  generate --out DIR [--size-mib N] [--seed S]
  mutate   --out DIR --undo DIR [--fraction F] [--seed S]
      changes about F of the files (small ones rewritten; larger ones overwritten in
      place, appended to, or cut short), adds and deletes a few; the previous version of
      every changed or deleted file is kept under the undo folder
  stats    --out DIR
"""
import argparse
import os
import random
import shutil
import sys

KiB = 1024
MiB = 1024 * KiB
# A fixed epoch for file times: 2025-06-01 00:00 UTC.
EPOCH = 1748736000


class Words:
    """A vocabulary and a pool of lines, drawn once per seed; text is sampled from them."""

    def __init__(self, seed):
        rng = random.Random(f"words/{seed}")
        abc = "abcdefghijklmnopqrstuvwxyz"
        self.words = ["".join(rng.choice(abc) for _ in range(rng.randint(2, 10))) for _ in range(4000)]
        self.words += ["backup", "server", "error", "ok", "user", "disk", "seed", "vault", "share"]
        self.lines = [" ".join(rng.choices(self.words, k=rng.randint(4, 14))) for _ in range(20000)]

    def text(self, rng, n):
        out, size = [], 0
        while size < n:
            chunk = "\n".join(rng.choices(self.lines, k=256)) + "\n"
            out.append(chunk)
            size += len(chunk)
        return "".join(out).encode()[:n]

    def csv(self, rng, n):
        out, size = [], 0
        while size < n:
            rows = "".join(
                f"{rng.randrange(1 << 30)},{rng.choice(self.words)},{rng.random() * 1e4:.2f},{rng.randrange(100)}\n"
                for _ in range(500)
            )
            out.append(rows)
            size += len(rows)
        return "".join(out).encode()[:n]

    def json(self, rng, n):
        out, size = ["["], 1
        while size < n:
            rec = '{"id": %d, "name": "%s", "tags": ["%s", "%s"], "score": %.3f},\n' % (
                rng.randrange(1 << 40), rng.choice(self.words), rng.choice(self.words), rng.choice(self.words),
                rng.random())
            out.append(rec)
            size += len(rec)
        return "".join(out).encode()[:n]

    def log(self, rng, n, day):
        out, size, t = [], 0, EPOCH + day * 86400
        levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
        while size < n:
            t += rng.randint(0, 3)
            line = f"2025-{6 + day // 30:02d}-{1 + day % 28:02d} {t % 86400 // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d} " \
                   f"{rng.choice(levels)} [{rng.choice(self.words)}] {rng.choice(self.lines)}\n"
            out.append(line)
            size += len(line)
        return "".join(out).encode()[:n]


def disk_image(words, rng, n):
    """Zero runs, text pages, random blocks, and blocks repeated from earlier in the file."""
    out, size, seen = [], 0, []
    while size < n:
        kind = rng.random()
        block = rng.choice((64 * KiB, 256 * KiB, 1 * MiB))
        if kind < 0.3:
            b = bytes(block)
        elif kind < 0.55:
            b = words.text(rng, block)
        elif kind < 0.8 or not seen:
            b = rng.randbytes(block)
            seen.append(b)
        else:
            b = rng.choice(seen)
        out.append(b)
        size += len(b)
    return b"".join(out)[:n]


def write(path, data, t):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (t, t))


def generate(out, size_mib, seed):
    if os.path.exists(out) and os.listdir(out):
        sys.exit(f"error: {out} is not empty; generate into a new folder")
    os.makedirs(out, exist_ok=True)
    words = Words(seed)
    total = size_mib * MiB
    rng = random.Random(f"tree/{seed}/{size_mib}")
    made = []  # (relative path, kind) of files that copies/ may copy

    def t():
        return EPOCH + rng.randrange(300 * 86400)

    def fill(share, lo, hi, name, make):
        budget = int(total * share)
        while budget > 0:
            n = min(budget, rng.randint(lo, hi))
            rel = name(len(made))
            write(os.path.join(out, rel), make(n), t())
            made.append(rel)
            budget -= n

    per_image = int(total * 0.35) // 2
    for i in range(2):
        if per_image > 0:
            write(os.path.join(out, f"images/vm-{i}.img"), disk_image(words, rng, per_image), t())
    fill(0.22, 512 * KiB, 8 * MiB, lambda k: f"archive/{k // 20:03d}/photo-{k:05d}.jpg", rng.randbytes)
    kinds = [("txt", words.text), ("csv", words.csv), ("json", words.json)]

    def doc(n):
        _, make = kinds[rng.randrange(3)]
        return make(rng, n)
    fill(0.16, 64 * KiB, 4 * MiB, lambda k: f"shares/dept-{k % 7}/{rng.choice(words.words)}-{k:05d}.doc", doc)
    day = [0]

    def daily(n):
        day[0] += 1
        return words.log(rng, n, day[0])
    fill(0.10, 256 * KiB, 2 * MiB, lambda k: f"logs/app-{k:05d}.log", daily)

    def small(n):
        return rng.randbytes(n) if rng.random() < 0.2 else words.text(rng, n)
    fill(0.12, 100, 32 * KiB, lambda k: f"projects/p{k % 13:02d}/src/m{k // 13 % 9}/file-{k:06d}.rs", small)
    budget = int(total * 0.05)
    sources = [p for p in made if p.startswith(("archive/", "shares/"))]
    rng.shuffle(sources)
    for src in sources:
        if budget <= 0:
            break
        if os.path.getsize(os.path.join(out, src)) > budget:
            continue
        dst = os.path.join(out, "copies", src.replace("/", "_"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(out, src), dst)
        os.utime(dst, (t(), t()))
        budget -= os.path.getsize(dst)
    for i in range(3):
        write(os.path.join(out, f"shares/empty-{i}.txt"), b"", t())
    os.makedirs(os.path.join(out, "shares/empty-folder"), exist_ok=True)
    print(stats(out))


def files_of(out):
    found = []
    for d, dirs, fs in os.walk(out):
        dirs.sort()
        for f in sorted(fs):
            found.append(os.path.relpath(os.path.join(d, f), out))
    return found


def mutate(out, undo, fraction, seed):
    rng = random.Random(f"mutate/{seed}")
    words = Words(seed)
    files = files_of(out)
    if not files:
        sys.exit(f"error: {out} has no files to change")
    os.makedirs(undo, exist_ok=True)

    def keep(rel):
        dst = os.path.join(undo, rel)
        if not os.path.exists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(out, rel), dst)

    chosen = rng.sample(files, max(1, int(len(files) * fraction)))
    changed = deleted = added = 0
    for rel in chosen:
        p = os.path.join(out, rel)
        size = os.path.getsize(p)
        if rng.random() < 0.05:
            keep(rel)
            os.remove(p)
            deleted += 1
            continue
        keep(rel)
        if size < 64 * KiB:
            data = words.text(rng, max(1, size + rng.randint(-50, 500)))
            with open(p, "wb") as f:
                f.write(data)
        else:
            how = rng.random()
            with open(p, "r+b") as f:
                if how < 0.5:
                    f.seek(rng.randrange(size))
                    f.write(rng.randbytes(rng.randint(1, 256 * KiB)))
                elif how < 0.8:
                    f.seek(0, os.SEEK_END)
                    f.write(words.text(rng, rng.randint(1, 512 * KiB)))
                else:
                    f.truncate(rng.randrange(size // 2, size))
        os.utime(p, (EPOCH + 400 * 86400, EPOCH + 400 * 86400 + rng.randrange(86400)))
        changed += 1
    for i in range(max(1, len(chosen) // 20)):
        p = os.path.join(out, f"shares/new/added-{seed}-{i}.txt")
        write(p, words.text(rng, rng.randint(1, 64 * KiB)), EPOCH + 400 * 86400)
        added += 1
    print(f"changed {changed}, deleted {deleted}, added {added} of {len(files)} files")


def stats(out):
    files = files_of(out)
    total = sum(os.path.getsize(os.path.join(out, f)) for f in files)
    return f"{len(files)} files, {total} bytes ({total / MiB:.1f} MiB) in {out}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", required=True)
    g.add_argument("--size-mib", type=int, default=64)
    g.add_argument("--seed", type=int, default=1)
    m = sub.add_parser("mutate")
    m.add_argument("--out", required=True)
    m.add_argument("--undo", required=True)
    m.add_argument("--fraction", type=float, default=0.05)
    m.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("stats")
    s.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "generate":
        if a.size_mib < 1:
            sys.exit("error: --size-mib must be at least 1")
        generate(a.out, a.size_mib, a.seed)
    elif a.cmd == "mutate":
        if not 0 < a.fraction <= 1:
            sys.exit("error: --fraction must be above 0 and at most 1")
        mutate(a.out, a.undo, a.fraction, a.seed)
    else:
        print(stats(a.out))


if __name__ == "__main__":
    main()
