"""How the local Spark driver's JVM starts: JIT settings and a class archive.

A local batch is short, and a cold JVM spends it warming up. Measured on 2 cores at 1M stocks
(docs/PERFORMANCE.md): the JVM burned 43 CPU-seconds in a 46 s run, 35 of them in the C2 JIT
compiler, compiling code that ran for seconds; loading and verifying Spark's and Delta's
classes costs a few seconds more on every start. Two remedies, for sessions we start only (a
cluster's JVM is the cluster's):

* C2 compiles only code that stays hot (`JIT_OPTIONS`): its thresholds are raised tenfold,
  so a short run stays on C1 code while a long batch still gets C2 for its inner loops.
* Classes come from an archive (JDK class data sharing): `build_archive` runs a small batch
  through the Spark engine once (`make setup` does) and the JVM dumps the classes it loaded;
  later starts map them instead of loading them. The archive belongs to one Java binary,
  PySpark release and jar set; any other start ignores it (`-Xshare:auto`, the default).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

JAVA_OPTIONS = "spark.driver.extraJavaOptions"

# ten times the JDK's defaults (5000, 600, 15000, 40000)
JIT_OPTIONS = (
    "-XX:Tier4InvocationThreshold=50000",
    "-XX:Tier4MinInvocationThreshold=6000",
    "-XX:Tier4CompileThreshold=150000",
    "-XX:Tier4BackEdgeThreshold=400000",
)
# an archive that does not match this JVM is ignored: no need to say so on every start
_QUIET_CDS = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def _java() -> Path | None:
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else None
    if found is None or not found.exists():
        which = shutil.which("java")
        found = Path(which) if which else None
    return found.resolve() if found is not None else None


def archive_path(cache: Path, jars: Sequence[Path]) -> Path | None:
    """Where the class archive for this Java, PySpark and jar set lives (None: no Java)."""
    java = _java()
    if java is None:
        return None
    parts = [str(java), str(java.stat().st_mtime_ns), metadata.version("pyspark")]
    key = "\n".join([*parts, *sorted(p.name for p in jars)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache / "spark-jars" / f"classes-{digest}.jsa"


def driver_options(cache: Path, jars: Sequence[Path]) -> str:
    """The driver JVM's options for a local session: the JIT's, and the archive's if built."""
    options = list(JIT_OPTIONS)
    archive = archive_path(cache, jars)
    if archive is not None and archive.is_file():
        options += [f"-XX:SharedArchiveFile={archive}", *_QUIET_CDS]
    return " ".join(options)


def build_archive(cache: Path) -> Path | None:
    """Build the class archive for the local session (once; again when Java or jars change).

    Runs `python -m digital_finance.engines.spark.jvm` in a child process, which ingests a
    small generated batch twice (the second MERGEs) so that the archive holds the classes of
    every step, and dumps it when its JVM exits. Returns the archive, or None without Java.
    """
    from digital_finance.engines.spark.jars import SparkSetupError, delta_jars

    target = archive_path(cache, delta_jars(cache / "spark-jars"))
    if target is None or target.is_file():
        return target
    partial = target.with_suffix(f".{os.getpid()}.partial")
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(cache), str(partial)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    if done.returncode != 0:
        raise SparkSetupError(
            f"building Spark's class archive failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    if not partial.is_file():
        return None  # this JVM cannot dump archives: starts stay as they were
    partial.replace(target)  # whole, or not at all: two builds at once each write their own
    return target


def _dump(cache: Path, archive: Path) -> None:
    """In the child: run the small batches with `-XX:ArchiveClassesAtExit`, then end the JVM
    and wait for it, so that the archive is written when this returns."""
    from pyspark import SparkContext

    from digital_finance.api import Lakehouse
    from digital_finance.engines.spark.session import local_session
    from digital_finance.generate import generate

    options = " ".join([*JIT_OPTIONS, f"-XX:ArchiveClassesAtExit={archive}", *_QUIET_CDS])
    spark = local_session(cache, conf={JAVA_OPTIONS: options})  # these options, not ours
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        lake = Lakehouse(str(root / "lake"), engine="spark", spark=spark)
        for seed in (1, 2):
            data = root / f"in-{seed}"
            generate(data, 2_000, 200, seed)
            lake.ingest_files([str(data / "stocks")], [str(data / "mutual_funds")])
    spark.stop()
    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None) if gateway is not None else None
    if process is not None:  # the JVM ends when its stdin closes, and dumps on the way out
        process.stdin.close()
        process.wait(timeout=300)


if __name__ == "__main__":
    _dump(Path(sys.argv[1]), Path(sys.argv[2]))
