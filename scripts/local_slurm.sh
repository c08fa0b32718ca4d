#!/usr/bin/env bash
# A throwaway single-node Slurm cluster with accounting, for make test-cluster.
#
#   bash scripts/local_slurm.sh up     install what is missing (Debian packages), write the configs,
#                                      start munged, mariadbd, slurmdbd, slurmctld and slurmd, wait
#                                      until the node is idle; prints the SLURM_CONF to export
#   bash scripts/local_slurm.sh down   stop exactly the daemons `up` started (by their PIDs), and
#                                      remove the state folder
#   bash scripts/local_slurm.sh env    print `export SLURM_CONF=...` when the cluster is up
#
# Both are idempotent. State, logs and configs live in $ELUREPRO_SLURM_DIR (default
# /tmp/elurepro-slurm); the daemons use their own munge key and socket and ports 16817-16819 (and
# 13306 for the database), so a site's own Slurm or munge on the same machine is left alone.
# Needs root and Debian's apt-get (no systemd: the daemons are started by hand). Where the cluster
# cannot be started on this machine (not root, no apt-get, packages unavailable), `up` prints one
# line saying why and exits 75; any other failure exits 1 with the log of the daemon that failed.
# `up` took 44 s with the packages to install and 10-14 s without (2-core VM).
#
# Why each non-default setting:
#   cred_expire=5, sched_interval=2, bf_interval=2   a requeued job waits for its credentials to
#                         expire (120 s by default) and then for a scheduling pass: 8 s here
#   proctrack/linuxproc, task/none, jobacct_gather/none   no cgroups needed (containers, VMs)
#   accounting_storage/slurmdbd   submitit reads job states from sacct; without accounting a
#                         finished or cancelled job is UNKNOWN to it
#   MaxTime=60            a partition time limit, as real clusters have (tests meet it)
set -euo pipefail

DIR="${ELUREPRO_SLURM_DIR:-/tmp/elurepro-slurm}"
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
DB_PORT=13306
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)   # the order `down` stops them in
CANNOT=75                                            # exit status: cannot run on this machine

cannot() { echo "local_slurm: cannot start a Slurm cluster here: $*" >&2; exit "$CANNOT"; }
fail() { echo "local_slurm: $*" >&2; exit 1; }
pid_of() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }
# Whether process $1 runs (a daemon that just exited may linger as a zombie).
running() {
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"
}
# Whether daemon $1 runs: its recorded PID is a running process of that name (PIDs are reused).
alive() {
    local pid
    pid=$(pid_of "$1")
    running "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

# Wait up to $1 seconds for the command after it to succeed; fail with the log of daemon $2.
wait_for() {
    local seconds=$1 daemon=$2
    shift 2
    local end=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ! running "$(pid_of "$daemon")" || [ "$SECONDS" -ge "$end" ]; then
            tail -n 20 "$DIR/log/$daemon".* >&2 2>/dev/null || true
            fail "$daemon did not come up (logs: $DIR/log/$daemon.*)"
        fi
        sleep 0.5
    done
}

# Start "$@" detached from this shell (it outlives `up`) and record its PID as daemon $1's.
start() {
    local name=$1
    shift
    setsid "$@" >>"$DIR/log/$name.out" 2>&1 </dev/null &
    echo $! >"$DIR/run/$name.pid"
}

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    command -v apt-get >/dev/null || cannot "no apt-get to install ${missing[*]}"
    echo "local_slurm: installing ${missing[*]}"
    # No service starts during the install: this script starts its own daemons (policy-rc.d).
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    local ok=1 log="${TMPDIR:-/tmp}/local_slurm_apt.log"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"; } >"$log" 2>&1 || ok=""
    [ -n "$made_policy" ] && rm -f "$policy"
    [ -n "$ok" ] || cannot "apt-get install ${missing[*]} failed ($log)"
}

write_configs() {
    local host node
    host=$(hostname -s)
    # The node as slurmd sees it (CPUs, sockets, cores, memory): a node configured with more
    # than it has would be drained.
    node=$(slurmd -C | head -n 1)
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=elurepro
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
MailProg=/bin/true
SlurmctldPidFile=$DIR/run/slurmctld.daemon.pid
SlurmdPidFile=$DIR/run/slurmd.daemon.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$DIR/munge/munge.socket
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=60 State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$DIR/run/slurmdbd.daemon.pid
LogFile=$DIR/log/slurmdbd.log
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

up() {
    [ "$(id -u)" -eq 0 ] || cannot "needs root (it installs Debian packages and starts daemons)"
    export SLURM_CONF="$DIR/etc/slurm.conf"
    local all=1
    for d in "${DAEMONS[@]}"; do alive "$d" || all=""; done
    # Up, perhaps running jobs: leave it as it is.
    if [ -n "$all" ] && sinfo -h -o %t 2>/dev/null | grep -qxE "idle|mix|alloc|comp"; then
        echo "local_slurm: already up"
        env_line
        return
    fi
    down >/dev/null  # whatever is left of an earlier cluster
    local started=$SECONDS
    install_packages
    mkdir -p "$DIR"/{etc,log,run,state,spool,munge,db}
    write_configs

    # munge: a key of our own, run as the munge user, who must own its files.
    mungekey --create --keyfile="$DIR/munge/munge.key" --force
    chown -R munge:munge "$DIR/munge"
    chmod 755 "$DIR" "$DIR/munge"
    start munged setpriv --reuid=munge --regid=munge --clear-groups \
        munged --foreground --socket="$DIR/munge/munge.socket" \
        --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
        --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/log/munged.log"
    wait_for 20 munged munge --socket="$DIR/munge/munge.socket" -n

    # The accounting database, with a user for slurmdbd.
    mariadb-install-db --no-defaults --datadir="$DIR/db" --user=root --skip-test-db \
        --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 ||
        fail "mariadb-install-db failed ($DIR/log/mariadb-install.log)"
    start mariadbd mariadbd --no-defaults --datadir="$DIR/db" --socket="$DIR/run/mysql.sock" \
        --port=$DB_PORT --bind-address=127.0.0.1 --user=root --skip-name-resolve
    wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$DIR/run/mysql.sock" ping
    mariadb --no-defaults --socket="$DIR/run/mysql.sock" -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

    start slurmdbd slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster elurepro >/dev/null 2>&1 || true
    start slurmctld slurmctld -D -i
    wait_for 60 slurmctld scontrol ping
    start slurmd slurmd -D
    wait_for 60 slurmd bash -c "sinfo -h -o %t | grep -qx idle"
    echo "local_slurm: up in $((SECONDS - started)) s: node $(hostname -s)," \
        "$(sinfo -h -o '%c CPUs, partition %P'), logs in $DIR/log"
    env_line
}

down() {
    local pid
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then
            pid=$(pid_of "$d")
            kill -TERM "$pid"
            for _ in $(seq 50); do running "$pid" || break; sleep 0.2; done
            running "$pid" && kill -KILL "$pid"
        fi
        rm -f "$DIR/run/$d.pid"
    done
    # Only what `up` made: $ELUREPRO_SLURM_DIR may name a folder that holds other things too.
    rm -rf "${DIR:?}"/{etc,log,run,state,spool,munge,db}
    rmdir "$DIR" 2>/dev/null || true
    echo "local_slurm: down"
}

env_line() { echo "export SLURM_CONF=$DIR/etc/slurm.conf"; }

case "${1:-}" in
up) up ;;
down) down ;;
env) alive slurmctld && env_line ;;
*) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
