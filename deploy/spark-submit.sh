#!/usr/bin/env bash
# Run digital-finance with spark-submit on any Spark 4.2 cluster (or locally). See --help and
# docs/DATABRICKS.md, "Running with spark-submit".
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/spark-submit.sh DIGITAL-FINANCE-ARGS...

Builds the digital-finance wheel and runs the `digital-finance` command line under
spark-submit, with Delta Lake on the classpath. Everything after the script name goes to
digital-finance, e.g.

  MASTER=local[2] DELTA_JARS_DIR=.cache/spark-jars deploy/spark-submit.sh \
      run --engine spark --stocks data/stocks.json --funds data/mutual_funds.json --output /tmp/lake

Inside spark-submit the Spark engine uses the session spark-submit set up (it sees
PYSPARK_GATEWAY_PORT) and adds no jars of its own; its --conf options still apply.

Environment:
  MASTER            Spark master URL (default: local[2]).
  DELTA_JARS_DIR    Folder holding delta-spark_4.2_2.13-4.4.0.jar and delta-storage-4.4.0.jar
                    (the engine caches them in .cache/spark-jars); they are passed with --jars.
                    Unset: --packages io.delta:delta-spark_4.2_2.13:4.4.0, resolved by Ivy, which
                    needs Maven Central the first time.
  DELTA_PACKAGE     Maven coordinate used without DELTA_JARS_DIR
                    (default: io.delta:delta-spark_4.2_2.13:4.4.0).
  SPARK_SUBMIT      spark-submit to run (default: spark-submit on PATH; the pyspark pip
                    package installs one next to python, e.g. .venv/bin/spark-submit).
  PYTHON            Python that builds the wheel (default: python3). With a local[...] master
                    it is also the driver's and workers' Python unless PYSPARK_PYTHON is set,
                    so it must have the package's dependencies (use the project's .venv).
  WHEEL             Use this wheel instead of building one (offline, or a release build).
  EXTRA_SPARK_SUBMIT_ARGS
                    More spark-submit arguments, split on white space, e.g.
                    "--deploy-mode client --conf spark.executor.memory=4g
                     --archives env.tar.gz#environment".
  DRY_RUN=1         Print the spark-submit command, one argument per line, instead of
                    running it.

On a real cluster the executors run the package's code too. The wheel goes to them as a .zip
with --py-files (Spark puts .py/.zip/.egg files on the Python path, not .whl files), which
covers the pure-Python package only: its dependencies (duckdb, deltalake, pyarrow, numpy,
typer, rich, tzdata) must be installed on every node, or shipped as a packed environment:

  python -m venv env && env/bin/pip install dist/digital_finance-*.whl venv-pack
  env/bin/venv-pack -o env.tar.gz     # build it on the nodes' OS, CPU and Python version
  MASTER=spark://HOST:7077 PYSPARK_DRIVER_PYTHON=env/bin/python \
  PYSPARK_PYTHON=./environment/bin/python \
  EXTRA_SPARK_SUBMIT_ARGS="--archives env.tar.gz#environment" deploy/spark-submit.sh run ...

PYSPARK_DRIVER_PYTHON is for client mode (the driver runs here); leave it unset with
--deploy-mode cluster on YARN or Kubernetes. See "Python Package Management" in the PySpark
docs; conda-pack archives work the same way.
EOF
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    "")
        usage >&2
        exit 2
        ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MASTER="${MASTER:-local[2]}"
PYTHON="${PYTHON:-python3}"
SPARK_SUBMIT="${SPARK_SUBMIT:-spark-submit}"
DELTA_PACKAGE="${DELTA_PACKAGE:-io.delta:delta-spark_4.2_2.13:4.4.0}"
DELTA_JARS_DIR="${DELTA_JARS_DIR:-}"
WHEEL="${WHEEL:-}"
EXTRA_SPARK_SUBMIT_ARGS="${EXTRA_SPARK_SUBMIT_ARGS:-}"
DRY_RUN="${DRY_RUN:-}"

fail() {
    echo "spark-submit.sh: $*" >&2
    exit 1
}

# 1. The wheel: the package without extras (the cluster brings Spark and Delta).
if [[ -z "$WHEEL" ]]; then
    rm -f "$REPO"/dist/digital_finance-*.whl
    (cd "$REPO" && "$PYTHON" -m pip wheel --quiet --no-deps -w dist .) >&2 ||
        fail "building the wheel failed (pip needs PyPI for the build backend; or set WHEEL=...)"
    shopt -s nullglob
    built=("$REPO"/dist/digital_finance-*.whl)
    shopt -u nullglob
    [[ ${#built[@]} -eq 1 ]] || fail "expected one dist/digital_finance-*.whl, found ${#built[@]}"
    WHEEL="${built[0]}"
fi
[[ -f "$WHEEL" ]] || fail "no wheel at $WHEEL"

# A wheel is a zip archive; under a .zip name PySpark adds it to sys.path on the driver and
# the executors (pyspark/core/context.py: PACKAGE_EXTENSIONS = .zip, .egg, .jar).
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
pyzip="$workdir/$(basename "${WHEEL%.whl}").zip"
cp "$WHEEL" "$pyzip"

# 2. Delta: local jars, or Maven coordinates for Ivy.
delta_args=()
if [[ -n "$DELTA_JARS_DIR" ]]; then
    [[ -d "$DELTA_JARS_DIR" ]] || fail "DELTA_JARS_DIR=$DELTA_JARS_DIR is not a folder"
    jars_dir="$(cd "$DELTA_JARS_DIR" && pwd)"
    version="${DELTA_PACKAGE##*:}"
    artifact="${DELTA_PACKAGE#*:}"
    artifact="${artifact%%:*}"
    jars=("$jars_dir/$artifact-$version.jar" "$jars_dir/delta-storage-$version.jar")
    for jar in "${jars[@]}"; do
        [[ -f "$jar" ]] || fail "$jar is missing; fetch the jars with:
  .venv/bin/python -c 'from pathlib import Path; from digital_finance.engines.spark.jars import delta_jars; delta_jars(Path(\".cache/spark-jars\"))'"
    done
    delta_args=(--jars "${jars[0]},${jars[1]}")
else
    delta_args=(--packages "$DELTA_PACKAGE")
fi

# 3. Python for a local master: the one that has the dependencies (spark-submit would use
# `python3` on PATH otherwise). On a cluster, set PYSPARK_PYTHON yourself (see --help).
if [[ "$MASTER" == local* && -z "${PYSPARK_PYTHON:-}" ]]; then
    python_path="$(command -v "$PYTHON")" || fail "$PYTHON not found"
    export PYSPARK_PYTHON="$python_path"
    export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$python_path}"
fi

extra=()
if [[ -n "$EXTRA_SPARK_SUBMIT_ARGS" ]]; then
    read -r -a extra <<<"$EXTRA_SPARK_SUBMIT_ARGS"
fi

cmd=(
    "$SPARK_SUBMIT"
    --master "$MASTER"
    --name digital-finance
    "${delta_args[@]}"
    --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
    --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
    # new tables stay at Delta protocol (1,2), readable by the embedded engine
    --conf spark.databricks.delta.properties.defaults.enableDeletionVectors=false
    --py-files "$pyzip"
    ${extra[@]+"${extra[@]}"}
    "$REPO/deploy/spark_submit_main.py"
    "$@"
)

if [[ -n "$DRY_RUN" ]]; then
    printf '%s\n' "${cmd[@]}"
    exit 0
fi
printf 'running:' >&2
printf ' %q' "${cmd[@]}" >&2
printf '\n' >&2
"${cmd[@]}"
