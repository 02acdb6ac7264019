#!/usr/bin/env bash
# deps.sh — idempotent installer of everything outdial needs on Debian 12.
#
#   deploy/local/deps.sh            # install missing Debian packages + fetch Kafka
#   OUTDIAL_CACHE=/some/dir deploy/local/deps.sh
#
# Debian packages are checked with `dpkg -s`; apt-get runs only when something
# is missing. Apache Kafka (KRaft broker, run on the machine's JVM) is fetched
# from Maven Central with Maven into a cache outside the work tree:
#   ${OUTDIAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outdial}/kafka-<ver>/libs/*.jar
# A marker file (.complete) is written last, so an interrupted download is redone.
# The Python packages the system tests need beyond Debian's go to
#   <cache>/python (pip --target), put on PYTHONPATH by test.sh;
#   kubernetes-validate alone to <cache>/python-k8s (test_deploy.py runs it).
# Prints the Kafka home on its last line: KAFKA_HOME=<dir>
set -euo pipefail

KAFKA_VERSION="${OUTDIAL_KAFKA_VERSION:-3.9.1}"
SCALA_VERSION="2.13"
# bump when the fetched set changes, so existing caches are refreshed
CACHE_SPEC="$KAFKA_VERSION+tools+reload4j+2"
CACHE_DIR="${OUTDIAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outdial}"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"

log() { printf 'deps: %s\n' "$*" >&2; }
die() { printf 'deps: ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo"
  SUDO=(sudo)
fi

# ---------------------------------------------------------------- Debian packages
# python3-phonenumbers: its data0.py is libphonenumber's prefix -> time zones
# map, from which the build generates libs/phone's table (gen_tz_table.c).
# docker-compose (1.29, no engine needed) and python3-yaml: tests/system/
# test_deploy.py validates docker-compose.yml with `docker-compose config`.
PKGS=(
  build-essential cmake ninja-build pkg-config
  libh2o-dev libuv1-dev librdkafka-dev libjansson-dev libssl-dev
  libcurl4-openssl-dev uuid-dev libphonenumber-dev python3-phonenumbers zlib1g-dev libosip2-dev sip-tester
  postgresql-15 postgresql-client-15 libpq-dev
  wrk kcat clang libclang-rt-14-dev
  python3-pytest python3-requests python3-jsonschema python3-yaml
  chromium
  docker-compose
)

java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v
  v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [ -n "$v" ] && [ "$v" -ge 11 ]
}
java_ok || PKGS+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || PKGS+=(maven)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg -s "$p" >/dev/null 2>&1; then
    missing+=("$p")
  elif ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q >/dev/null
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  log "packages installed"
else
  log "all Debian packages present"
fi

# Debian's postgresql package creates and starts a default cluster on 5432;
# outdial runs its own clusters and does not need it, so leave it alone.

# ---------------------------------------------------------------- Apache Kafka
if [ "$(cat "$KAFKA_HOME/.complete" 2>/dev/null)" = "$CACHE_SPEC" ] && compgen -G "$KAFKA_HOME/libs/kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar" >/dev/null; then
  log "kafka $KAFKA_VERSION already in $KAFKA_HOME"
else
  log "fetching kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME"
  rm -rf "$KAFKA_HOME"
  mkdir -p "$KAFKA_HOME"
  work="$(mktemp -d "$CACHE_DIR/.kafka-fetch.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  cat >"$work/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>outdial.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_${SCALA_VERSION}</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <!-- admin tools (TopicCommand, ConsumerGroupCommand) for tests and operators -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <!-- the binary distribution ships these for logging; kafka_2.13's pom does not pull them -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
    <dependency>
      <groupId>ch.qos.reload4j</groupId>
      <artifactId>reload4j</artifactId>
      <version>1.2.25</version>
    </dependency>
  </dependencies>
</project>
POM
  if ! mvn -B -q -f "$work/pom.xml" \
        org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs" \
        >"$work/mvn.log" 2>&1; then
    tail -n 40 "$work/mvn.log" >&2
    die "maven could not fetch kafka $KAFKA_VERSION"
  fi
  [ -f "$KAFKA_HOME/libs/kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar" ] || die "kafka jar missing after fetch"
  mkdir -p "$KAFKA_HOME/config"
  cat >"$KAFKA_HOME/config/log4j.properties" <<'L4J'
# WARN and above to a file; the file is chosen with -Dkafka.logs.dir
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=WARN
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
L4J
  cat >"$KAFKA_HOME/config/tools-log4j.properties" <<'L4J'
# command-line tools: errors only, to stderr
log4j.rootLogger=ERROR, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
L4J
  echo "$CACHE_SPEC" >"$KAFKA_HOME/.complete"
  rm -rf "$work"
  trap - EXIT
  log "kafka $KAFKA_VERSION ready ($(find "$KAFKA_HOME/libs" -name '*.jar' | wc -l) jars)"
fi

# ---------------------------------------------------------------- Python test packages
# standardwebhooks (PyPI): the independent implementation that verifies the
# webhook signatures in the system tests. Into the cache, not the system:
# test.sh puts "$CACHE_DIR/python" on PYTHONPATH.
PY_DIR="$CACHE_DIR/python"
if PYTHONPATH="$PY_DIR" python3 -c 'import standardwebhooks' 2>/dev/null; then
  log "standardwebhooks already in $PY_DIR"
else
  log "installing standardwebhooks from PyPI into $PY_DIR"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore --upgrade \
    --target "$PY_DIR" 'standardwebhooks==1.1.0' >&2 || die "pip could not install standardwebhooks"
fi

# Python tools that tests run in a subprocess, each from PyPI into a folder of
# its own put on PYTHONPATH there only, so that their dependencies never
# shadow the ones the other tests import:
# - kubernetes-validate: the Kubernetes OpenAPI schemas of each release,
#   bundled, so tests/system/test_deploy.py checks deploy/k8s offline (it
#   needs a newer jsonschema, and referencing, than Debian's);
# - schemathesis and openapi-python-client: the tools no one here wrote that
#   test the HTTP contract (tests/system/test_contract.py: schemathesis
#   against the served document, a client generated from it).
for spec in kubernetes-validate==1.37.0:python-k8s schemathesis==4.32.5:python-schemathesis \
            openapi-python-client==0.29.1:python-openapi-client; do
  req=${spec%%:*} dir="$CACHE_DIR/${spec##*:}"
  name=${req%%==*} version=${req##*==}
  if [ "$(PYTHONPATH="$dir" python3 -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null)" = "$version" ]; then
    log "$name $version already in $dir"
    continue
  fi
  log "installing $name $version from PyPI into $dir"
  rm -rf "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
    --target "$dir" "$req" >&2 || die "pip could not install $name"
done

# ---------------------------------------------------------------- browser tests
# playwright-core (npm) drives Debian's Chromium (/usr/bin/chromium) in the
# console's browser tests, and axe-core audits each screen's accessibility;
# both into the cache (tests/system/test_console.py finds them).
NODE_DIR="$CACHE_DIR/node"
for pkg in playwright-core@1.64.1 axe-core@4.14.1; do
  name=${pkg%@*} version=${pkg##*@}
  if [ "$(node -p "require('$NODE_DIR/node_modules/$name/package.json').version" 2>/dev/null)" = "$version" ]; then
    log "$name $version already in $NODE_DIR"
    continue
  fi
  command -v npm >/dev/null 2>&1 || die "npm is needed for the browser tests (Node.js)"
  log "installing $name $version from npm into $NODE_DIR"
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/package.json" ] || echo '{"name": "outdial-browser-tests", "private": true}' >"$NODE_DIR/package.json"
  (cd "$NODE_DIR" && npm install --silent --no-audit --no-fund "$pkg" >&2) || die "npm could not install $pkg"
done

echo "KAFKA_HOME=$KAFKA_HOME"
