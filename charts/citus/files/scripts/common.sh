# Shared by the chart's scripts (POSIX sh; sourced, not run).

log() {
    printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${CITUS_LOG_TAG:-citus}" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# file_env VAR: take VAR from $VAR or from the file named by ${VAR}_FILE (never both),
# as the postgres image does; the result is exported as VAR.
file_env() {
    fe_var=$1
    eval "fe_val=\${$fe_var:-}"
    eval "fe_file=\${${fe_var}_FILE:-}"
    if [ -n "$fe_val" ] && [ -n "$fe_file" ]; then
        die "both $fe_var and ${fe_var}_FILE are set; set only one"
    fi
    if [ -n "$fe_file" ]; then
        [ -r "$fe_file" ] || die "${fe_var}_FILE=$fe_file is not readable"
        fe_val=$(cat "$fe_file")
    fi
    eval "$fe_var=\$fe_val"
    export "${fe_var?}"
    unset "${fe_var}_FILE" fe_val fe_file
}

# pgpass_escape STRING: escape ':' and '\' for a password file line.
pgpass_escape() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g'
}

# pgpass_line USER PASSWORD: a password file line for USER on every host, port and database.
pgpass_line() {
    printf '*:*:*:%s:%s\n' "$(pgpass_escape "$1")" "$(pgpass_escape "$2")"
}

# replace_file FILE: FILE becomes standard input, written whole and then renamed over it, so that a reader
# (libpq opening a connection) never sees a partial file. Mode from the caller's umask.
replace_file() {
    cat > "$1.new"
    mv "$1.new" "$1"
}

# psql_strict ARGS...: psql as every script runs it: no psqlrc, quiet, tuples only, unaligned, and stopping at
# the first error (a failed statement must fail the script, never be skipped).
psql_strict() {
    psql -X -q -t -A -v ON_ERROR_STOP=1 "$@"
}

# The mark of a worker that the scale-in hook drains away, in the worker pod's /tmp (an emptyDir: it ends with
# the pod, and a pod created later for the same ordinal is registered again). The coordinator's registration loop
# does not register a worker whose mark says "removed"; the mark is written before the worker leaves
# pg_dist_node, so no round of the loop can find it unregistered and unmarked (review D18).
#
# mark_command VALUE: the SQL that makes VALUE ("removed" or "kept") the mark of the worker it runs on.
mark_command() {
    printf "COPY (SELECT '%s') TO '/tmp/citus/retired'" "$1"
}

# mark_worker HOST PORT VALUE: VALUE becomes the mark of that worker.
mark_worker() {
    mark_command "$3" | psql_strict -h "$1" -p "$2" >/dev/null
}

# worker_retired HOST PORT: prints t when that worker's mark says "removed", f otherwise.
worker_retired() {
    echo "SELECT coalesce(pg_read_file('/tmp/citus/retired', 0, 7, true), '') = 'removed'" | psql_strict -h "$1" -p "$2"
}

# PGOPTIONS for a session whose statements carry a password or its hash: none of them reaches the server log
# or pg_stat_statements, whatever postgresql.extraConfiguration asks for (statement, duration, sampled and
# debug logging, auto_explain, Citus's log of remote commands). Some are superuser settings: such a session
# logs in as the superuser.
SECRET_SESSION_OPTIONS='-c log_statement=none -c log_min_duration_statement=-1 -c log_min_duration_sample=-1 -c log_transaction_sample_rate=0 -c log_duration=off -c log_min_error_statement=panic -c debug_print_parse=off -c debug_print_rewritten=off -c debug_print_plan=off -c auto_explain.log_min_duration=-1 -c pg_stat_statements.track_utility=off -c citus.log_remote_commands=off'

# with_secret_options COMMAND...: COMMAND (a psql) with SECRET_SESSION_OPTIONS added to PGOPTIONS.
with_secret_options() {
    PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }$SECRET_SESSION_OPTIONS" "$@"
}

# psql_secret ARGS...: psql_strict for a session that sends passwords.
psql_secret() {
    with_secret_options psql_strict "$@"
}
