#!/usr/bin/env bash
# PostgreSQL for the store tests (tests/traces): Debian's package, one cluster, a role and a database for the tests.
# Idempotent and quick on a machine that already has it. The tests cannot inherit environment variables from this
# script (`make test` runs in a fresh shell), so the connection URL is written to a well-known file that
# tests/traces/conftest.py reads when AGENTFLOW_TEST_POSTGRES_URL is not set.
set -euo pipefail
URL_FILE=/var/tmp/agentflow-test-postgres-url
ROLE=agentflow_test
DATABASE=agentflow_test
PASSWORD=agentflow_test

if ! command -v pg_ctlcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION main"; then
    pg_createcluster "$VERSION" main >/dev/null
fi
# pg_ctlcluster runs the server as the postgres user, so starting it as root is safe.
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    pg_ctlcluster "$VERSION" main start
fi
PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')

for _ in $(seq 1 60); do
    if su postgres -c "pg_isready -q -p $PORT"; then break; fi
    sleep 0.5
done
su postgres -c "pg_isready -p $PORT"

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -q -p $PORT -tAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
    psql_admin "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD' CREATEDB"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != "1" ]; then
    psql_admin "CREATE DATABASE $DATABASE OWNER $ROLE"
fi
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE" > "$URL_FILE"
echo "PostgreSQL $VERSION ready on port $PORT; test URL in $URL_FILE"
