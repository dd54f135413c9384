"""A fuzz campaign: every target for `--runs` executions (default 1,000,000), `--jobs` at a time.

    python fuzz/campaign.py [--runs N] [--jobs J] [--targets a,b] [--max-seconds S]

Each target runs under atheris (fuzz/run.py) on a scratch corpus seeded from fuzz/corpus/<target>;
at the end the inputs that reached new code are merged (libFuzzer -merge=1) into
fuzz/corpus/<target>, which `make test` replays (tests/test_fuzz_corpus.py). A crash leaves its
input in fuzz/crashes/<target>/ and makes the campaign exit 1. Prints one line per target
(executions, seconds, coverage, corpus files, crashes) and writes them to fuzz/last-campaign.json.
`--max-seconds` bounds a target's time (libFuzzer -max_total_time); the figures then say how many
executions it got, which may be fewer than --runs.

`--resume` makes a campaign that stops short (a time bound, a machine taken back) continue where
it left off: each target's scratch corpus is kept in fuzz/.work/<target>/ (not in git) with the
executions and seconds so far in progress.json; the next `--resume` run gives the target only the
executions still missing to --runs, starting from that corpus, and reports the totals.
The PostgreSQL target (fuzz/hub_ingest.py) needs the server on 127.0.0.1:5432; without it the
target is skipped and says so. Before it runs and after it, the fuzz databases (fuzz_hub_*) its
processes made are dropped: libFuzzer ends a process without running its atexit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
CRASHES = ROOT / "fuzz" / "crashes"
WORK = ROOT / "fuzz" / ".work"
CORPUS_MAX_LEN = 1024  # inputs kept in the repository's corpus stay small
# A target that reads the same inputs as another starts from that one's corpus too: the
# PostgreSQL writer is slow to fuzz, and the SQLite campaign has already found the shapes.
SEEDS_ALSO = {"hub_ingest_postgres": "hub_ingest_sqlite"}

sys.path.insert(0, str(ROOT))
from fuzz.targets import NEEDS_POSTGRES, TARGETS  # noqa: E402

STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def runner(name: str, folder: Path) -> str:
    """An executable that runs one target: libFuzzer's -merge re-executes its own argv[0]
    (without the target name fuzz.run took off), so argv[0] must be a program that knows it."""
    path = folder / f"fuzz-{name}"
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                    f"sys.argv.insert(1, {name!r})\nfrom fuzz.run import main\n"
                    "raise SystemExit(main())\n")
    path.chmod(0o755)
    return str(path)


def _pg_ready() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        return False
    from fuzz.hub_ingest import drop_leftover_pg

    drop_leftover_pg()
    return True


def fuzz_one(name: str, runs: int, max_seconds: float | None, log_dir: Path,
             resume: bool = False) -> dict:
    if name in NEEDS_POSTGRES and not _pg_ready():
        return {"target": name, "executions": 0, "seconds": 0, "exec_per_s": None,
                "coverage": None, "features": None, "corpus_files": 0, "corpus_added": 0,
                "corpus_bytes": 0, "exit": 0, "crashes": [],
                "skipped": "PostgreSQL is not running on 127.0.0.1:5432"}
    progress = {"executions": 0, "seconds": 0.0, "sessions": 0}
    if resume:
        work = WORK / name
        work.mkdir(parents=True, exist_ok=True)
        state = work.parent / f"{name}.progress.json"
        if state.exists():
            progress = json.loads(state.read_text())
        runs = max(0, runs - progress["executions"])
    else:
        work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    exe = runner(name, log_dir)
    crashes = CRASHES / name
    crashes.mkdir(parents=True, exist_ok=True)
    seed = CORPUS / name
    seed.mkdir(parents=True, exist_ok=True)
    cmd = [exe, f"-runs={runs}",
           f"-artifact_prefix={crashes}/", "-print_final_stats=1", str(work), str(seed)]
    if name in SEEDS_ALSO:  # read, not merged into: that corpus stays where it is
        cmd.append(str(CORPUS / SEEDS_ALSO[name]))
    if max_seconds:
        cmd.insert(2, f"-max_total_time={int(max_seconds)}")
    log = log_dir / f"{name}.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) if runs else \
            subprocess.CompletedProcess(cmd, 0)
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    done = DONE.findall(text)
    stats = STATS.findall(text)
    execs = int(done[-1][0]) if done else (int(stats[-1][0]) if stats else 0)
    # Keep what reached new code: merge the scratch corpus into the repository's, small inputs.
    before = len(list(seed.iterdir()))
    with open(log_dir / f"{name}.merge.log", "wb") as out:
        subprocess.run([exe, "-merge=1", f"-max_len={CORPUS_MAX_LEN}",
                        f"-artifact_prefix={crashes}/merge-", str(seed), str(work)],
                       cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
    if name.startswith("hub_"):
        from fuzz.hub_ingest import remove_leftover_dirs

        remove_leftover_dirs()
    if name in NEEDS_POSTGRES:
        # libFuzzer ends its process without running atexit (a time bound, the merge, a
        # crash): the databases of the run and of the merge are dropped here.
        from fuzz.hub_ingest import drop_leftover_pg

        drop_leftover_pg()
    after = sorted(seed.iterdir())
    # An input that crashes the target while the corpus is merged counts too (merge-crash-*).
    crash_files = sorted(p.name for p in crashes.iterdir()
                         if any(k in p.name for k in ("crash-", "timeout-", "oom-")))
    if resume:
        progress = {"executions": progress["executions"] + execs,
                    "seconds": round(progress["seconds"] + elapsed, 1),
                    "sessions": progress["sessions"] + 1}
        (WORK / f"{name}.progress.json").write_text(json.dumps(progress) + "\n")
        execs, elapsed = progress["executions"], progress["seconds"]
    return {"target": name, "executions": execs, "seconds": round(elapsed, 1),
            "exec_per_s": round(execs / elapsed) if elapsed else None,
            "coverage": int(stats[-1][1]) if stats else None,
            "features": int(stats[-1][2]) if stats else None,
            "corpus_files": len(after), "corpus_added": len(after) - before,
            "corpus_bytes": sum(p.stat().st_size for p in after),
            "exit": proc.returncode, "crashes": crash_files,
            **({"sessions": progress["sessions"]} if resume else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue each target from fuzz/.work/ up to --runs in total")
    parser.add_argument("--out", default=str(ROOT / "fuzz" / "last-campaign.json"))
    args = parser.parse_args()
    names = [n for n in args.targets.split(",") if n]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="fuzz-logs-"))
    started = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda n: fuzz_one(n, args.runs, args.max_seconds, log_dir,
                                                     args.resume),
                                names))
    doc = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
           "runs_asked": args.runs, "jobs": args.jobs, "max_seconds": args.max_seconds,
           "python": sys.version.split()[0], "results": results, "logs": str(log_dir)}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{'target':15} {'executions':>11} {'seconds':>8} {'exec/s':>7} {'cov':>5} "
          f"{'corpus':>7} crashes")
    for r in results:
        if r.get("skipped"):
            print(f"{r['target']:15} skipped: {r['skipped']}")
            continue
        print(f"{r['target']:15} {r['executions']:>11,} {r['seconds']:>8} "
              f"{r['exec_per_s'] or 0:>7} {r['coverage'] or 0:>5} {r['corpus_files']:>7} "
              f"{len(r['crashes'])}")
    print(f"logs in {log_dir}; figures in {args.out}")
    return 1 if any(r["crashes"] or r["exit"] not in (0,) for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
