"""The local session's Python worker daemon: PySpark's own, importing the installed PySpark.

Spark starts its Python workers with `<SPARK_HOME>/python/lib/pyspark.zip` (and py4j's zip)
first on the path, and every worker imports `pyspark.worker` after it is forked. Python
keeps no compiled bytecode for a zip's modules: each worker compiled PySpark's source again.
Measured at 1M stocks on 2 cores: 2.3 of the 10 CPU-seconds the Python workers spent in a
cold batch. A pip installation of PySpark (the one `local_session` runs) holds the same
modules, compiled, in the package the zip sits in. This daemon takes those zips off the path
and runs PySpark's daemon; also spark-core's jar, which Spark adds and which holds no Python.
(Kept at the path's end, they would still cost every task a read of their directories: a
worker clears the import caches before each task, and the jar lists 5,854 files.)

Only zips inside an installed `pyspark` package go, and only when the worker's interpreter
finds that same package without them: a Spark of its own (`SPARK_HOME` elsewhere), or a
worker interpreter with another PySpark, keeps the zip first, so no worker mixes releases.
Set as `spark.python.daemon.module` by `local_session` only (its workers need
`digital_finance` importable, as the pipeline's own tasks do); a cluster's is the cluster's.
"""

from __future__ import annotations

import importlib.machinery
import runpy
import sys
from pathlib import Path


def _inside_installed_pyspark(entry: str) -> bool:
    """Whether `entry` is a zip in `<site-packages>/pyspark/python/lib/`, or a jar of
    `<site-packages>/pyspark/jars/` (Spark puts spark-core's there, which holds no Python)."""
    path = Path(entry)
    if (path.suffix, path.parent.name) == (".zip", "lib"):
        package = path.parent.parent.parent
    elif (path.suffix, path.parent.name) == (".jar", "jars"):
        package = path.parent.parent
    else:
        return False
    return package.name == "pyspark" and (package / "__init__.py").is_file()


def without_own_zips(path: list[str]) -> list[str]:
    """`path` without the zips of the installed PySpark (whose modules it imports instead)."""
    return [entry for entry in path if not _inside_installed_pyspark(entry)]


def same_pyspark(path: list[str], without: list[str]) -> bool:
    """Whether `without` finds the very package whose zips `path` holds: a worker run by
    another interpreter (`PYSPARK_PYTHON`) may have another PySpark installed, or none."""
    zips = [Path(e) for e in path if _inside_installed_pyspark(e) and e.endswith(".zip")]
    found = importlib.machinery.PathFinder.find_spec("pyspark", without)
    if not zips or found is None or found.origin is None:
        return False
    return all(Path(found.origin).parent == z.parent.parent.parent for z in zips)


if __name__ == "__main__":
    kept = without_own_zips(sys.path)
    if same_pyspark(sys.path, kept):
        sys.path[:] = kept
        for entry in [e for e in sys.path_importer_cache if _inside_installed_pyspark(e)]:
            del sys.path_importer_cache[entry]
    runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)
