# The commands in the README. `make demo` and `make test` each set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo stream-demo test lint typecheck unit kernel-test bench bench-tools bench-api clean

KERNEL_STAMP := $(VENV)/.kernel-installed
KERNEL_SRC   := native/kernel/Cargo.toml native/kernel/Cargo.lock native/kernel/pyproject.toml \
                $(wildcard native/kernel/src/*.rs native/kernel/python/digital_finance_kernel/*)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark,azure,kafka,mqtt,api]'
	$(BIN)/python -m compileall -q src  # as pip does for a regular install (see bench/README.md)
	touch $(STAMP)

# The native contract kernel (Rust, built by maturin from PyPI with crates from crates.io).
# Without cargo the package still works, on its DuckDB SQL contract, and says so.
$(KERNEL_STAMP): $(STAMP) $(KERNEL_SRC)
	@if command -v cargo >/dev/null 2>&1; then \
		echo "building the native kernel (native/kernel)"; \
		$(BIN)/pip install --quiet ./native/kernel && touch $(KERNEL_STAMP); \
	else \
		echo "warning: no cargo on PATH; the native kernel is not built and the slower SQL contract runs (see docs/NATIVE_KERNEL.md)"; \
	fi

# Azurite, Microsoft's Azure Storage emulator, for the tests of tables on Azure (npm, once).
AZURITE := .cache/azurite/node_modules/.bin/azurite-blob
$(AZURITE):
	@if command -v npm >/dev/null 2>&1; then \
		echo "installing Azurite (npm) into .cache/azurite"; \
		npm install --prefix .cache/azurite --no-audit --no-fund --silent azurite@3.37.0; \
	else \
		echo "warning: no npm on PATH; the Azure storage tests (tests/e2e/test_azure_storage.py) will fail"; \
	fi

# A single-node Kafka broker's jars (Maven Central, once) for the streaming tests and demo.
KAFKA_LIBS := .cache/kafka/libs/.complete
$(KAFKA_LIBS): tests/services/kafka-pom.xml
	@if command -v mvn >/dev/null 2>&1; then \
		echo "fetching Kafka's jars (Maven Central) into .cache/kafka/libs"; \
		mvn -q -B -Dmaven.repo.local=$(CURDIR)/.cache/kafka/m2 -f tests/services/kafka-pom.xml \
			org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
			-DoutputDirectory=$(CURDIR)/.cache/kafka/libs && touch $(KAFKA_LIBS); \
	else \
		echo "warning: no mvn on PATH; the Kafka streaming tests will fail"; \
	fi

# Spark's Delta and Kafka jars (Maven Central, once) for the Spark engine and its stream; the
# engine fetches them itself on a first start, but the tests start Spark from two workers.
# Then the class archive local Spark sessions start from (engines/spark/jvm.py).
SPARK_JARS := .cache/spark-jars/.complete
$(SPARK_JARS): $(STAMP)
	@if command -v mvn >/dev/null 2>&1; then \
		echo "fetching Spark's Delta and Kafka jars (Maven Central) into .cache/spark-jars"; \
		$(BIN)/python -c 'from pathlib import Path; from digital_finance.engines.spark.jars import delta_jars, kafka_jars; d = Path(".cache/spark-jars"); delta_jars(d); kafka_jars(d)' \
			&& touch $(SPARK_JARS); \
		echo "building the local Spark driver's class archive (once, about a minute)"; \
		$(BIN)/python -c 'from pathlib import Path; from digital_finance.engines.spark.jvm import build_archive; build_archive(Path(".cache").absolute())' \
			|| echo "warning: no class archive; local Spark starts without it, a few seconds slower"; \
	else \
		echo "warning: no mvn on PATH; the Spark tests will fail"; \
	fi

# Mosquitto (Debian's package) for the MQTT streaming tests and demo.
MOSQUITTO_STAMP := .cache/.mosquitto
$(MOSQUITTO_STAMP):
	@mkdir -p .cache
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then \
		touch $(MOSQUITTO_STAMP); \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mosquitto >/dev/null \
			&& touch $(MOSQUITTO_STAMP); \
	else \
		echo "warning: no mosquitto; install it (sudo apt-get install mosquitto) for the MQTT tests"; \
	fi

setup: $(STAMP) $(KERNEL_STAMP) $(AZURITE) $(KAFKA_LIBS) $(SPARK_JARS) $(MOSQUITTO_STAMP)  ## create .venv, install the package, its native kernel and test tools

demo: setup  ## generate sample data, run the pipeline on it, list the tables
	$(BIN)/digital-finance generate --stocks 200000 --funds 20000 --out data/generated --seed 7
	$(BIN)/digital-finance run --stocks 'data/generated/stocks/*' --funds 'data/generated/mutual_funds/*' --output lakehouse
	$(BIN)/digital-finance tables --output lakehouse

stream-demo: setup  ## a local Kafka broker, generated events on it, stream them, list the tables
	$(BIN)/python scripts/stream_demo.py

lint: setup
	$(BIN)/ruff check src tests bench scripts transform.py
	$(BIN)/ruff format --check src tests bench scripts transform.py

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

kernel-test: setup  ## the native kernel's own Rust unit tests
	@if command -v cargo >/dev/null 2>&1; then cd native/kernel && cargo test --release --quiet; fi

test: lint typecheck kernel-test  ## lint, type-check and run every test
	$(BIN)/pytest -q -n 2 --dist loadgroup --durations=25

bench: setup  ## side-by-side benchmark against the seed's PySpark job (installs PySpark)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run_benchmark.py

# wrk (Debian's package), the HTTP load generator of bench/api_load.py
bench-tools:
	@if command -v wrk >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing wrk (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null; \
	else \
		echo "warning: no wrk; install it (sudo apt-get install wrk) for bench/api_load.py"; \
	fi

bench-api: setup bench-tools  ## the ingestion API under load (wrk) beside a naive FastAPI peer
	$(BIN)/python bench/api_load.py

clean:
	rm -rf $(VENV) lakehouse data/generated .pytest_cache .mypy_cache .ruff_cache native/kernel/target
