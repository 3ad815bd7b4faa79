#!/usr/bin/env bash
# Make sure the services the functional tests talk to are up:
#   RabbitMQ   127.0.0.1:5672  guest/guest
#   PostgreSQL 127.0.0.1:5432  user postgres, trust auth over TCP, database godwit_test
#   MariaDB    127.0.0.1:3306  root without a password
# Installs them from Debian's packages when missing and starts them without
# systemd. Safe to run repeatedly; prints one line per service.
#
# Environment: ENSURE_SERVICES_TIMEOUT (seconds to wait for each service, default 60).
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
TIMEOUT="${ENSURE_SERVICES_TIMEOUT:-60}"
PG_PORT=5432
PG_DB=godwit_test
RABBIT_PORT=5672
LOG_DIR="${TMPDIR:-/tmp}"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo)
fi

die() { echo "ensure-services: ERROR: $*" >&2; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 3 bash -c "echo > /dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Install the given Debian packages (apt-get update first, no prompts).
apt_updated=false
installed_now=" "
apt_install() {
    if ! $apt_updated; then
        "${SUDO[@]}" apt-get update -qq </dev/null || die "apt-get update failed"
        apt_updated=true
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "$@" </dev/null >/dev/null ||
        die "apt-get install $* failed"
    installed_now+="$* "
}

# --- PostgreSQL -------------------------------------------------------------

pg_installed() { command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

# Newest PostgreSQL version that has a cluster configured in /etc/postgresql.
pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true; }

psql_tcp() { psql -X -w -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
    else
        port_open "$PG_PORT"
    fi
}

ensure_postgres() {
    local action="already running" notes=() ver log
    pg_installed || apt_install postgresql
    if ! pg_ready; then
        action="started"
        ver=$(pg_version)
        if [[ -z $ver || ! -d /etc/postgresql/$ver/main ]]; then
            # The package normally creates the "main" cluster; make it if not.
            ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
            "${SUDO[@]}" pg_createcluster "$ver" main >/dev/null || die "pg_createcluster $ver main failed"
        fi
        # The freshly installed package may already have started it.
        if ! pg_ready; then
            log="$LOG_DIR/godwit-ensure-postgresql.log"
            if ! "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" main start \
                    </dev/null >"$log" 2>&1; then
                # "already running" is fine (it may still be recovering); anything else is not.
                grep -qi 'already running' "$log" || {
                    cat "$log" >&2
                    die "pg_ctlcluster $ver main start failed (see /var/log/postgresql/postgresql-$ver-main.log)"
                }
            fi
        fi
        local waited=0
        until pg_ready; do
            ((waited < TIMEOUT)) ||
                die "PostgreSQL did not accept connections on 127.0.0.1:$PG_PORT within ${TIMEOUT}s (see /var/log/postgresql/)"
            sleep 1
            waited=$((waited + 1))
        done
    fi

    if [[ $installed_now == *" postgresql "* ]]; then action="installed and started"; fi

    # TCP connections as postgres must work without a password.
    if ! psql_tcp -c 'SELECT 1' >/dev/null 2>&1; then
        ver=$(pg_version)
        local hba="/etc/postgresql/$ver/main/pg_hba.conf"
        [[ -f $hba ]] || die "cannot connect to PostgreSQL as postgres over TCP and $hba does not exist"
        if ! grep -qE '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
            "${SUDO[@]}" sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
            notes+=("trust auth for 127.0.0.1 added to $hba")
        fi
        "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" main reload </dev/null >/dev/null 2>&1 ||
            die "pg_ctlcluster $ver main reload failed"
        local waited=0
        until psql_tcp -c 'SELECT 1' >/dev/null 2>&1; do
            ((waited < 10)) || {
                psql_tcp -c 'SELECT 1' >&2 || true
                die "cannot connect to PostgreSQL on 127.0.0.1:$PG_PORT as postgres without a password"
            }
            sleep 1
            waited=$((waited + 1))
        done
    fi

    # The test database.
    if [[ -z $(psql_tcp -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
        # Tolerate a concurrent run having created it in the meantime.
        if psql_tcp -c "CREATE DATABASE $PG_DB" >/dev/null 2>&1 ||
                [[ -n $(psql_tcp -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
            notes+=("database $PG_DB created")
        else
            psql_tcp -c "CREATE DATABASE $PG_DB" >&2 || true
            die "could not create database $PG_DB"
        fi
    fi

    local extra=""
    if ((${#notes[@]})); then
        extra=" ($(printf '%s; ' "${notes[@]}")" && extra="${extra%; })"
    fi
    echo "postgresql: $action on 127.0.0.1:$PG_PORT$extra"
}

# --- RabbitMQ ---------------------------------------------------------------

rabbit_installed() { command -v rabbitmq-server >/dev/null 2>&1 && command -v rabbitmqctl >/dev/null 2>&1; }

rabbit_ping() { "${SUDO[@]}" rabbitmqctl -q ping </dev/null >/dev/null 2>&1; }

rabbit_start() {
    local log="$LOG_DIR/godwit-ensure-rabbitmq.log"
    # Detach its output from ours so that nobody reading our stdout waits on it.
    "${SUDO[@]}" rabbitmq-server -detached </dev/null >"$log" 2>&1 || {
        cat "$log" >&2
        die "rabbitmq-server -detached failed"
    }
}

ensure_rabbitmq() {
    local action="already running" may_start=false last_start=-1000
    local deadline=$((SECONDS + TIMEOUT))
    rabbit_installed || apt_install rabbitmq-server
    # Only start a node when nothing listens on the port yet; a node that is
    # booting (or still halting after `rabbitmqctl stop`) answers ping, and is
    # then waited for (or restarted once it is gone).
    port_open "$RABBIT_PORT" || may_start=true
    while :; do
        if rabbit_ping; then
            if "${SUDO[@]}" rabbitmqctl -q -t 10 await_startup </dev/null >/dev/null 2>&1 &&
                    port_open "$RABBIT_PORT"; then
                break
            fi
        elif $may_start && ((SECONDS - last_start >= 20)); then
            rabbit_start
            action="started"
            last_start=$SECONDS
        fi
        ((SECONDS < deadline)) ||
            die "RabbitMQ did not come up on 127.0.0.1:$RABBIT_PORT within ${TIMEOUT}s ('rabbitmqctl await_startup' fails; see /var/log/rabbitmq/)"
        sleep 1
    done
    if [[ $installed_now == *" rabbitmq-server "* ]]; then action="installed and started"; fi
    "${SUDO[@]}" rabbitmqctl -q authenticate_user guest guest </dev/null >/dev/null 2>&1 ||
        die "RabbitMQ is up but user guest/guest cannot log in"
    echo "rabbitmq: $action on 127.0.0.1:$RABBIT_PORT"
}

# --- MariaDB (the unit tests run the database layer on it too) ------------
MARIADB_PORT=3306
mariadb_installed() { command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; }

ensure_mariadb() {
    local action="already running"
    mariadb_installed || apt_install mariadb-server
    if ! port_open "$MARIADB_PORT"; then
        "${SUDO[@]}" mkdir -p /run/mysqld
        "${SUDO[@]}" chown mysql:mysql /run/mysqld 2>/dev/null || true
        "${SUDO[@]}" start-stop-daemon --start --oknodo --background \
            --exec /usr/sbin/mariadbd </dev/null >"$LOG_DIR/godwit-ensure-mariadb.log" 2>&1 ||
            die "starting mariadbd failed (see $LOG_DIR/godwit-ensure-mariadb.log)"
        action="started"
        local deadline=$((SECONDS + TIMEOUT))
        until port_open "$MARIADB_PORT"; do
            ((SECONDS < deadline)) ||
                die "MariaDB did not listen on 127.0.0.1:$MARIADB_PORT within ${TIMEOUT}s"
            sleep 1
        done
    fi
    if [[ $installed_now == *" mariadb-server "* ]]; then action="installed and started"; fi
    echo "mariadb: $action on 127.0.0.1:$MARIADB_PORT"
}

# Install everything missing at once (one apt-get run).
missing=()
pg_installed || missing+=(postgresql)
rabbit_installed || missing+=(rabbitmq-server)
mariadb_installed || missing+=(mariadb-server)
if ((${#missing[@]} > 1)); then
    apt_install "${missing[@]}"
fi

ensure_postgres
ensure_rabbitmq
ensure_mariadb
